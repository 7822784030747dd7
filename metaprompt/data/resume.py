"""A training loader that a resumed run continues mid-epoch, batch for batch as if it had never stopped.

Lightning's fit loop saves ``state_dict()`` of every training loader that has one into each checkpoint and
gives it back to ``load_state_dict()`` on resume (``lightning.pytorch.loops.fit_loop``, ``_Stateful``). A plain
``DataLoader`` has none, so a run resumed mid-epoch restarted that epoch's index stream: it trained on the
epoch's first batches a second time and never on its last ones (a 5.2% adapter mismatch after one resume).

The state is the epoch (the samplers' ``set_epoch``) and how many of its batches were handed to training. On
resume those batches' indices are drawn and dropped without loading their rows; the samplers are seeded by
epoch (``TemperatureSampler``, ``LengthBucketBatchSampler``), so every later batch is the uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader


def _samplers(loader: DataLoader) -> list[Any]:
    """The loader's batch sampler, the sampler it draws from, and the loader's own sampler."""
    batches = loader.batch_sampler
    return [s for s in (batches, getattr(batches, "sampler", None), loader.sampler) if s is not None]


def sampler_epoch(loader: DataLoader) -> int | None:
    """The epoch the loader's samplers were last set to (None when none of them has one)."""
    return next((s.epoch for s in _samplers(loader) if hasattr(s, "epoch")), None)


def set_sampler_epoch(loader: DataLoader, epoch: int) -> None:
    """``set_epoch`` on every sampler of the loader that has one (as Lightning does at each epoch start)."""
    for sampler in _samplers(loader):
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)


class ResumableLoader(DataLoader):
    """``DataLoader`` with ``state_dict`` / ``load_state_dict``: a resumed epoch skips the batches already trained.

    Takes ``DataLoader``'s arguments. Batches are counted as they are handed out (Lightning fetches no batch
    ahead of a loader with a length), so the count is the number trained when a checkpoint is taken.
    """

    def __init__(self, *args, **kwargs):
        # Each iter() draws the workers' base seed from the loader's generator, by default from the global
        # RNG: one draw per epoch start that a resumed run does not repeat, shifting every later dropout mask.
        kwargs.setdefault("generator", torch.Generator().manual_seed(torch.initial_seed()))
        super().__init__(*args, **kwargs)
        self._handed_out = 0  # batches of the current epoch given to training
        self._resume: tuple[int | None, int] | None = None  # (epoch, batches) to skip, from a checkpoint
        self._skip = 0  # batches the index stream drops before its first one this epoch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": sampler_epoch(self), "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, batches = state["epoch"], int(state["batches"])
        if epoch is not None:  # before len(): a task-grouped epoch's batch count depends on its draw
            set_sampler_epoch(self, epoch)
        if batches >= len(self):  # the checkpoint closed its epoch: the next one starts at its first batch
            epoch, batches = (None if epoch is None else epoch + 1), 0
            if epoch is not None:
                set_sampler_epoch(self, epoch)
        self._resume = (epoch, batches)

    @property
    def _index_sampler(self):
        # torch's iterators draw every batch's indices from here (in the main process, for workers too)
        return _SkipFirst(self, DataLoader._index_sampler.fget(self))

    def __iter__(self) -> Iterator[Any]:
        # A generator: this runs at the first next(), after Lightning's set_epoch for the epoch.
        epoch, skip = self._resume or (None, 0)
        self._resume = None
        self._skip = skip if skip and epoch == sampler_epoch(self) else 0
        self._handed_out = self._skip
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch


class _SkipFirst:
    """The loader's index sampler, dropping its first ``loader._skip`` batches (once) when iterated."""

    def __init__(self, loader: ResumableLoader, index_sampler):
        self.loader, self.index_sampler = loader, index_sampler

    def __len__(self) -> int:
        return len(self.index_sampler)

    def __iter__(self) -> Iterator[Any]:
        indices = iter(self.index_sampler)
        skip, self.loader._skip = self.loader._skip, 0
        for _ in range(skip):
            next(indices, None)
        yield from indices


def repair_epoch_progress(trainer) -> bool:
    """Mark the running epoch as started when Lightning's resume left it unmarked; True if it did.

    Lightning 2.6 resuming from a checkpoint taken at an epoch's last batch counts that epoch as finished
    but starts the next one without incrementing ``epoch_progress`` ``ready``/``started`` (it still takes
    the restart for mid-epoch, ``FitLoop.on_advance_start``). Every checkpoint of that epoch then says no
    epoch is running, and a run resumed from one starts the finished epoch's index stream again (the
    samplers get ``set_epoch(processed)``): twice resumed at epoch ends, an adapter 1e-3 off the
    uninterrupted one. Called at each training batch's start, where a running epoch is always ``ready``.
    """
    progress = trainer.fit_loop.epoch_progress
    if progress.current.ready > progress.current.processed:
        return False
    progress.increment_ready()
    progress.increment_started()
    return True
