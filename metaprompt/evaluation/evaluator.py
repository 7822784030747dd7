"""Per-task metrics for generation-based validation/test, and the macro score over tasks.

The evaluator is an ``nn.Module`` holding one metric (QA: one per answer kind) per task in a
``ModuleDict``, so that a LightningModule that owns it moves the states to its device and every
rank's states are summed on ``compute()``. Usage in a LightningModule::

    self.evaluator = TaskEvaluator([("ncbi_disease", "ner", ()), ("rqe", "nli", ("false", "true"))])
    # validation_step, per example:
    self.evaluator.update(task_name, verbalizer.parse(generated_text, record), record)
    # on_validation_epoch_end, on EVERY rank (compute runs collectives):
    self.log_dict(self.evaluator.compute()); self.evaluator.reset()

Keys: ``"<task>/<metric>"`` for each metric of the task, ``"<task>/score"`` (the task's primary
metric) and ``"macro/score"`` (mean of task scores). Values are floats in [0, 1].

``update`` returns the example's kind and sufficient statistics (see ``metrics.py``), which the
module keeps per test example for bootstrap intervals (``metaprompt.evaluation.bootstrap``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from metaprompt.evaluation.metrics import LabelAccuracyF1, MatchAccuracy, SetF1, TextOverlap
from metaprompt.tasks.records import TASK_TYPES, QaRecord, Record, RelationRecord
from metaprompt.tasks.verbalizers.qa import YES_NO_MAYBE

QA_KINDS: tuple[str, ...] = ("yes_no_maybe", "multiple_choice", "free_text")

PRIMARY_METRIC: dict[str, str] = {
    "ner": "f1",
    "re": "f1",
    "nli": "accuracy",
    "summarization": "rougeL",
    "yes_no_maybe": "accuracy",
    "multiple_choice": "accuracy",
    "free_text": "rougeL",
}
"""Primary metric per task type (QA: per answer kind), as the datasets' papers report first."""

PRIMARY_OVERRIDES: dict[str, str] = {"evidence_inference": "macro_f1", "clinifact": "macro_f1"}
"""Datasets whose primary metric is not their type's default (task name -> metric name).

The ``metric:`` lines of the 10 targets in ``MANIFEST.yaml``: NER (neurotrial_ner, ncbi_disease)
strict micro F1; RE (chia, bioinfer) micro F1; head_qa and rqe accuracy; mts_dialog and mediqa_qs
ROUGE-L; these are the type defaults. Two targets name accuracy *and* macro-F1:

* ``clinifact`` ("accuracy and macro-F1 over 3 classes"): macro-F1 is primary. Its test labels are
  skewed (no_info 173 / evidence 88 / inconclusive 39 of 300), so always answering no_info scores
  57.7% accuracy but 24% macro-F1; macro-F1 is the number a majority-class guess cannot inflate.
  ``clinifact/accuracy`` is still reported.
* ``pubmedqa`` ("accuracy and macro-F1 over yes/no/maybe, reasoning-required"): accuracy stays
  primary, as in the PubMedQA paper's leaderboard and BLURB, which rank by accuracy;
  ``pubmedqa/macro_f1`` is reported beside it.

Among the sources, ``evidence_inference`` ("macro-F1 / accuracy") names macro-F1 first.
"""


def kind_of(record: Record) -> str:
    """The metric kind of a record: its QA kind for QA, else its task type."""
    return record.kind if isinstance(record, QaRecord) else record.task_type


def label_like(record: Record) -> bool:
    """Whether the record's answer is one of a known list (NLI labels, yes/no/maybe, options, or a
    candidate pair's relation vs none).

    Multiple choice without options and NLI without a label space are not (nothing to rank).
    """
    if isinstance(record, RelationRecord):
        return record.candidate is not None
    if isinstance(record, QaRecord):
        return record.kind == "yes_no_maybe" or (record.kind == "multiple_choice" and bool(record.options))
    return record.task_type == "nli" and bool(getattr(record, "label_space", ()))


def _metrics_for(task_type: str, labels: tuple[str, ...], task: str) -> dict[str, nn.Module]:
    """The metric(s) of one task, keyed by kind (the task type itself except for QA)."""
    if task_type in ("ner", "re"):
        return {task_type: SetF1()}
    if task_type == "nli":
        if not labels:
            raise ValueError(f"task {task_type!r} {task!r}: NLI needs its label space, got none")
        return {task_type: LabelAccuracyF1(labels)}
    if task_type == "summarization":
        return {task_type: TextOverlap()}
    if task_type == "qa":
        return {
            "yes_no_maybe": LabelAccuracyF1(labels or YES_NO_MAYBE),
            "multiple_choice": MatchAccuracy(),
            "free_text": TextOverlap(),
        }
    raise ValueError(f"task {task!r}: task_type {task_type!r} is not one of {TASK_TYPES}")


class TaskEvaluator(nn.Module):
    """Generation metrics for a set of tasks.

    Args:
        tasks: ``(name, task_type, labels)`` per task. ``labels`` is the NLI label space (required for
            NLI), optionally the yes/no/maybe choices of a QA task (default ``yes, no, maybe``), and
            ignored otherwise.
        primary_overrides: Task name -> metric name used as ``<task>/score``; merged over
            :data:`PRIMARY_OVERRIDES`.

    A QA task gets a metric for each answer kind and scores each record by ``record.kind``. If one
    task mixes kinds, its keys become ``<task>/<kind>/<metric>`` and its score the mean over kinds.
    """

    def __init__(
        self,
        tasks: Sequence[tuple[str, str, Sequence[str]]],
        primary_overrides: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.task_types: dict[str, str] = {}
        self._module_keys: dict[str, str] = {}
        self.metrics = nn.ModuleDict()
        for name, task_type, labels in tasks:
            # ModuleDict keys cannot contain "."; user task names might.
            key = name.replace(".", "_")
            if name in self.task_types or key in self.metrics or name == "macro":
                raise ValueError(
                    f"TaskEvaluator: task name {name!r} is reserved ('macro') or given twice (also after '.' -> '_')"
                )
            self.task_types[name] = task_type
            self._module_keys[name] = key
            self.metrics[key] = nn.ModuleDict(_metrics_for(task_type, tuple(labels), name))
        self.primary_overrides = {**PRIMARY_OVERRIDES, **(primary_overrides or {})}
        for name, metric in self.primary_overrides.items():
            if name in self.task_types and not any(metric in m.metric_names for m in self._kinds(name).values()):
                raise ValueError(f"primary_overrides: task {name!r} ({self.task_types[name]}) has no metric {metric!r}")

    def _kinds(self, task_name: str) -> nn.ModuleDict:
        if task_name not in self.task_types:
            raise KeyError(f"TaskEvaluator: unknown task {task_name!r}; known: {', '.join(self.task_types)}")
        return self.metrics[self._module_keys[task_name]]

    def update(self, task_name: str, prediction: Any, record: Record) -> dict[str, Any]:
        """Score one parsed prediction against ``record.structure()``.

        Args:
            task_name: One of the names given at construction.
            prediction: The verbalizer's parse of the generated text, or the ranked answer (same type
                as ``record.structure()``).
            record: The gold record; for QA its ``kind`` picks the metric and all its ``answers``
                count as references for free text.

        Returns:
            ``{"kind": <metric kind>, "stats": <the metric's example_stats>}`` of this example.
        """
        task_type = self.task_types.get(task_name)
        kinds = self._kinds(task_name)
        if record.task_type != task_type:
            raise ValueError(
                f"TaskEvaluator.update: task {task_name!r} is {task_type!r} but record {record.uid!r} is {record.task_type!r}"
            )
        if isinstance(record, QaRecord):
            if record.kind not in kinds:
                raise ValueError(f"record {record.uid!r}: QA kind {record.kind!r} is not one of {QA_KINDS}")
            gold = (record.answers or ("",)) if record.kind == "free_text" else record.structure()
        else:
            gold = record.structure()
        kind = kind_of(record)
        metric = kinds[kind]
        metric.update([prediction], [gold])
        return {"kind": kind, "stats": metric.example_stats(prediction, gold)}

    def primary_metric(self, task_name: str, kind: str) -> str:
        """The metric behind ``<task>/score`` for one kind of the task (overrides apply to their kind)."""
        # An override names one kind's metric; a QA task's other kinds keep their own primary.
        override = self.primary_overrides.get(task_name)
        return override if override in self._kinds(task_name)[kind].metric_names else PRIMARY_METRIC[kind]

    def compute(self) -> dict[str, float]:
        """Synced scores of every task that got at least one example on any rank, and their macro mean.

        Every metric is computed, updated or not, so that all ranks run the same collectives.
        """
        out: dict[str, float] = {}
        scores: list[float] = []
        with warnings.catch_warnings():
            # Metrics without updates on this rank are still computed (see above); their warning is noise.
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            for name in self.task_types:
                per_kind = {}
                for kind, metric in self._kinds(name).items():
                    values = {key: float(value) for key, value in metric.compute().items()}
                    if values.pop("count") > 0:
                        per_kind[kind] = values
                if not per_kind:
                    continue
                kind_scores = []
                for kind, values in per_kind.items():
                    prefix = f"{name}/{kind}" if len(per_kind) > 1 else name
                    out.update({f"{prefix}/{key}": value for key, value in values.items()})
                    kind_scores.append(values[self.primary_metric(name, kind)])
                out[f"{name}/score"] = sum(kind_scores) / len(kind_scores)
                scores.append(out[f"{name}/score"])
        if scores:
            out["macro/score"] = sum(scores) / len(scores)
        return out

    def reset(self) -> None:
        """Clear every metric's state (call at the start or end of each evaluation epoch)."""
        for kinds in self.metrics.values():
            for metric in kinds.values():
                metric.reset()
