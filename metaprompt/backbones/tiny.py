"""Tiny random backbones for tests: real architectures, a few thousand-wide, the real SmolLM2 tokenizer.

They let every test exercise the true HF code paths (Llama attention, gpt-oss MoE routing and sinks)
in well under a second per step without any download.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, GptOssConfig, LlamaConfig, PretrainedConfig


def tiny_config(arch: str, vocab_size: int, pad_token_id: int | None = None) -> PretrainedConfig:
    """A 2-layer, hidden-64 config of ``arch`` (``"llama"`` or ``"gpt_oss"``).

    Args:
        arch: Architecture family.
        vocab_size: Must cover the tokenizer (49,152 for SmolLM2).
        pad_token_id: The tokenizer's pad id.
    """
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "gpt_oss":
        return GptOssConfig(
            **common,
            head_dim=16,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=64,
            layer_types=["sliding_attention", "full_attention"],
        )
    raise ValueError(f"unknown tiny architecture {arch!r}; expected 'llama' or 'gpt_oss'")


def build_tiny(
    arch: str, vocab_size: int, pad_token_id: int | None, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """A randomly initialised tiny causal LM, deterministic for a given ``seed``."""
    config = tiny_config(arch, vocab_size, pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=dtype)
