"""Backbones: the frozen causal LMs that prompts are trained on.

``load_backbone(name_or_path)`` is the single entry point: a preset name (``smollm2-135m``,
``llama-3.1-8b``, ``meditron3-8b``, ``gpt-oss-20b``, ``tiny-llama``, ``tiny-gpt-oss``), a local HF folder,
or a hub id. ``build_on_meta(preset)`` builds a preset's architecture on the meta device (offline).
"""

from metaprompt.backbones.loading import BackboneUnavailableError, load_backbone, load_tokenizer
from metaprompt.backbones.meta import architecture_config, build_on_meta
from metaprompt.backbones.presets import PRESETS, BackbonePreset

__all__ = [
    "PRESETS",
    "BackbonePreset",
    "BackboneUnavailableError",
    "architecture_config",
    "build_on_meta",
    "load_backbone",
    "load_tokenizer",
]
