"""Scale-out: DeepSpeed ZeRO-2/3 and FSDP2 for the 8B/20B backbones (see docs/scale_out.md).

The stages stay strategy-agnostic; ``PromptModule.configure_model`` calls into this package:

* ``strategies``: which strategy shards what (``zero_stage``, ``is_fsdp2``, ``params_are_sharded``);
  ``FSDP2Strategy`` (FSDP2 over all ranks); ``release_process_group`` (call before a rank exits).
* ``zero``: live ``HfDeepSpeedConfig``, ``gathered`` parameters, adapters built outside ``zero.Init``.
* ``fsdp2``: ``parallelize`` (frozen layers sharded, adapters in their own units).
* ``export``: ``full_adapter`` — whole adapter tensors on every rank for ``export_adapter``.
* ``consolidation``: ``consolidate`` any checkpoint (DDP file, ZeRO folder, FSDP2 folder) -> portable adapter file.
"""

from metaprompt.scale.consolidation import consolidate, read_checkpoint
from metaprompt.scale.export import adapter_parameters, full_adapter
from metaprompt.scale.fsdp2 import parallelize
from metaprompt.scale.strategies import (
    FSDP2Strategy,
    is_fsdp2,
    params_are_sharded,
    release_process_group,
    zero_stage,
)
from metaprompt.scale.zero import full_numel, full_shape, gathered, outside_zero_init, zero3_hf_config

__all__ = [
    "FSDP2Strategy",
    "adapter_parameters",
    "consolidate",
    "full_adapter",
    "full_numel",
    "full_shape",
    "gathered",
    "is_fsdp2",
    "outside_zero_init",
    "parallelize",
    "params_are_sharded",
    "read_checkpoint",
    "release_process_group",
    "zero3_hf_config",
    "zero_stage",
]
