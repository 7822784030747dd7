"""Callbacks: export the stage's portable adapter when training ends."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from metaprompt.scale import full_adapter


class AdapterExport(L.Callback):
    """Write ``pl_module.export_adapter(dirpath)`` (safetensors + JSON) at the end of ``fit``.

    Args:
        dirpath: Output folder; default ``<trainer.default_root_dir>/adapter``.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = self.dirpath or str(Path(trainer.default_root_dir) / "adapter")
        if not hasattr(pl_module, "export_adapter"):
            return
        # Under ZeRO-3 / FSDP2 the adapter is sharded: every rank gathers it (collective), rank 0 writes.
        with full_adapter(pl_module):
            if trainer.is_global_zero:
                pl_module.export_adapter(folder)
        trainer.strategy.barrier()
