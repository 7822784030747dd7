"""Scale-out: DeepSpeed ZeRO-2/3 and FSDP2 for the 8B/20B backbones (see docs/scale_out.md).

The stages stay strategy-agnostic; ``PromptModule.configure_model`` calls into this package:

* ``strategies``: which strategy shards what (``zero_stage``, ``is_fsdp2``, ``params_are_sharded``);
  ``FSDP2Strategy`` (FSDP2 over all ranks); ``release_process_group`` (call before a rank exits).
* ``zero``: live ``HfDeepSpeedConfig``, ``gathered`` parameters, adapters built outside ``zero.Init``.
* ``export``: ``full_adapter`` — whole adapter tensors on every rank for ``export_adapter``.

This package imports nothing else of metaprompt (a test checks): what needs the stages lives above it —
the FSDP2 layout of a stage module in ``metaprompt.modules.fsdp2``, checkpoint -> adapter in
``metaprompt.consolidation``.
"""

from metaprompt.scale.export import adapter_parameters, full_adapter
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
    "full_adapter",
    "full_numel",
    "full_shape",
    "gathered",
    "is_fsdp2",
    "outside_zero_init",
    "params_are_sharded",
    "release_process_group",
    "zero3_hf_config",
    "zero_stage",
]
