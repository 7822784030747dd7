"""What a Lightning strategy does to the parameters: is it DeepSpeed (which ZeRO stage), FSDP2, sharded?

Checked by type and config rather than by name, so that subclasses (e.g. the test-only CPU DeepSpeed
strategy under ``tests/distributed``) are recognised too.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import ModelParallelStrategy


def zero_stage(strategy: Any) -> int | None:
    """The ZeRO stage of a ``DeepSpeedStrategy`` (0-3), or None for any other strategy."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    if not isinstance(strategy, DeepSpeedStrategy):
        return None
    config = strategy.config or {}
    return int(config.get("zero_optimization", {}).get("stage", 0))


def is_fsdp2(strategy: Any) -> bool:
    """``ModelParallelStrategy``: the LightningModule applies FSDP2 ``fully_shard`` in ``configure_model``."""
    return isinstance(strategy, ModelParallelStrategy)


class FSDP2Strategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` with every rank in one data-parallel (FSDP2) dimension, no tensor parallelism.

    Lightning's ``data_parallel_size="auto"`` means the number of *nodes* (its default pairs it with
    tensor parallelism inside a node); a frozen backbone with prompt adapters wants plain sharded data
    parallelism over all ``devices x num_nodes`` ranks, whatever the launch size.

    Args:
        **kwargs: ``ModelParallelStrategy`` arguments except the two sizes (``save_distributed_checkpoint``,
            ``process_group_backend``, ``timeout``).
    """

    def __init__(self, **kwargs):
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_processes * self.num_nodes  # the world size, known before init
        super().setup_environment()


def params_are_sharded(strategy: Any) -> bool:
    """Whether a forward pass all-gathers parameters across ranks (ZeRO-3, FSDP, FSDP2).

    Then every rank must run the same number of forward passes: generation needs ``synced_gpus``.
    DDP and ZeRO-1/2 keep whole parameters on every rank, so ranks may generate different lengths.
    """
    from lightning.pytorch.strategies import FSDPStrategy

    if strategy is None or getattr(strategy, "world_size", 1) <= 1:
        return False
    return zero_stage(strategy) == 3 or is_fsdp2(strategy) or isinstance(strategy, FSDPStrategy)
