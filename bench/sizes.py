"""p5: how many bytes one target adapter takes, next to LoRA r=8 on (q, v), for a backbone's shape.

Shapes come from the backbone built on the meta device (no weights, no download); the target adapter
is MPT's rank-r factors of one target task (``task_cols`` U [1, l, r], ``task_rows`` V [1, d, r]; P* is
shared by every target and lives in the metaprompt adapter), written with ``save_adapter`` as it would
be exported, to count the file bytes too.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from metaprompt.adapters import AdapterConfig, save_adapter
from metaprompt.backbones import build_on_meta
from metaprompt.prompts import DecomposedPrompt


def target_adapter_bytes(preset: str, prompt_length: int = 100, rank: int = 1, dtype=torch.bfloat16) -> dict:
    """Tensor and file bytes of one target adapter (U, V of one task) for ``preset``'s hidden size."""
    model = build_on_meta(preset, dtype)
    hidden = model.get_input_embeddings().weight.shape[-1]
    with torch.device("meta"):
        prompt = DecomposedPrompt(1, prompt_length, hidden, rank)
    factors = {"task_cols": prompt.task_cols, "task_rows": prompt.task_rows}
    tensor_bytes = sum(t.numel() * dtype.itemsize for t in factors.values())
    config = AdapterConfig(
        kind="target",
        backbone=preset,
        hidden_size=hidden,
        prompt_length=prompt_length,
        rank=rank,
        task_names=["target"],
        extra={"metaprompt_adapter": "runs/distill/adapter", "train": "factors"},
    )
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(folder, {k: torch.zeros(t.shape, dtype=dtype) for k, t in factors.items()}, config)
        files = {p.name: p.stat().st_size for p in Path(folder).iterdir()}
    return {
        "hidden_size": hidden,
        "dtype": str(dtype).removeprefix("torch."),
        "tensor_bytes": tensor_bytes,
        "safetensors_bytes": files.get("adapter.safetensors"),
        "adapter_json_bytes": files.get("adapter.json"),
    }


def lora_bytes(preset: str, r: int = 8, target_modules=("q_proj", "v_proj"), dtype=torch.bfloat16) -> dict:
    """Parameter count and bytes of one LoRA adapter on ``preset`` (PEFT, built on the meta device)."""
    model = build_on_meta(preset, dtype)
    peft_model = get_peft_model(model, LoraConfig(r=r, target_modules=list(target_modules)))
    params = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    return {"r": r, "target_modules": list(target_modules), "params": params, "bytes": params * dtype.itemsize}
