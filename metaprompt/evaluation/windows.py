"""Test-time merge of windowed records: one prediction per original example, from all its windows.

A task declared with ``long_inputs: {mode: window, ...}`` (``metaprompt.data.long_inputs``) serves a
long record as overlapping windows, each a row of its own (uid ``<parent>#w<k>``). Evaluation
generates for every window, keeps the parsed predictions here instead of scoring them, and at the end
of the epoch merges them per parent, as extractive-QA pipelines do:

* QA: the answer of the window whose generated answer has the highest mean token log-prob (end token
  included), empty answers only when every window's is empty; ties go to the earlier window;
* NER: the union of the windows' ``(mention, type)`` multisets, each item as often as the window that
  predicts it most often (an entity in the overlap of two windows is predicted by both: counting it
  once per window would be a false positive of the merge, not of the model);
* RE: the union of the windows' triple sets.

The merged prediction is scored against the parent record's gold, so ``n_test`` counts original
examples. Windows of one parent may be scored in different batches and, under DDP, on different ranks:
the merge gathers every rank's windows first, then each rank scores its share of the parents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metaprompt.evaluation.examples import gather_rows


@dataclass(frozen=True)
class WindowOf:
    """Where a window row comes from.

    Attributes:
        parent: The uid of the original record (scored in the window's stead).
        index: The window's position in the record (0 = the start of its long field).
        start: Character offset of the window in the parent's long field.
    """

    parent: str
    index: int
    start: int


def window_uid(parent: str, index: int) -> str:
    """The uid of window ``index`` of record ``parent``."""
    return f"{parent}#w{index}"


def merge_predictions(task_type: str, predictions: Sequence[Any], scores: Sequence[float]) -> Any:
    """One prediction from the parsed predictions of a record's windows, in window order.

    Args:
        task_type: ``qa``, ``ner`` or ``re``.
        predictions: Per window, its parsed prediction (answer string, entity or triple tuple).
        scores: Per window, the mean log-prob of its generated answer (read for QA only).
    """
    if not predictions:
        raise ValueError("merge_predictions: no window predictions to merge")
    if task_type == "qa":
        answered = [i for i, p in enumerate(predictions) if p] or list(range(len(predictions)))
        return predictions[max(answered, key=lambda i: (scores[i], -i))]
    if task_type == "ner":
        union: Counter = Counter()
        for items in predictions:
            union |= Counter(items)
        return tuple(sorted(union.elements()))
    if task_type == "re":
        return tuple(sorted({t for items in predictions for t in items}))
    raise ValueError(f"merge_predictions: windows are for qa, ner and re tasks, not {task_type!r}")


class WindowPredictions:
    """The window rows of one evaluation epoch, merged per parent at its end."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, uid: str, window: WindowOf, task_type: str, text: str, prediction: Any, score: float = 0.0) -> None:
        """Keep window ``uid``'s generated ``text``, its parse and (QA) its answer's mean log-prob."""
        row = {"uid": uid, "parent": window.parent, "index": window.index, "task_type": task_type}
        self.rows.append({**row, "generation": text, "prediction": prediction, "score": score})

    def merged(self) -> list[dict]:
        """This rank's share of the merged parents, each ``{uid, prediction, text, windows}``: ``text`` is the
        kept window's generation (QA) or the windows' generations, one after the other (NER, RE), and
        ``windows`` the window rows in order. A collective under DDP: every rank must call it."""
        rows = gather_rows(self.rows)
        self.rows = []
        by_parent: dict[str, list[dict]] = {}
        for row in sorted(rows, key=lambda r: (r["parent"], r["index"])):
            by_parent.setdefault(row["parent"], []).append(row)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
        out = []
        for n, (parent, windows) in enumerate(sorted(by_parent.items())):
            if n % world != rank:
                continue
            task_type = windows[0]["task_type"]
            merged = merge_predictions(task_type, [w["prediction"] for w in windows], [w["score"] for w in windows])
            texts = [w["generation"] for w in windows]  # QA: the kept window's; else every window's
            if task_type == "qa":
                text = next(t for t, w in zip(texts, windows) if w["prediction"] == merged)
            else:
                text = "\n".join(texts)
            out.append({"uid": parent, "prediction": merged, "text": text, "windows": windows})
        return out
