"""Callbacks: export the stage's portable adapter when training ends; one log line every few steps."""

from __future__ import annotations

import time
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


class StepPrinter(L.Callback):
    """One line every ``every`` steps: ``[pipeline] <name>: step s/max loss x (t s)`` (progress bars are
    unreadable in logs and CI; the pipeline adds it to every stage run).

    Args:
        name: The run's name in the line (e.g. ``teacher``, ``rqe/LoRA/k16-s0``).
        every: Steps between lines (and the last step).
    """

    def __init__(self, name: str = "fit", every: int = 10):
        self.name, self.every, self.start = name, every, time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            print(
                f"[pipeline] {self.name}: step {step}/{trainer.max_steps} loss {loss:.3f} "
                f"({time.perf_counter() - self.start:.0f} s)",
                flush=True,
            )
