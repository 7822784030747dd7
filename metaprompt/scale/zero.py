"""DeepSpeed ZeRO-3 plumbing for a frozen HF backbone with a few trainable adapter tensors.

* ``zero3_hf_config(strategy)``: the ``HfDeepSpeedConfig`` that must stay alive (kept on the module)
  while ``from_pretrained`` runs, so that transformers loads weights straight into ZeRO-3 partitions
  instead of failing with size mismatches (Lightning#19259); it also makes ``generate`` and PEFT
  ZeRO-3-aware.
* ``gathered(params, modifier_rank)``: ``deepspeed.zero.GatheredParameters`` for the parameters that
  are partitioned, a no-op otherwise (so the same code runs unsharded, e.g. prompt init from the
  vocabulary reads the embedding matrix ``[V, d]`` whole).
* ``outside_zero_init()``: build the adapter modules whole even inside Lightning's ``zero.Init``
  context; ``deepspeed.initialize`` partitions them afterwards (``_convert_to_zero_parameters``). Stages
  can then initialise adapters with plain tensor ops (``copy_``, ``fill_``) whatever the strategy.
* ``without_zero3_init()``: the same, and transformers' ZeRO-3 detection off too, for models that
  must be built whole (meta-device shapes, the random tiny test backbones, whose init transformers
  skips under ZeRO-3).

DeepSpeed is imported only when a parameter or strategy actually uses it (the import is slow and
prints an accelerator warning).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from metaprompt.scale.strategies import zero_stage


def is_zero3_param(param: torch.Tensor) -> bool:
    """A parameter partitioned by ``deepspeed.zero.Init`` (its local ``data`` is empty)."""
    return hasattr(param, "ds_id")


def full_shape(param: torch.Tensor) -> torch.Size:
    """The unpartitioned shape (``ds_shape`` under ZeRO-3)."""
    return param.ds_shape if is_zero3_param(param) else param.shape


def full_numel(param: torch.Tensor) -> int:
    """The unpartitioned number of elements (``ds_numel`` under ZeRO-3; DTensors report theirs)."""
    return param.ds_numel if is_zero3_param(param) else param.numel()


def gathered(params: Iterable[torch.Tensor], modifier_rank: int | None = None):
    """Context in which the ZeRO-3-partitioned ``params`` are whole on every rank.

    Args:
        params: Parameters to gather; those not partitioned are left alone.
        modifier_rank: Rank whose in-place changes are kept and re-partitioned on exit (None: read-only).
    """
    partitioned = [p for p in params if is_zero3_param(p)]
    if not partitioned:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=modifier_rank)


def zero3_hf_config(strategy: Any):
    """A live ``HfDeepSpeedConfig`` for a ZeRO-3 ``DeepSpeedStrategy`` (keep a reference while loading).

    transformers holds it only through a weak reference, so the caller must keep the returned object
    (``PromptModule`` keeps it as ``self._hf_deepspeed_config``).
    """
    if zero_stage(strategy) != 3:
        raise ValueError(f"zero3_hf_config needs a ZeRO stage-3 DeepSpeedStrategy, got {type(strategy).__name__}")
    from transformers.integrations import HfDeepSpeedConfig

    return HfDeepSpeedConfig(strategy.config)


@contextmanager
def outside_zero_init() -> Iterator[None]:
    """Pause an active ``deepspeed.zero.Init`` (no-op when none is active or DeepSpeed is not loaded).

    Uses the same pair of functions ``deepspeed.initialize`` uses to build its engine inside ``zero.Init``.
    """
    partition = sys.modules.get("deepspeed.runtime.zero.partition_parameters")
    if partition is None or getattr(partition, "top_level_context", None) is None:
        yield
        return
    partition.shutdown_init_context()
    try:
        yield
    finally:
        partition.restore_init_context()


@contextmanager
def without_zero3_init() -> Iterator[None]:
    """Build modules whole: pause ``zero.Init`` and hide a live ``HfDeepSpeedConfig`` from transformers.

    Without this, ``from_config`` under a live ``HfDeepSpeedConfig`` opens its own ``zero.Init`` (a
    collective broadcast per parameter, and no weight init), even for a meta-device model.
    """
    hf_deepspeed = sys.modules.get("transformers.integrations.deepspeed")
    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None) if hf_deepspeed else None
    live = ref() if ref is not None else None
    if live is not None:
        hf_deepspeed.unset_hf_deepspeed_config()
    try:
        with outside_zero_init():
            yield
    finally:
        if live is not None:
            hf_deepspeed.set_hf_deepspeed_config(live)
