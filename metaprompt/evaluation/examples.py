"""Per-example test records (``predictions.jsonl``) and the per-task report built from them.

One record per test example::

    {"uid", "task", "kind", "scoring": "ranked" | "generated", "input", "generation": str | None,
     "candidates": [{"answer", "text", "logprob", "logprob_per_byte", "n_tokens"}] | None,
     "prediction", "reference", "stats"}

A record scored from the windows of a long input (``long_inputs: {mode: window}``) also holds
``"windows": [{"uid", "parent", "index", "task_type", "generation", "prediction", "score"}]``, and its
``prediction`` is their merge (``metaprompt.evaluation.windows``).

``prediction`` is the parsed generation or the ranked answer, ``reference`` the gold target text and
``stats`` the sufficient statistics of the task's metric (``TaskEvaluator.update``), enough to
recompute the corpus score of any resample (``metaprompt.evaluation.bootstrap``).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from metaprompt.evaluation.bootstrap import bootstrap_ci


def gather_rows(rows: list[dict]) -> list[dict]:
    """Every rank's rows, on every rank (a collective under DDP), first occurrence of each uid kept.

    A distributed sampler pads the last batch with repeats of earlier examples; dropping repeated uids
    keeps each example once.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part]
    seen: set[str] = set()
    return [row for row in rows if not (row["uid"] in seen or seen.add(row["uid"]))]


def task_scoring(rows: Sequence[dict]) -> dict[str, str]:
    """Task -> ``"ranked"``, ``"generated"`` or ``"mixed"`` (a QA task mixing answer kinds)."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        kinds.setdefault(row["task"], set()).add(row["scoring"])
    return {task: s.pop() if len(s) == 1 else "mixed" for task, s in kinds.items()}


def task_report(
    rows: Sequence[dict], primary: Callable[[str, str], str], n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per task: ``<task>/scoring``, ``<task>/n_test`` and the bootstrap ``<task>/ci_low``, ``<task>/ci_high``.

    Args:
        rows: Per-example records of all tasks.
        primary: ``(task, kind) -> metric name`` of the task's score (``TaskEvaluator.primary_metric``).
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.
    """
    by_task: dict[str, list[dict]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    out: dict[str, Any] = {}
    for task, scoring in task_scoring(rows).items():
        task_rows = sorted(by_task[task], key=lambda row: row["uid"])  # the interval must not depend on batch order
        kinds = {row["kind"]: primary(task, row["kind"]) for row in task_rows}
        ci = bootstrap_ci(task_rows, kinds, n_resamples=n_resamples, seed=seed)
        out.update(
            {f"{task}/scoring": scoring, f"{task}/n_test": ci.n, f"{task}/ci_low": ci.low, f"{task}/ci_high": ci.high}
        )
    return out


def write_jsonl(rows: Sequence[dict], path: str | Path) -> Path:
    """One JSON object per row (tuples become lists); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_predictions(folder: str | Path) -> list[dict]:
    """The per-example records of a run folder: ``predictions.jsonl.gz`` (a ladder's or reproduction's
    compacted file, :func:`compact_predictions`) or ``predictions.jsonl`` (what ``test`` writes).

    Raises:
        FileNotFoundError: naming the folder when it holds neither.
        ValueError: naming the file and line of a record that is not JSON.
    """
    folder = Path(folder)
    for path in (folder / "predictions.jsonl.gz", folder / "predictions.jsonl"):
        if path.is_file():
            return _read_jsonl(path)
    raise FileNotFoundError(f"{folder}: no predictions.jsonl(.gz)")


def compact_predictions(folder: str | Path) -> Path | None:
    """Rewrite a run folder's ``predictions.jsonl`` as ``predictions.jsonl.gz`` without the prompt text
    (recoverable from the uid), so that a committed results folder stays small (~8x). The bytes depend only
    on the records (gzip without a timestamp): compacting the same run again changes no committed file.

    Returns:
        The compacted file, or None when the folder holds no predictions.
    """
    folder = Path(folder)
    plain, packed = folder / "predictions.jsonl", folder / "predictions.jsonl.gz"
    if not plain.is_file():
        return packed if packed.is_file() else None
    rows = _read_jsonl(plain)
    text = "".join(json.dumps({k: v for k, v in r.items() if k != "input"}, ensure_ascii=False) + "\n" for r in rows)
    tmp = folder / "predictions.jsonl.gz.tmp"
    tmp.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    tmp.replace(packed)  # a kill leaves one whole file: the plain one, or both (the plain one goes next time)
    plain.unlink()
    return packed


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {n}: not a JSON record ({err.msg})") from None
    return rows
