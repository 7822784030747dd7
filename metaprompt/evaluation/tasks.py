"""The per-task table evaluation reads: built once per ``setup``, looked up per row.

A validation/test step needs, for every row, its task (name, type, verbalizer), its gold record, its
prompt and reference texts and, for ranked scoring, the prompt encoder. Reaching for these through
``trainer.datamodule`` on every generated row tied the modules to the data module's internals (five
methods called per row); :class:`EvalTasks` gathers them once, from
``MultitaskDataModule.eval_tasks()``, and is all that evaluation sees. Nothing is copied: the
records are the data module's own mapping.

Usage in a LightningModule::

    def setup(self, stage):
        self.eval_tasks = self.trainer.datamodule.eval_tasks()
        self.evaluator = TaskEvaluator(self.eval_tasks.descriptions())

    # per row of a batch:
    row = self.eval_tasks.row(uid)
    self.evaluator.update(row.task.name, row.parse(generated_text), row.record)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metaprompt.evaluation.windows import WindowOf
from metaprompt.tasks.records import Record
from metaprompt.tasks.verbalizers.base import Verbalizer


@dataclass(frozen=True)
class EvalTask:
    """One task as evaluation sees it (``task_id`` is its index in the data module's task list)."""

    task_id: int
    name: str
    task_type: str
    verbalizer: Verbalizer

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.verbalizer.labels)


@dataclass(frozen=True)
class EvalRow:
    """One evaluation row: its task, its gold record, and the texts derived from them.

    ``window`` is set for a window of a longer record (``long_inputs: {mode: window}``): the row is
    generated for, then merged with its record's other windows and scored as the record ``window.parent``.
    """

    uid: str
    task: EvalTask
    record: Record
    window: WindowOf | None = None

    @property
    def prompt_text(self) -> str:
        return self.task.verbalizer.prompt(self.record)

    @property
    def target_text(self) -> str:
        return self.task.verbalizer.target(self.record)

    def parse(self, text: str) -> Any:
        """Generated text -> the task's structure (entity set, relation set, label, answer, summary)."""
        return self.task.verbalizer.parse(text, self.record)


class EvalTasks:
    """Tasks by id, and each evaluation row's task and record by uid.

    Args:
        tasks: One :class:`EvalTask` per task id, in id order.
        records: ``uid -> gold record`` of every row the data module serves.
        task_of_uid: ``uid -> task name`` for the same rows.
        encoder: The data module's ``PromptEncoder`` (ranked scoring encodes candidates with it).
        windows: Window uid -> its record, for the rows that are windows of a longer record (their
            parents are in ``records`` too); see ``metaprompt.evaluation.windows``.
    """

    def __init__(
        self,
        tasks: Sequence[EvalTask],
        records: Mapping[str, Record],
        task_of_uid: Mapping[str, str],
        encoder: Any = None,
        windows: Mapping[str, WindowOf] | None = None,
    ):
        if [t.task_id for t in tasks] != list(range(len(tasks))):
            raise ValueError(
                f"EvalTasks: task ids must be 0..{len(tasks) - 1} in order, got {[t.task_id for t in tasks]}"
            )
        self.tasks = tuple(tasks)
        self.by_name = {t.name: t for t in self.tasks}
        self.records = records
        self.task_of_uid = task_of_uid
        self.encoder = encoder
        self.windows = windows or {}

    def __len__(self) -> int:
        return len(self.tasks)

    def descriptions(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(name, task_type, labels)`` per task id: :class:`TaskEvaluator`'s argument."""
        return [(t.name, t.task_type, t.labels) for t in self.tasks]

    def task_type(self, task_id: int) -> str:
        return self.tasks[task_id].task_type

    def row(self, uid: str) -> EvalRow:
        """The row ``uid``; a uid the data module never served is named in the error."""
        try:
            task, record = self.by_name[self.task_of_uid[uid]], self.records[uid]
        except KeyError:
            raise KeyError(f"evaluation: row {uid!r} is not one the data module served") from None
        return EvalRow(uid, task, record, self.windows.get(uid))
