"""Percentile bootstrap intervals of a task's primary score, and paired differences between systems.

Input rows are the per-example records of ``predictions.jsonl`` (any mapping with ``uid``, ``kind``
and ``stats``; see :meth:`TaskEvaluator.update`). Every corpus metric here is a function of *sums*
of per-example statistics, so a resample is a count vector ``c`` (how often each example was drawn)
and its score is recomputed from ``c @ stats``, vectorised over resamples as ``C [R, n] @ X [n, s]``:

* F1 / precision / recall (NER, RE): corpus sums of ``tp, fp, fn``, then the ratios (never a mean
  of per-example F1s);
* accuracy and macro-F1 (labels): per-label tp / predicted / gold counts, then the per-label F1
  averaged over labels seen in the resample (as ``LabelAccuracyF1``);
* ROUGE, exact match, token F1: means of the per-example scores.

A task with several kinds (a QA task mixing answer kinds) scores the mean over the kinds present in
the resample, as ``TaskEvaluator.compute`` does. Intervals are percentile intervals over
``n_resamples`` multinomial resamples of the examples from a seeded ``numpy`` generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_SET = ("tp", "fp", "fn")
_TEXT = ("rouge1", "rouge2", "rougeL", "exact_match", "token_f1")
FAMILY_METRICS: dict[str, tuple[str, ...]] = {
    "set": ("precision", "recall", "f1"),
    "label": ("accuracy", "macro_f1"),
    "match": ("accuracy",),
    "text": _TEXT,
}


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval over ``n`` examples."""

    estimate: float
    low: float
    high: float
    n: int


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0 where ``den == 0`` (the metrics' ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def stats_family(stats: Mapping[str, Any]) -> str:
    if set(_SET) <= set(stats):
        return "set"
    if "gold" in stats:
        return "label"
    if "rougeL" in stats:
        return "text"
    if "correct" in stats:
        return "match"
    raise ValueError(f"bootstrap: cannot tell the metric of per-example stats {sorted(stats)}")


def _design(stats: Sequence[Mapping[str, Any]], family: str) -> np.ndarray:
    """The per-example statistics of one kind as a matrix ``[n, s]`` whose column sums suffice."""
    if family == "set":
        return np.array([[x[k] for k in _SET] for x in stats], dtype=np.float64).reshape(-1, 3)
    if family == "text":
        return np.array([[x[k] for k in _TEXT] for x in stats], dtype=np.float64).reshape(-1, 5)
    if family == "match":
        return np.array([[x["correct"]] for x in stats], dtype=np.float64).reshape(-1, 1)
    labels = sorted({x["gold"] for x in stats} | {x["pred"] for x in stats if x["pred"] is not None})
    index = {label: i for i, label in enumerate(labels)}
    gold = np.zeros((len(stats), len(labels)))
    pred = np.zeros((len(stats), len(labels)))
    for row, x in enumerate(stats):
        gold[row, index[x["gold"]]] = 1
        if x["pred"] is not None:  # outside the label list: wrong, and no class's false positive
            pred[row, index[x["pred"]]] = 1
    return np.concatenate([gold * pred, pred, gold], axis=1)  # [n, 3L]: tp, predicted, gold per label


def _metric(sums: np.ndarray, count: np.ndarray, family: str, metric: str) -> np.ndarray:
    """Corpus metric per resample from the column sums ``[R, s]`` and example counts ``[R]``."""
    if metric not in FAMILY_METRICS[family]:
        raise ValueError(f"bootstrap: {family} statistics have no metric {metric!r}; known: {FAMILY_METRICS[family]}")
    if family == "set":
        tp, fp, fn = sums.T
        precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
        return {"precision": precision, "recall": recall, "f1": _div(2 * precision * recall, precision + recall)}[
            metric
        ]
    if family == "text":
        return _div(sums[:, _TEXT.index(metric)], count)
    if family == "match":
        return _div(sums[:, 0], count)
    tp, predicted, gold = np.split(sums, 3, axis=1)  # [R, L] each
    if metric == "accuracy":
        return _div(tp.sum(1), count)
    f1 = _div(2 * tp, predicted + gold)  # = 2PR / (P + R), 0 when tp = 0
    seen = (predicted + gold) > 0  # tp + fp + fn > 0
    return _div((f1 * seen).sum(1), seen.sum(1))


def scores_for_counts(rows: Sequence[Mapping[str, Any]], primary: Mapping[str, str], counts: np.ndarray) -> np.ndarray:
    """The task score of each resample, recomputed at corpus level.

    Args:
        rows: Per-example records of one task (``kind``, ``stats``), in a fixed order.
        primary: Kind -> metric name of the task's score (e.g. ``{"ner": "f1"}``).
        counts: ``[R, n]`` how often each row is drawn in each resample (``np.ones((1, n))``: the
            sample itself).

    Returns:
        ``[R]`` scores; a kind absent from a resample is left out of its mean over kinds.
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, len(rows))
    per_kind = []
    for kind in dict.fromkeys(row["kind"] for row in rows):
        if kind not in primary:
            raise ValueError(f"bootstrap: no primary metric given for kind {kind!r} (got {sorted(primary)})")
        idx = [i for i, row in enumerate(rows) if row["kind"] == kind]
        stats = [rows[i]["stats"] for i in idx]
        family = stats_family(stats[0])
        kind_counts = counts[:, idx]  # [R, n_kind]
        n = kind_counts.sum(1)
        score = _metric(kind_counts @ _design(stats, family), n, family, primary[kind])
        per_kind.append(np.where(n > 0, score, np.nan))
    stacked = np.stack(per_kind)  # [kinds, R]
    present = ~np.isnan(stacked)
    return np.where(present, stacked, 0).sum(0) / np.maximum(present.sum(0), 1)


def resample_counts(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``[n_resamples, n]`` draw counts of ``n`` examples resampled with replacement (seeded)."""
    if n_resamples < 1:
        raise ValueError(f"bootstrap: n_resamples must be >= 1, got {n_resamples}")
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_resamples)


def _interval(estimate: float, resampled: np.ndarray, n: int, confidence: float) -> Interval:
    if not 0 < confidence < 1:
        raise ValueError(f"bootstrap: confidence must be in (0, 1), got {confidence}")
    low, high = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(estimate), float(low), float(high), n)


def bootstrap_ci(
    rows: Sequence[Mapping[str, Any]],
    primary: Mapping[str, str],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of one task's score over its examples.

    Args:
        rows: Per-example records of one task (``kind``, ``stats``).
        primary: Kind -> metric name of the task's score.
        n_resamples: Resamples (>= 1000 for a 95% interval).
        seed: Seed of the resampler (same seed, same rows: same interval).
        confidence: Coverage of the interval.
    """
    if not rows:
        raise ValueError("bootstrap_ci: no examples")
    n = len(rows)
    estimate = scores_for_counts(rows, primary, np.ones((1, n)))[0]
    resampled = scores_for_counts(rows, primary, resample_counts(n, n_resamples, seed))
    return _interval(estimate, resampled, n, confidence)


def paired_bootstrap(
    rows_a: Sequence[Mapping[str, Any]],
    rows_b: Sequence[Mapping[str, Any]],
    primary: Mapping[str, str],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Interval of ``score(A) - score(B)`` on the same examples, both recomputed on each resample.

    Rows are joined by ``uid``; both systems must hold exactly the same examples.

    Raises:
        ValueError: A uid appears twice, or only in one system (the first few are named).
    """
    rows_a, aligned_b = _aligned(rows_a, rows_b)
    n = len(rows_a)
    ones, counts = np.ones((1, n)), resample_counts(n, n_resamples, seed)
    estimate = scores_for_counts(rows_a, primary, ones)[0] - scores_for_counts(aligned_b, primary, ones)[0]
    diffs = scores_for_counts(rows_a, primary, counts) - scores_for_counts(aligned_b, primary, counts)
    return _interval(estimate, diffs, n, confidence)


def _aligned(
    rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``rows_a`` and ``rows_b`` in the same uid order (see :func:`paired_bootstrap` for the errors)."""
    by_uid = []
    for name, rows in (("A", rows_a), ("B", rows_b)):
        table = {row["uid"]: row for row in rows}
        if len(table) != len(rows):
            raise ValueError(f"paired_bootstrap: system {name} has duplicate uids")
        by_uid.append(table)
    only_a, only_b = sorted(by_uid[0].keys() - by_uid[1].keys()), sorted(by_uid[1].keys() - by_uid[0].keys())
    if only_a or only_b:
        raise ValueError(
            f"paired_bootstrap: the systems hold different examples; only in A ({len(only_a)}): {only_a[:5]}, "
            f"only in B ({len(only_b)}): {only_b[:5]}"
        )
    if not rows_a:
        raise ValueError("paired_bootstrap: no examples")
    return list(rows_a), [by_uid[1][row["uid"]] for row in rows_a]


def mean_bootstrap(
    tasks: Sequence[tuple[Sequence[Sequence[Mapping[str, Any]]], Mapping[str, str]]],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Interval of the mean over tasks of each task's score averaged over its runs (seeds): a cell of the
    paper-style table (one task) or its average row (all targets).

    Stratified like :func:`paired_mean_bootstrap`: every task's examples are drawn on their own, the same
    draw for all runs of a task (its seeds share the test examples). One task with one run gives exactly
    :func:`bootstrap_ci` of that run (same seed, the run's own row order).

    Args:
        tasks: Per task, ``(runs, primary)``: the rows of each run (joined by uid), ``primary`` kind -> metric.
        n_resamples, seed, confidence: As in :func:`bootstrap_ci`.
    """
    if not tasks or any(not runs for runs, _ in tasks):
        raise ValueError("mean_bootstrap: every task needs at least one run")
    estimate, resampled, n = 0.0, np.zeros(n_resamples), 0
    for i, (runs, primary) in enumerate(tasks):
        aligned = [list(runs[0]), *(_aligned(runs[0], rows)[1] for rows in runs[1:])]
        size = len(aligned[0])
        ones, counts = np.ones((1, size)), resample_counts(size, n_resamples, seed + i)
        for rows in aligned:
            estimate += scores_for_counts(rows, primary, ones)[0] / len(aligned)
            resampled += scores_for_counts(rows, primary, counts) / len(aligned)
        n += size
    return _interval(estimate / len(tasks), resampled / len(tasks), n, confidence)


def paired_mean_bootstrap(
    tasks: Sequence[
        tuple[Sequence[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]], Mapping[str, str]]
    ],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Interval of the mean over tasks of ``score(A) - score(B)`` (each task's difference averaged over
    its seed-matched pairs): the paper's "average over targets" comparison.

    Stratified: on each resample every task's examples are drawn on their own (tasks have different
    sizes and metrics), the same draw for all pairs of a task (its seeds share the test examples).

    Args:
        tasks: Per task, ``(pairs, primary)``: ``pairs`` the ``(rows_a, rows_b)`` of each seed-matched pair
            of runs (joined by uid, as :func:`paired_bootstrap`), ``primary`` its kind -> metric.
        n_resamples, seed, confidence: As in :func:`bootstrap_ci`.
    """
    if not tasks or any(not pairs for pairs, _ in tasks):
        raise ValueError("paired_mean_bootstrap: every task needs at least one pair of runs")
    estimate, resampled, n = 0.0, np.zeros(n_resamples), 0
    for i, (pairs, primary) in enumerate(tasks):
        aligned = [_aligned(a, b) for a, b in pairs]
        size = len(aligned[0][0])
        if any(len(a) != size for a, _ in aligned):
            raise ValueError("paired_mean_bootstrap: a task's pairs hold different numbers of examples")
        ones, counts = np.ones((1, size)), resample_counts(size, n_resamples, seed + i)
        for a, b in aligned:
            estimate += (scores_for_counts(a, primary, ones)[0] - scores_for_counts(b, primary, ones)[0]) / len(aligned)
            resampled += (scores_for_counts(a, primary, counts) - scores_for_counts(b, primary, counts)) / len(aligned)
        n += size
    return _interval(estimate / len(tasks), resampled / len(tasks), n, confidence)
