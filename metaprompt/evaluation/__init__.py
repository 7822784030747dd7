"""Generation-based evaluation: metrics over parsed structures, per-task evaluator, prediction tables."""

from __future__ import annotations

from metaprompt.evaluation.evaluator import PRIMARY_METRIC, PRIMARY_OVERRIDES, QA_KINDS, TaskEvaluator
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

__all__ = [
    "PRIMARY_METRIC",
    "PRIMARY_OVERRIDES",
    "QA_KINDS",
    "LabelAccuracyF1",
    "MatchAccuracy",
    "PredictionTable",
    "SetF1",
    "TaskEvaluator",
    "TextOverlap",
    "exact_match",
    "normalize_answer",
    "token_f1",
]
