"""Evaluation: metrics over parsed or ranked answers, per-task evaluator, bootstrap intervals, tables.

``metaprompt.evaluation.ranking`` (ranked scoring of label answers) is imported from its module, not
re-exported here: it builds batches with ``metaprompt.data``, which itself imports this package.
"""

from __future__ import annotations

from metaprompt.evaluation.bootstrap import (
    Interval,
    bootstrap_ci,
    paired_bootstrap,
    paired_mean_bootstrap,
    scores_for_counts,
)
from metaprompt.evaluation.evaluator import (
    PRIMARY_METRIC,
    PRIMARY_OVERRIDES,
    QA_KINDS,
    TaskEvaluator,
    kind_of,
    label_like,
)
from metaprompt.evaluation.metrics import (
    LabelAccuracyF1,
    MatchAccuracy,
    SetF1,
    TextOverlap,
    exact_match,
    normalize_answer,
    token_f1,
)
from metaprompt.evaluation.table import PredictionTable
from metaprompt.evaluation.tasks import EvalRow, EvalTask, EvalTasks

__all__ = [
    "PRIMARY_METRIC",
    "PRIMARY_OVERRIDES",
    "QA_KINDS",
    "EvalRow",
    "EvalTask",
    "EvalTasks",
    "Interval",
    "LabelAccuracyF1",
    "MatchAccuracy",
    "PredictionTable",
    "SetF1",
    "TaskEvaluator",
    "TextOverlap",
    "bootstrap_ci",
    "exact_match",
    "kind_of",
    "label_like",
    "normalize_answer",
    "paired_bootstrap",
    "paired_mean_bootstrap",
    "scores_for_counts",
    "token_f1",
]
