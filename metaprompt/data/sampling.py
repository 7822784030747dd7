"""Temperature sampling across tasks: p_i ∝ n_i^(1/T).

T = 1 samples proportionally to task size; T -> ∞ uniformly over tasks (T2/mT5 practice; MPT and
ATTEMPT train on their source mixtures this way). Within a task, examples are drawn without
replacement and the task's order is reshuffled each time it is exhausted, so a small task is cycled
through rather than over-sampled on a few rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def task_probabilities(sizes: Sequence[int], temperature: float) -> torch.Tensor:
    """Sampling probability of each task (zero for empty tasks).

    Args:
        sizes: Number of training examples per task ``[num_tasks]``.
        temperature: T > 0.

    Returns:
        ``[num_tasks]`` float64 probabilities summing to 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = torch.tensor(sizes, dtype=torch.float64)
    if n.sum() <= 0:
        raise ValueError("all tasks are empty")
    w = torch.where(n > 0, n.clamp(min=1) ** (1.0 / temperature), torch.zeros_like(n))
    return w / w.sum()


class TemperatureSampler(Sampler[int]):
    """Indices into the concatenation of per-task datasets, tasks drawn by temperature.

    Args:
        sizes: Examples per task, in the order the datasets were concatenated.
        temperature: See :func:`task_probabilities`.
        num_samples: Indices per epoch (default: total number of examples).
        seed: Base seed; epoch ``e`` uses ``seed + e`` (call ``set_epoch``), so runs are reproducible.
    """

    def __init__(self, sizes: Sequence[int], temperature: float = 2.0, num_samples: int | None = None, seed: int = 0):
        self.sizes = list(sizes)
        self.probs = task_probabilities(self.sizes, temperature)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.num_samples = num_samples or sum(self.sizes)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        tasks = torch.multinomial(self.probs, self.num_samples, replacement=True, generator=g).tolist()
        orders: list[list[int]] = [[] for _ in self.sizes]
        for t in tasks:
            if not orders[t]:
                orders[t] = torch.randperm(self.sizes[t], generator=g).tolist()[::-1]
            yield self.offsets[t] + orders[t].pop()
