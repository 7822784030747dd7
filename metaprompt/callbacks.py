"""Callbacks: export the stage's portable adapter when training ends; progress of training and scoring."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from metaprompt.progress import bar, interactive
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
    """Progress of training and scoring: a TQDM bar on a terminal, else one line every ``every`` steps
    (``[pipeline] <name>: step s/max loss x (t s)``) and every ``every`` scored batches; bars are unreadable
    in logs and CI (:mod:`metaprompt.progress`). Only rank 0 shows anything. The pipeline adds it to every
    stage run; ``metaprompt fit``/``test`` add it in place of Lightning's bar when not on a terminal.

    Args:
        name: The run's name in the line (e.g. ``teacher``, ``rqe/LoRA/k16-s0``).
        every: Steps (and scored batches) between lines; the last one always has a line.
    """

    def __init__(self, name: str = "fit", every: int = 10):
        self.name, self.every, self.start = name, every, time.perf_counter()
        self.bar = None

    def _open(self, trainer: L.Trainer, total: int | None, desc: str) -> None:
        self.start = time.perf_counter()
        if trainer.is_global_zero and interactive():
            self.bar = bar(total=total, desc=f"{self.name} {desc}", unit="step" if desc == "train" else "batch")

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._open(trainer, trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None, "train")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=True)
        elif trainer.is_global_zero and (step % self.every == 0 or step == trainer.max_steps):
            print(
                f"[pipeline] {self.name}: step {step}/{trainer.max_steps} loss {loss:.3f} "
                f"({time.perf_counter() - self.start:.0f} s)",
                flush=True,
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._open(trainer, self._test_batches(trainer), "test")

    def on_test_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        done, total = batch_idx + 1, self._test_batches(trainer)
        if self.bar is not None:
            self.bar.update(1)
        elif trainer.is_global_zero and (done % self.every == 0 or done == total):
            print(f"[pipeline] {self.name}: scored batch {done}/{total} ({time.perf_counter() - self.start:.0f} s)",
                  flush=True)  # fmt: skip

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    @staticmethod
    def _test_batches(trainer: L.Trainer) -> int | None:
        counts = trainer.num_test_batches
        total = sum(c for c in counts if c != float("inf")) if isinstance(counts, list) else counts
        return int(total) if total else None
