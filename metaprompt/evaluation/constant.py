"""The best constant answer of a label-like task: the score a system that ignores its input would reach.

A learned system is only worth its score above this floor (a GAD teacher answering "None" to every pair
scores relation F1 0, while answering the relation to every pair scores ~70). Computed from the
per-example statistics of ``predictions.jsonl`` alone, so any scored run yields it:

* label kinds (NLI, yes/no/maybe: ``gold``/``pred`` statistics): each label seen as gold or predicted,
  predicted for every example;
* candidate-pair relation rows (ranked ``re`` rows: one candidate triple or none): "the candidate" for
  every row (tp = 1 where the pair holds, else fp = 1) and "none" for every row (fn where it holds).

Other kinds (multiple choice, generated text) have no constant answer here: ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metaprompt.evaluation.bootstrap import scores_for_counts, stats_family


def _constant_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict]] | None:
    """Answer name -> the per-example statistics had that answer been given to every row."""
    family = {stats_family(r["stats"]) for r in rows}
    if family == {"label"}:
        labels = sorted({r["stats"]["gold"] for r in rows} | {r["stats"]["pred"] for r in rows} - {None})
        return {
            label: [
                {"gold": r["stats"]["gold"], "pred": label, "correct": int(r["stats"]["gold"] == label)} for r in rows
            ]
            for label in labels
        }
    if family == {"set"} and all(r["kind"] == "re" and r.get("scoring") == "ranked" for r in rows):
        gold = [r["stats"]["tp"] + r["stats"]["fn"] for r in rows]  # 1 where the candidate pair holds
        if any(g not in (0, 1) for g in gold):
            return None
        return {
            "the candidate": [{"tp": g, "fp": 1 - g, "fn": 0} for g in gold],
            "none": [{"tp": 0, "fp": 0, "fn": g} for g in gold],
        }
    return None


def best_constant(rows: Sequence[Mapping[str, Any]], primary: Mapping[str, str]) -> tuple[str, float] | None:
    """The constant answer with the highest task score over ``rows``, and that score.

    Args:
        rows: Per-example records of one task (``kind``, ``stats``, ``scoring``).
        primary: Kind -> metric name of the task's score (e.g. ``{"re": "f1"}``).

    Returns:
        ``(answer, score)``, or ``None`` when the task's kind has no constant answer (see module docstring).
    """
    if not rows:
        return None
    options = _constant_stats(rows)
    if not options:
        return None
    ones = np.ones((1, len(rows)))
    scored = {
        answer: float(scores_for_counts([{**r, "stats": s} for r, s in zip(rows, stats)], primary, ones)[0])
        for answer, stats in options.items()
    }
    answer = max(scored, key=scored.__getitem__)  # ties: the first answer listed
    return answer, scored[answer]
