"""TEST ONLY: Lightning's ``DeepSpeedStrategy`` on DeepSpeed's CPU accelerator (gloo), so the ZeRO-2/3
code paths (zero.Init, partitioned params, gathered init, synced generation, sharded checkpoints and
their consolidation) run in CI without a GPU (research/ecosystem.md §C.3).

Lightning refuses DeepSpeed without CUDA in ``setup_environment`` and validates CUDA device indices in
``setup_distributed``; DeepSpeed's engine needs a device index >= 0. These three overrides rely on
private Lightning 2.6.6 internals (``_init_deepspeed_distributed``), which is why this lives under
tests/ and never in the package. It proves logic, not CUDA kernels, bf16 plugins or offload speed.
"""

from __future__ import annotations

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DeepSpeedStrategy


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """``DeepSpeedStrategy`` that accepts ``accelerator="cpu"`` (gloo process group)."""

    def setup_environment(self) -> None:
        super(DeepSpeedStrategy, self).setup_environment()  # DDPStrategy's, without the CUDA-only check

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()  # skips the CUDA device-index validation

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", self.local_rank)  # deepspeed.initialize needs an index >= 0
