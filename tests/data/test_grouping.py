"""Task-grouped batches keep every task's rows (and their order) and hold at most g tasks each."""

from __future__ import annotations

import pytest

from metaprompt.data import MultitaskDataModule
from metaprompt.data.grouping import TaskGroupedBatchSampler
from metaprompt.data.sampling import TemperatureSampler

SIZES = [300, 120, 40, 9]
TASK_OF = [t for t, n in enumerate(SIZES) for _ in range(n)]


def per_task(indices):
    out: dict[int, list[int]] = {}
    for i in indices:
        out.setdefault(TASK_OF[i], []).append(i)
    return out


@pytest.mark.parametrize("g", [1, 2, 4])
def test_each_task_gets_the_samplers_rows_in_order_and_batches_hold_at_most_g_tasks(g):
    base = list(TemperatureSampler(SIZES, 2.0, 1000, seed=3))
    sampler = TaskGroupedBatchSampler(TemperatureSampler(SIZES, 2.0, 1000, seed=3), 8, TASK_OF, g)
    batches = list(sampler)
    assert per_task(i for b in batches for i in b) == per_task(base)  # same rows, same order within each task
    assert all(len({TASK_OF[i] for i in b}) <= g for b in batches)
    full = [b for b in batches if len(b) == 8]
    assert len(full) >= len(batches) - len(SIZES) - 1 and len(sampler) == len(batches)
    mixed = [base[i : i + 8] for i in range(0, len(base), 8)]
    distinct = lambda bs: sum(len({TASK_OF[i] for i in b}) for b in bs) / len(bs)  # noqa: E731
    assert distinct(batches) < distinct(mixed)


def test_epochs_and_drop_last_and_bad_sizes():
    sampler = TaskGroupedBatchSampler(TemperatureSampler(SIZES, 2.0, 200), 8, TASK_OF, 1, drop_last=True)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sampler.sampler.epoch == 1 and list(sampler) != first
    assert all(len(b) == 8 for b in first)
    with pytest.raises(ValueError, match="divide batch_size"):
        TaskGroupedBatchSampler(TemperatureSampler(SIZES), 8, TASK_OF, 3)


def test_the_data_module_groups_training_batches(data_root, tmp_path):
    kw = dict(tasks="gad,rqe,kqa_nli", backbone="tiny-llama", max_length=256, batch_size=4, k_shot=16,
              samples_per_epoch=48, max_eval_per_task=4, cache_dir=str(tmp_path))  # fmt: skip
    mixed, grouped = MultitaskDataModule(**kw), MultitaskDataModule(**kw, tasks_per_batch=1)
    mixed.setup("fit")
    grouped.setup("fit")

    def rows(dm):
        return [
            (t, tuple(ids[mask == 1].tolist()))
            for b in dm.train_dataloader()
            for t, ids, mask in zip(b["task_ids"].tolist(), b["input_ids"], b["attention_mask"])
        ]

    assert sorted(rows(grouped)) == sorted(rows(mixed))
    assert all(len(set(b["task_ids"].tolist())) == 1 for b in grouped.train_dataloader())
    with pytest.raises(ValueError, match="choose one"):
        MultitaskDataModule(**kw, tasks_per_batch=1, length_bucketing=True)
