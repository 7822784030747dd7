"""The per-task table evaluation reads (metaprompt.evaluation.tasks)."""

from __future__ import annotations

import pytest

from metaprompt.evaluation.tasks import EvalTask, EvalTasks
from metaprompt.tasks.records import NliRecord
from metaprompt.tasks.verbalizers import get_verbalizer


def table() -> EvalTasks:
    nli = get_verbalizer("nli", labels=("false", "true"))
    record = NliRecord(
        uid="rqe/test/0",
        origin="fixture:1",
        label_space=("false", "true"),
        premise="Is aspirin safe?",
        hypothesis="Can I take aspirin?",
        label="true",
    )
    return EvalTasks([EvalTask(0, "rqe", "nli", nli)], {record.uid: record}, {record.uid: "rqe"})


def test_row_carries_task_record_and_texts():
    tasks = table()
    row = tasks.row("rqe/test/0")
    assert row.task.name == "rqe" and row.record.label == "true"
    assert row.target_text == "true" and "aspirin" in row.prompt_text
    assert row.parse(" True.") == "true"  # the verbalizer's parser, given the row's record
    assert tasks.descriptions() == [("rqe", "nli", ("false", "true"))] and tasks.task_type(0) == "nli"


def test_unknown_rows_and_misnumbered_tasks_are_named():
    with pytest.raises(KeyError, match="'rqe/test/9' is not one the data module served"):
        table().row("rqe/test/9")
    nli = get_verbalizer("nli", labels=("false", "true"))
    with pytest.raises(ValueError, match=r"task ids must be 0..1 in order, got \[1, 0\]"):
        EvalTasks([EvalTask(1, "a", "nli", nli), EvalTask(0, "b", "nli", nli)], {}, {})
