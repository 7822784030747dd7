"""Callbacks: export the stage's portable adapter when training ends; checkpoints a killed run resumes from;
progress of training and scoring."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from metaprompt.progress import bar, interactive
from metaprompt.scale import full_adapter


class AdapterExport(L.Callback):
    """Write ``pl_module.export_adapter(dirpath)`` (safetensors + JSON) at the end of ``fit``.

    Args:
        dirpath: Output folder; default ``<trainer.default_root_dir>/adapter``.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self._exported = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._exported = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._export(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run killed after its checkpoint at max_steps, before the export, resumes with nothing left to train:
        # Lightning then skips the training loop and its on_train_end. The restored adapter is the trained one.
        if not self._exported and trainer.global_step > 0:
            self._export(trainer, pl_module)

    def _export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = self.dirpath or str(Path(trainer.default_root_dir) / "adapter")
        if not hasattr(pl_module, "export_adapter"):
            return
        self._exported = True
        # Under ZeRO-3 / FSDP2 the adapter is sharded: every rank gathers it (collective), rank 0 writes.
        with full_adapter(pl_module):
            if trainer.is_global_zero:
                pl_module.export_adapter(folder)
        trainer.strategy.barrier()


PAUSE_ENV = "METAPROMPT_TEST_CHECKPOINT_PAUSE"
"""Seconds to wait between writing a checkpoint's ``.part`` file and renaming it: a test kills the run there."""


class ResumeCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` steps in a fixed folder: what ``--ckpt_path last`` resumes from.

    ``metaprompt fit`` adds one when the config names no ``ModelCheckpoint`` (list it under
    ``trainer.callbacks`` to change its arguments); the pipeline adds one to every run it trains. Each write
    goes to ``last.ckpt.part`` and is renamed over ``last.ckpt`` when whole (:class:`AtomicCheckpointIO`), so a
    run killed mid-write resumes from the previous checkpoint instead of failing on a torn one.

    Args:
        dirpath: Checkpoint folder; default ``<trainer.default_root_dir>/checkpoints`` (Lightning's default is
            the logger's version folder, a new one per run, where a rerun would not look).
        every_n_train_steps: Steps between checkpoints: a kill loses at most that many.
        save_last, save_top_k, enable_version_counter: As in ``ModelCheckpoint``; by default ``last.ckpt`` only,
            overwritten in place.
        **kwargs: Further ``ModelCheckpoint`` arguments.
    """

    def __init__(
        self, dirpath: str | None = None, every_n_train_steps: int = 50, save_last: bool = True, save_top_k: int = 0,
        enable_version_counter: bool = False, **kwargs,
    ):  # fmt: skip
        super().__init__(
            dirpath=dirpath, every_n_train_steps=every_n_train_steps, save_last=save_last, save_top_k=save_top_k,
            enable_version_counter=enable_version_counter, **kwargs,
        )  # fmt: skip

    def _default_dirpath(self, trainer: L.Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(Path(trainer.default_root_dir) / "checkpoints")

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        self._default_dirpath(trainer)  # `ckpt_path="last"` is resolved before any callback's setup
        return super()._find_last_checkpoints(trainer)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._default_dirpath(trainer)
        super().setup(trainer, pl_module, stage)
        if _local(self.dirpath) and not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            trainer.strategy.checkpoint_io = AtomicCheckpointIO(trainer.strategy.checkpoint_io)


def _local(path) -> bool:
    return "://" not in str(path)  # fsspec URLs (s3://, gs://, ...) are written by Lightning's own IO


class AtomicCheckpointIO(CheckpointIO):
    """Writes a local checkpoint file as ``<path>.part``, then renames it to ``path``: whole or not there.

    Lightning's own write (``fsspec``) goes through a file in the system's temp folder that it *moves* into
    place, which is a copy, torn by a kill, when the temp folder is on another file system. Strategies that
    write sharded folders (DeepSpeed, FSDP) do not pass through a ``CheckpointIO``.

    Args:
        inner: The strategy's ``CheckpointIO`` (does the writing, loading and removing).
    """

    def __init__(self, inner: CheckpointIO):
        self.inner = inner

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if not _local(path):
            return self.inner.save_checkpoint(checkpoint, path, storage_options)
        part = f"{path}.part"  # never matches `last*.ckpt`, so `--ckpt_path last` cannot pick it
        self.inner.save_checkpoint(checkpoint, part, storage_options)
        if pause := float(os.environ.get(PAUSE_ENV) or 0):
            time.sleep(pause)
        os.replace(part, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return self.inner.load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()


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
