"""Metrics over *parsed generations*: structures in, scores in [0, 1] out.

Validation and test decode greedily, parse the text with the task's verbalizer and compare the result
with ``record.structure()``. torchmetrics has span F1 only over token-tag sequences and classification
metrics only over class indices known before decoding; nothing scores multisets of ``(mention, type)``
pairs or ``(head, relation, tail)`` triples recovered from free text, nor label words that may be
unparseable (``""``). So these are small hand-written ``Metric`` subclasses.

Every state is a tensor reduced by ``"sum"``: counts are ``int64``, score sums ``float64``. That makes
DDP / DeepSpeed / FSDP sync exact, ``merge_state`` work, and a metric fed half the data on each of two
processes equal one fed all of it. Python lists of strings are never synced state.

Each ``compute()`` returns a dict of 0-dim tensors that includes ``count`` (examples seen, after sync),
so a caller can tell a task that got no examples on any rank from one that scored 0.

Each metric also has ``example_stats(pred, target)``: one example's *sufficient statistics*, a small
JSON-able dict from which the corpus score of any multiset of examples can be recomputed by summing
(``metaprompt.evaluation.bootstrap``): ``tp/fp/fn`` (SetF1), ``gold/pred/correct`` (LabelAccuracyF1),
``correct`` (MatchAccuracy), the five per-example scores (TextOverlap).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import torch
from rouge_score import rouge_scorer
from torch import Tensor
from torchmetrics import Metric


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` in float64, 0 where ``den == 0`` (conlleval / sklearn ``zero_division=0``)."""
    num, den = num.double(), den.double()
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num))


def _f1(precision: Tensor, recall: Tensor) -> Tensor:
    return _safe_div(2 * precision * recall, precision + recall)


def _check_lengths(preds: Sequence[Any], targets: Sequence[Any], who: str) -> None:
    if len(preds) != len(targets):
        raise ValueError(f"{who}.update: got {len(preds)} predictions but {len(targets)} targets; expected one each")


class _SumStateMetric(Metric):
    """Base: sum-reduced tensor states whose dtype survives ``module.to(torch.bfloat16)``.

    torchmetrics guards ``.half()``/``.float()`` but not ``.to(dtype)``, which Lightning's
    ``*-true`` precision plugins call on the whole LightningModule; that would turn float64 sums
    into bf16 and lose precision. ``_apply`` therefore puts every state back to its own dtype.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True
    metric_names: tuple[str, ...] = ()

    def _sum_state(self, name: str, shape: tuple[int, ...] = (), dtype: torch.dtype = torch.long) -> None:
        self.add_state(name, default=torch.zeros(shape, dtype=dtype), dist_reduce_fx="sum")

    def _apply(self, fn: Any, exclude_state: Sequence[str] = "") -> Any:
        dtypes = {name: default.dtype for name, default in self._defaults.items() if isinstance(default, Tensor)}
        this = super()._apply(fn, exclude_state)
        for name, dtype in dtypes.items():
            if this._defaults[name].dtype != dtype:
                this._defaults[name] = this._defaults[name].to(dtype)
            if getattr(this, name).dtype != dtype:
                setattr(this, name, getattr(this, name).to(dtype))
        return this


class SetF1(_SumStateMetric):
    """Strict micro precision / recall / F1 over multisets of hashable items.

    NER compares ``(mention, type)`` pairs, RE ``(head, relation, tail)`` triples: an item counts as a
    true positive only if it matches a gold item exactly, and each gold item can be matched once
    (``Counter`` intersection), so a mention predicted twice but present once gives one TP and one FP.
    Sets (RE structures are unique) are multisets with multiplicity one. When nothing is predicted and
    nothing is gold in the whole evaluation, all three scores are 0.

    ``update(preds, targets)``: ``preds[i]`` and ``targets[i]`` are iterables of items of example ``i``.
    ``compute()``: ``{"precision", "recall", "f1", "count"}``, 0-dim tensors.
    """

    metric_names = ("precision", "recall", "f1")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("tp", "fp", "fn", "count"):
            self._sum_state(name)

    @staticmethod
    def example_stats(pred: Iterable[Hashable], gold: Iterable[Hashable]) -> dict[str, int]:
        """``{"tp", "fp", "fn"}`` of one example (corpus F1 sums these before dividing)."""
        if isinstance(pred, str) or isinstance(gold, str):
            raise TypeError("SetF1: an example is a string; expected a collection of items (tuples)")
        pred_items, gold_items = Counter(pred), Counter(gold)
        hits = sum((pred_items & gold_items).values())
        return {"tp": hits, "fp": sum(pred_items.values()) - hits, "fn": sum(gold_items.values()) - hits}

    def update(self, preds: Sequence[Iterable[Hashable]], targets: Sequence[Iterable[Hashable]]) -> None:
        _check_lengths(preds, targets, "SetF1")
        stats = [self.example_stats(pred, gold) for pred, gold in zip(preds, targets)]
        self.tp += sum(x["tp"] for x in stats)
        self.fp += sum(x["fp"] for x in stats)
        self.fn += sum(x["fn"] for x in stats)
        self.count += len(preds)

    def compute(self) -> dict[str, Tensor]:
        precision = _safe_div(self.tp, self.tp + self.fp)
        recall = _safe_div(self.tp, self.tp + self.fn)
        return {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "count": self.count}


class LabelAccuracyF1(_SumStateMetric):
    """Accuracy and macro-F1 over a fixed label list (NLI labels, yes/no/maybe).

    A prediction outside the list (e.g. ``""`` from an unparseable generation) is wrong: a false
    negative for the gold label and a false positive for no label. Macro-F1 averages the per-label F1
    over labels that occur as gold or as prediction (``tp + fp + fn > 0``), as sklearn's
    ``f1_score(average="macro")`` does over the labels it sees; never-seen labels would only add
    undefined 0/0 terms.

    Args:
        labels: The label space, non-empty and without duplicates; gold labels must be in it.

    ``update(preds, targets)``: sequences of label strings. States ``tp``/``fp``/``fn``: ``[num_labels]``.
    ``compute()``: ``{"accuracy", "macro_f1", "count"}``, 0-dim tensors.
    """

    metric_names = ("accuracy", "macro_f1")

    def __init__(self, labels: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labels = tuple(labels)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"LabelAccuracyF1: labels must be non-empty and unique, got {self.labels!r}")
        self._index = {label: i for i, label in enumerate(self.labels)}
        for name in ("tp", "fp", "fn"):
            self._sum_state(name, (len(self.labels),))

    def example_stats(self, pred: str, gold: str) -> dict[str, Any]:
        """``{"gold", "pred", "correct"}``; ``pred`` is None when outside the label list (no class)."""
        if gold not in self._index:
            raise ValueError(f"LabelAccuracyF1: gold label {gold!r} is not one of the labels {self.labels!r}")
        return {"gold": gold, "pred": pred if pred in self._index else None, "correct": int(pred == gold)}

    def update(self, preds: Sequence[str], targets: Sequence[str]) -> None:
        _check_lengths(preds, targets, "LabelAccuracyF1")
        tp, fp, fn = ([0] * len(self.labels) for _ in range(3))
        for pred, gold in zip(preds, targets):
            if gold not in self._index:
                raise ValueError(f"LabelAccuracyF1: gold label {gold!r} is not one of the labels {self.labels!r}")
            g, p = self._index[gold], self._index.get(pred)
            if p == g:
                tp[g] += 1
                continue
            fn[g] += 1
            if p is not None:
                fp[p] += 1
        device = self.tp.device
        self.tp += torch.tensor(tp, device=device)
        self.fp += torch.tensor(fp, device=device)
        self.fn += torch.tensor(fn, device=device)

    def compute(self) -> dict[str, Tensor]:
        count = (self.tp + self.fn).sum()
        f1 = _f1(_safe_div(self.tp, self.tp + self.fp), _safe_div(self.tp, self.tp + self.fn))
        seen = (self.tp + self.fp + self.fn) > 0
        macro_f1 = _safe_div(f1[seen].sum(), seen.sum())
        return {"accuracy": _safe_div(self.tp.sum(), count), "macro_f1": macro_f1, "count": count}


class MatchAccuracy(_SumStateMetric):
    """Accuracy of exact string matches, for answers from a per-example option list (multiple choice).

    Options differ between questions, so there is no fixed label list to average F1 over; the parsed
    prediction is an option text verbatim (or ``""``) and is right iff it equals the gold option.

    ``compute()``: ``{"accuracy", "count"}``, 0-dim tensors.
    """

    metric_names = ("accuracy",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sum_state("correct")
        self._sum_state("count")

    @staticmethod
    def example_stats(pred: str, gold: str) -> dict[str, int]:
        """``{"correct"}``: 1 iff the prediction is the gold option verbatim."""
        return {"correct": int(pred == gold)}

    def update(self, preds: Sequence[str], targets: Sequence[str]) -> None:
        _check_lengths(preds, targets, "MatchAccuracy")
        self.correct += sum(self.example_stats(pred, gold)["correct"] for pred, gold in zip(preds, targets))
        self.count += len(preds)

    def compute(self) -> dict[str, Tensor]:
        return {"accuracy": _safe_div(self.correct, self.count), "count": self.count}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 over normalised tokens; if either side has no tokens, 1.0 iff both have none."""
    pred_tokens, ref_tokens = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


class TextOverlap(_SumStateMetric):
    """Mean ROUGE-1/2/L F-measure, SQuAD exact match and token F1 (free-text QA, summarization).

    ROUGE comes from ``rouge_score`` with the Porter stemmer (pure Python, no downloads). Its default
    tokenizer keeps only ``[a-z0-9]`` runs, so text in non-Latin scripts scores 0: fine for the English
    data here, worth knowing for other corpora. A target may be one reference or several; each score
    takes its maximum over the references separately (SQuAD practice for answers with aliases).

    ``update(preds, targets)``: ``preds`` strings; ``targets`` strings or sequences of strings.
    ``compute()``: ``{"rouge1", "rouge2", "rougeL", "exact_match", "token_f1", "count"}``, 0-dim tensors.
    """

    metric_names = ("rouge1", "rouge2", "rougeL", "exact_match", "token_f1")
    _ROUGE = ("rouge1", "rouge2", "rougeL")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._scorer = rouge_scorer.RougeScorer(list(self._ROUGE), use_stemmer=True)
        for name in self.metric_names:
            self._sum_state(name, dtype=torch.float64)
        self._sum_state("count")

    def _scores(self, prediction: str, reference: str) -> list[float]:
        rouge = self._scorer.score(reference, prediction)  # (target, prediction) order
        return [rouge[r].fmeasure for r in self._ROUGE] + [
            exact_match(prediction, reference),
            token_f1(prediction, reference),
        ]

    def example_stats(self, pred: str, refs: str | Sequence[str]) -> dict[str, float]:
        """One example's five scores, each its maximum over the references."""
        refs = (refs,) if isinstance(refs, str) else tuple(refs)
        if not isinstance(pred, str) or not refs:
            raise ValueError("TextOverlap: an example needs a string prediction and >= 1 reference")
        best = [max(column) for column in zip(*(self._scores(pred, ref) for ref in refs))]
        return dict(zip(self.metric_names, best))

    def update(self, preds: Sequence[str], targets: Sequence[str | Sequence[str]]) -> None:
        _check_lengths(preds, targets, "TextOverlap")
        stats = [self.example_stats(pred, refs) for pred, refs in zip(preds, targets)]
        for name in self.metric_names:
            setattr(self, name, getattr(self, name) + sum(x[name] for x in stats))
        self.count += len(preds)

    def compute(self) -> dict[str, Tensor]:
        out = {name: _safe_div(getattr(self, name), self.count) for name in self.metric_names}
        return {**out, "count": self.count}
