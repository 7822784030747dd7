"""A few predictions per task, kept for reading: a W&B table while training, JSONL after a run.

Rank-local by design: each process keeps the rows it generated (text is never synced). Log or write
from rank 0 only, or give each rank its own file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class PredictionTable:
    """The first ``max_rows_per_task`` rows of each task: ``(task, uid, input, prediction, reference)``.

    Keeping the *first* rows (data order) rather than a random sample makes tables of successive
    epochs show the same examples, so they can be compared row by row.

    Args:
        max_rows_per_task: Rows kept per task; further rows of that task are dropped. 0 keeps none.
    """

    columns: tuple[str, ...] = ("task", "uid", "input", "prediction", "reference")

    def __init__(self, max_rows_per_task: int = 20) -> None:
        if max_rows_per_task < 0:
            raise ValueError(f"PredictionTable: max_rows_per_task must be >= 0, got {max_rows_per_task}")
        self.max_rows_per_task = max_rows_per_task
        self._rows: list[tuple[str, str, str, str, str]] = []
        self._per_task: dict[str, int] = {}

    def add(self, task: str, input_text: str, prediction: str, reference: str, uid: str = "") -> bool:
        """Keep one row unless ``task`` already has ``max_rows_per_task``; returns whether it was kept."""
        if self._per_task.get(task, 0) >= self.max_rows_per_task:
            return False
        self._per_task[task] = self._per_task.get(task, 0) + 1
        self._rows.append((task, uid, input_text, prediction, reference))
        return True

    def __len__(self) -> int:
        return len(self._rows)

    def data(self, task: str | None = None) -> list[list[str]]:
        """Rows as lists in :attr:`columns` order (all tasks, or only ``task``)."""
        return [list(row) for row in self._rows if task is None or row[0] == task]

    def records(self, task: str | None = None) -> list[dict[str, str]]:
        """Rows as dicts keyed by :attr:`columns`."""
        return [dict(zip(self.columns, row)) for row in self.data(task)]

    def log(self, logger: Any, key: str = "predictions") -> bool:
        """``logger.log_table(key=, columns=, data=)`` (e.g. ``WandbLogger``); False if it has no tables."""
        log_table = getattr(logger, "log_table", None)
        if log_table is None or not self._rows:
            return False
        log_table(key=key, columns=list(self.columns), data=self.data())
        return True

    def write_jsonl(self, path: str | Path, task: str | None = None) -> Path:
        """Write rows (all, or one task's) as one JSON object per line; creates parent folders."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for row in self.records(task):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path

    def reset(self) -> None:
        """Drop all rows (e.g. at the start of each validation epoch)."""
        self._rows.clear()
        self._per_task.clear()
