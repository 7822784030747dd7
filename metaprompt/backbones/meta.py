"""Backbones on the meta device: the real architecture, no weights, no download, no memory.

Used for exact parameter counts and trainable fractions of the 8B/20B presets, for memory estimates
(``docs/scale_out.md``), for random-weight benchmark shapes (``bench/gpu_smoke.py``) and to rebuild a
stage's adapter modules when consolidating a sharded checkpoint (``metaprompt.consolidation.consolidate``).

    model = build_on_meta("llama-3.1-8b")
    sum(p.numel() for p in model.parameters())   # 8,030,261,248
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from metaprompt.backbones import embedded, tiny
from metaprompt.backbones.presets import PRESETS, BackbonePreset
from metaprompt.scale.zero import without_zero3_init

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TINY_VOCAB = 49152  # SmolLM2's tokenizer, which the tiny backbones use


def _hf_config(name_or_path: str) -> PretrainedConfig:
    """Config of a local HF folder or hub id (the hub only if it is reachable or cached)."""
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except OSError as e:
        raise ValueError(
            f"backbone {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a readable HF folder/hub id"
        ) from e


def architecture_config(preset: str | BackbonePreset, **overrides) -> PretrainedConfig:
    """The HF config of a backbone, offline for every preset.

    Args:
        preset: A preset name or :class:`BackbonePreset` (hub presets read their stored JSON, tiny ones
            are built in code, the embedded SmolLM2 is read from its converted folder), or a local HF
            folder / cached hub id.
        **overrides: Config fields to replace, e.g. ``num_hidden_layers=4`` for a shallow benchmark
            copy (``layer_types`` is cut to match when present).

    Raises:
        ValueError: ``preset`` is neither a preset nor a readable HF folder/hub id.
    """
    p = preset if isinstance(preset, BackbonePreset) else PRESETS.get(preset)
    if p is None:
        config = _hf_config(str(Path(preset).expanduser()) if Path(preset).expanduser().is_dir() else preset)
    elif p.source.startswith("tiny:"):
        config = tiny.tiny_config(p.source.split(":", 1)[1], TINY_VOCAB)
    elif p.config_file:
        config = AutoConfig.for_model(**json.loads((CONFIG_DIR / p.config_file).read_text()))
    elif p.source.startswith("embedded:"):
        config = _hf_config(str(embedded.model_folder()))
    else:
        config = _hf_config(p.source)
    layers = overrides.get("num_hidden_layers")
    if layers is not None and getattr(config, "layer_types", None) is not None and "layer_types" not in overrides:
        overrides["layer_types"] = list(config.layer_types[:layers])
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def build_on_meta(preset: str | BackbonePreset | PretrainedConfig, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Instantiate a preset's causal LM on the meta device (shapes only; nothing is allocated).

    Args:
        preset: A preset name, :class:`BackbonePreset`, local HF folder, or an HF config (e.g. from
            :func:`architecture_config` with overrides).
        dtype: Parameter dtype (default: the preset's, bf16 for the hub presets; fp32 for folders).

    Returns:
        The ``*ForCausalLM`` model, every parameter frozen, on ``torch.device("meta")``.
    """
    if isinstance(preset, PretrainedConfig):
        config, dtype = preset, dtype or torch.bfloat16
    else:
        p = preset if isinstance(preset, BackbonePreset) else PRESETS.get(preset)
        config, dtype = architecture_config(preset), dtype or (p.dtype if p else torch.float32)
    with without_zero3_init(), torch.device("meta"):  # a live ZeRO-3 config must not partition shapes
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.requires_grad_(False)
    return model
