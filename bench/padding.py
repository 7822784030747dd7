"""Padding fraction of training batches with and without length bucketing.

Real data (the demo source tasks through ``MultitaskDataModule``'s own loaders) when it is present;
otherwise (and in the smoke run) synthetic log-normal lengths through the same samplers.
"""

from __future__ import annotations

import torch

from metaprompt.data.bucketing import LengthBucketBatchSampler, padding_fraction
from metaprompt.data.sampling import TemperatureSampler
from metaprompt.tasks.catalog import default_data_root


def _loader_padding(dm) -> float:
    padded = real = 0
    for batch in dm.train_dataloader():
        padded += batch["attention_mask"].numel()
        real += int(batch["attention_mask"].sum())
    return 1.0 - real / padded


def real_padding(backbone: str, batch_size: int, tasks: str = "demo_sources", max_length: int = 512) -> dict:
    """Padding fraction of one epoch of ``tasks``' training batches, plain vs length-bucketed."""
    from metaprompt.data import MultitaskDataModule

    out = {"source": f"{tasks} (max_length {max_length}, batch {batch_size})"}
    for bucketing in (False, True):
        dm = MultitaskDataModule(
            tasks=tasks, backbone=backbone, max_length=max_length, batch_size=batch_size, length_bucketing=bucketing
        )
        dm.setup("fit")
        out["bucketed" if bucketing else "plain"] = _loader_padding(dm)
    return out


def synthetic_padding(batch_size: int, n: int = 2000, seed: int = 0) -> dict:
    """The same comparison on log-normal lengths (median ~150 tokens) split into 4 tasks."""
    g = torch.Generator().manual_seed(seed)
    lengths = (torch.randn(n, generator=g) * 0.6 + 5.0).exp().clamp(8, 1024).long().tolist()
    sizes = [n // 4] * 4
    sampler = TemperatureSampler(sizes, 2.0, sum(sizes), seed)
    order = list(sampler)
    plain = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bucketed = list(LengthBucketBatchSampler(TemperatureSampler(sizes, 2.0, sum(sizes), seed), batch_size, lengths))
    return {
        "source": f"synthetic log-normal lengths, {n} rows, batch {batch_size}",
        "plain": padding_fraction(lengths, plain),
        "bucketed": padding_fraction(lengths, bucketed),
    }


def padding(backbone: str, batch_size: int, smoke: bool) -> dict:
    if not smoke and default_data_root() is not None:
        return real_padding(backbone, batch_size)
    return synthetic_padding(batch_size)
