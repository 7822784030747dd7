"""Length-bucketed batching: rows of similar length share a batch, so fewer pad tokens are computed.

The task mixture is left to the underlying sampler (``TemperatureSampler``): indices are drawn from it
in pools of ``pool_batches * batch_size``, each pool is sorted by length and cut into batches, and the
batches of a pool are shuffled. Which rows are seen, and how often per task, is unchanged; only which
rows sit together changes (pools keep that local, so no epoch-long ordering by length appears).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the computed ``[B, max_len]`` positions that are padding, over all ``batches`` (row indices)."""
    padded = real = 0
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        padded += max(sizes, default=0) * len(sizes)
        real += sum(sizes)
    return 1.0 - real / padded if padded else 0.0


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length rows drawn from ``sampler``.

    Args:
        sampler: Yields row indices (e.g. ``TemperatureSampler``); its order decides which rows come.
        batch_size: Rows per batch.
        lengths: Token length of every row of the dataset (indexed by the sampler's indices).
        pool_batches: Batches per sorted pool (larger: less padding, less randomness of batch makeup).
        drop_last: Drop a pool's last, smaller batch.
        seed: Seed of the batch shuffling within each pool (epoch ``e`` uses ``seed + e``).
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        lengths: Sequence[int],
        pool_batches: int = 50,
        drop_last: bool = False,
        seed: int = 0,
    ):
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size and pool_batches must be >= 1, got {batch_size} and {pool_batches}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.lengths = list(lengths)
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        pool = self.pool_batches * self.batch_size
        full, rest = divmod(n, pool)
        per_rest = rest // self.batch_size if self.drop_last else -(-rest // self.batch_size)
        return full * self.pool_batches + per_rest

    def _batches(self, pool: list[int], g: torch.Generator) -> list[list[int]]:
        pool.sort(key=lambda i: self.lengths[i])
        batches = [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        pool: list[int] = []
        for index in self.sampler:
            pool.append(index)
            if len(pool) == self.pool_batches * self.batch_size:
                yield from self._batches(pool, g)
                pool = []
        if pool:
            yield from self._batches(pool, g)
