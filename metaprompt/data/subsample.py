"""Deterministic k-shot and cap subsampling.

Few-shot pools are *nested*: the 16-shot set is the first 16 of the same seeded order as the 64-shot
set, so results across k differ only by the added examples (the usual few-shot protocol).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def parse_k(k: int | str | None) -> int | None:
    """``None``/``"all"`` -> None (keep everything); otherwise a non-negative int."""
    if k is None or (isinstance(k, str) and k.lower() == "all"):
        return None
    k = int(k)
    if k < 0:
        raise ValueError(f"k_shot must be >= 0 or 'all', got {k}")
    return k


def k_shot(items: Sequence[T], k: int | str | None, task: str, seed: int = 0) -> list[T]:
    """The first ``k`` items of a seeded order of ``items`` (all items if k is None/'all' or >= len)."""
    k = parse_k(k)
    if k is None or k >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(f"metaprompt-kshot-v1:{task}:{seed}").shuffle(order)
    return [items[i] for i in sorted(order[:k])]
