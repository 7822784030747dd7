"""A resumed epoch continues where its checkpoint left it: the loader's state round-trips, the skipped
batches are never loaded, and every later batch (this epoch and the next ones) is the uninterrupted run's."""

from __future__ import annotations

import pytest
import torch

from metaprompt.data.bucketing import LengthBucketBatchSampler
from metaprompt.data.grouping import TaskGroupedBatchSampler
from metaprompt.data.resume import ResumableLoader, set_sampler_epoch
from metaprompt.data.sampling import TemperatureSampler

SIZES = [7, 13, 4]  # rows per task; row i belongs to task_of[i]
TASK_OF = [t for t, n in enumerate(SIZES) for _ in range(n)]


class Rows(torch.utils.data.Dataset):
    """Row i is i; counts what was loaded."""

    def __init__(self):
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return sum(SIZES)

    def __getitem__(self, i: int) -> int:
        self.loaded.append(i)
        return i


def loader(kind: str, rows: Rows, num_workers: int = 0) -> ResumableLoader:
    sampler = TemperatureSampler(SIZES, temperature=2.0, num_samples=30, seed=5)
    kw = {"collate_fn": list, "num_workers": num_workers}
    if kind == "plain":
        return ResumableLoader(rows, batch_size=4, sampler=sampler, **kw)
    if kind == "grouped":
        return ResumableLoader(rows, batch_sampler=TaskGroupedBatchSampler(sampler, 4, TASK_OF, 2), **kw)
    lengths = [(7 * i) % 11 for i in range(len(rows))]
    return ResumableLoader(rows, batch_sampler=LengthBucketBatchSampler(sampler, 4, lengths, 2, seed=1), **kw)


def epochs(dl: ResumableLoader, first: int, last: int) -> list[list[list[int]]]:
    """Every batch of epochs first..last, setting each epoch as Lightning's fit loop does."""
    out = []
    for epoch in range(first, last + 1):
        set_sampler_epoch(dl, epoch)
        out.append(list(dl))
    return out


@pytest.mark.parametrize("kind", ["plain", "grouped", "bucketed"])
def test_resumed_epoch_continues_the_uninterrupted_stream(kind):
    straight = epochs(loader(kind, Rows()), 0, 2)
    assert straight[0] != straight[1]  # the epochs differ: a restart would show
    for epoch, stop in [(1, 1), (1, len(straight[1]) - 1), (0, 3)]:
        first = loader(kind, Rows())
        set_sampler_epoch(first, epoch)
        it = iter(first)
        seen = [next(it) for _ in range(stop)]
        state = first.state_dict()
        assert state == {"epoch": epoch, "batches": stop} and seen == straight[epoch][:stop]

        rows = Rows()
        resumed = loader(kind, rows)  # a new process: fresh samplers at epoch 0
        resumed.load_state_dict(state)
        set_sampler_epoch(resumed, epoch)  # Lightning sets the restored epoch before iterating
        rest = list(resumed)
        assert rest == straight[epoch][stop:]
        assert sorted(rows.loaded) == sorted(i for batch in rest for i in batch)  # skipped rows never loaded
        assert resumed.state_dict() == {"epoch": epoch, "batches": len(straight[epoch])}
        assert epochs(resumed, epoch + 1, 2) == straight[epoch + 1 :]  # later epochs skip nothing


def test_a_checkpoint_at_the_end_of_an_epoch_resumes_at_the_next_ones_first_batch():
    straight = epochs(loader("grouped", Rows()), 0, 1)
    first = loader("grouped", Rows())
    epochs(first, 0, 0)
    state = first.state_dict()
    assert state == {"epoch": 0, "batches": len(straight[0])}
    resumed = loader("grouped", Rows())
    resumed.load_state_dict(state)
    set_sampler_epoch(resumed, 1)
    assert list(resumed) == straight[1]


def test_worker_processes_skip_the_same_batches():
    straight = epochs(loader("plain", Rows()), 0, 0)[0]
    resumed = loader("plain", Rows(), num_workers=1)
    resumed.load_state_dict({"epoch": 0, "batches": 2})
    assert list(resumed) == straight[2:]


def test_iterating_leaves_the_global_rng_alone():
    """A resumed run does not repeat the epoch starts before its checkpoint: they must not draw from it."""
    dl = loader("plain", Rows())
    state = torch.get_rng_state()
    epochs(dl, 0, 1)
    assert torch.equal(torch.get_rng_state(), state)
