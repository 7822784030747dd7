"""Length bucketing keeps the sampler's rows and task mixture, and cuts padding."""

from __future__ import annotations

import pytest
import torch

from metaprompt.data import MultitaskDataModule
from metaprompt.data.bucketing import LengthBucketBatchSampler, padding_fraction
from metaprompt.data.sampling import TemperatureSampler

SIZES = [300, 120, 40]


def _lengths(n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * 0.7 + 4.5).exp().clamp(4, 2000).long().tolist()


def test_same_rows_as_the_sampler_in_fewer_padded_batches():
    lengths = _lengths(sum(SIZES))
    base = list(TemperatureSampler(SIZES, 2.0, 500, seed=3))
    sampler = LengthBucketBatchSampler(TemperatureSampler(SIZES, 2.0, 500, seed=3), 8, lengths, pool_batches=10)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == sorted(base)  # the same draws, hence the same task mixture
    assert len(batches) == len(sampler) == 63 and all(1 <= len(b) <= 8 for b in batches)
    plain = [base[i : i + 8] for i in range(0, len(base), 8)]
    assert padding_fraction(lengths, batches) < 0.6 * padding_fraction(lengths, plain)


def test_deterministic_per_epoch_and_drop_last():
    lengths = _lengths(sum(SIZES))
    sampler = LengthBucketBatchSampler(TemperatureSampler(SIZES, 2.0, 100), 8, lengths, pool_batches=4, drop_last=True)
    first, again = list(sampler), list(sampler)
    sampler.set_epoch(1)
    assert first == again != list(sampler)
    assert sampler.sampler.epoch == 1  # the epoch reaches the task sampler too
    assert all(len(b) == 8 for b in first) and len(first) == len(sampler) == 12  # 3 pools of 4 (+4 rows dropped)


def test_padding_fraction():
    assert padding_fraction([2, 4, 4, 1], [[0, 1], [2, 3]]) == pytest.approx(1 - 11 / 16)
    assert padding_fraction([3], [[0]]) == 0.0
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketBatchSampler([], 0, [])


def test_datamodule_switch(data_root):
    kwargs = dict(tasks="gad,rqe", backbone="tiny-llama", max_length=256, batch_size=4, k_shot=32, seed=0)
    plain = MultitaskDataModule(**kwargs)
    bucketed = MultitaskDataModule(**kwargs, length_bucketing=True)
    pads = {}
    for name, dm in (("plain", plain), ("bucketed", bucketed)):
        dm.setup("fit")
        masks = [b["attention_mask"] for b in dm.train_dataloader()]
        assert sum(m.shape[0] for m in masks) == 64
        pads[name] = 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert isinstance(bucketed.train_dataloader().batch_sampler, LengthBucketBatchSampler)
    assert pads["bucketed"] < pads["plain"]
