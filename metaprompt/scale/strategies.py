"""What a Lightning strategy does to the parameters: is it DeepSpeed (which ZeRO stage), FSDP2, sharded?

Checked by type and config rather than by name, so that subclasses (e.g. the test-only CPU DeepSpeed
strategy under ``tests/distributed``) are recognised too. ``release_process_group`` ends a distributed
run cleanly.
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


def release_process_group() -> None:
    """Destroy the default process group (if any) while the interpreter is still fully alive.

    Call it on every rank once the distributed work is over, before the process exits. Lightning does
    this at exit only for NCCL groups it created itself; a gloo group (DDP/FSDP2 on CPU) or one created by
    DeepSpeed is otherwise left to the interpreter's shutdown, and the backend's worker threads outlive
    the Python code. A gloo worker thread frees a finished collective only after it has woken the caller,
    and a barrier keeps the collectives before it alive (``all_gather_object``'s tensors, which belong to
    Python objects); freeing those takes the GIL. If the woken caller reaches ``Py_FinalizeEx`` first,
    Python ends that thread with ``pthread_exit`` inside a ``noexcept`` destructor and the rank aborts
    after a run that succeeded: "terminate called without an active exception", SIGABRT (exit code -6).
    Busy machines lose that race more often. Destroying the group joins those threads first (the c10d
    bindings release the GIL meanwhile, so the threads can still free Python-owned tensors).

    Purely local (no collective); after it, ``torch.distributed`` can be initialised again. A group that
    other live objects still hold (FSDP2-sharded modules, a DeepSpeed engine, ``deepspeed.utils.groups``)
    outlives the call, and so do its threads: such a process is safe only if it skips the interpreter's
    shutdown (flush, then ``os._exit``), as ``tests/distributed/worker.py`` does.
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()  # finished trainers' wrappers (DDP keeps its group) may sit in reference cycles
        dist.destroy_process_group()
