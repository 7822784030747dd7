"""Task-grouped batching: each training batch holds rows of at most ``tasks_per_batch`` tasks.

Why: the shared-prefix forward (``forward.prefix``) runs each *distinct* task's soft prompt once per
batch, so its saving over concatenation is ``(B - U) * l`` positions for ``U`` distinct tasks in a
batch of ``B``. Temperature sampling over 21 sources puts 6-8 tasks in most batches of 8, which leaves
almost nothing to share; one task per batch shares the prompt across all ``B`` rows.

What does not change: the rows of an epoch. Indices are drawn from the underlying sampler
(``TemperatureSampler``) in its order, queued per task, and each time a task's queue holds
``B / tasks_per_batch`` rows they become a chunk; ``tasks_per_batch`` chunks make a batch (a task may
fill two chunks of one batch). So every task gets exactly the rows, in the order, that the temperature
sampler gave it; only which rows share a batch changes. Rows left in the queues at the end of the epoch
come as smaller batches (or are dropped with ``drop_last``).

For teacher prompt tuning (independent prompts, updated only on steps that contain their task:
``optim.TaskAdamW``), one task per batch means each teacher is trained exactly as it would be alone on
its own batches of ``B`` (tested), instead of on the one or two rows per step a mixed batch gives it.
For distillation the shared metaprompt then sees a few tasks per step instead of many: the mixture over
an epoch is the same, the per-step mixture is not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class TaskGroupedBatchSampler(Sampler[list[int]]):
    """Batches of rows from at most ``tasks_per_batch`` tasks, drawn from ``sampler``'s stream.

    Args:
        sampler: Yields row indices (e.g. ``TemperatureSampler``); decides which rows come per task.
        batch_size: Rows per batch B (a multiple of ``tasks_per_batch``).
        task_of: Task id of every row of the dataset (indexed by the sampler's indices).
        tasks_per_batch: Chunks per batch g; each chunk is ``B / g`` rows of one task.
        drop_last: Drop the partial batches made of the rows left at the end of an epoch.
    """

    def __init__(
        self, sampler: Sampler[int], batch_size: int, task_of: Sequence[int], tasks_per_batch: int = 1,
        drop_last: bool = False,
    ):  # fmt: skip
        if batch_size < 1 or tasks_per_batch < 1 or batch_size % tasks_per_batch:
            raise ValueError(f"tasks_per_batch ({tasks_per_batch}) must be >= 1 and divide batch_size ({batch_size})")
        self.sampler = sampler
        self.batch_size = batch_size
        self.task_of = list(task_of)
        self.tasks_per_batch = tasks_per_batch
        self.chunk = batch_size // tasks_per_batch
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        queues: dict[int, list[int]] = {}
        pending: list[list[int]] = []  # full chunks waiting for a batch
        for index in self.sampler:
            queue = queues.setdefault(self.task_of[index], [])
            queue.append(index)
            if len(queue) == self.chunk:
                pending.append(queue[:])
                queue.clear()
                if len(pending) == self.tasks_per_batch:
                    yield [i for chunk in pending for i in chunk]
                    pending = []
        # the epoch's rest: the waiting chunks as one batch, then each task's partial queue as its own
        # (so no batch ever holds more than tasks_per_batch tasks)
        rest = [[i for chunk in pending for i in chunk]] + [q for q in queues.values()]
        for batch in rest:
            if batch and (len(batch) == self.batch_size or not self.drop_last):
                yield batch

    def __len__(self) -> int:
        # Batch count depends on the draw: count by drawing (seeded, so it is what __iter__ yields this
        # epoch; a cheap pass over indices, no data).
        return sum(1 for _ in self)
