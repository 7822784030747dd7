"""The ``long_inputs`` key of a task declaration: read from a task-set YAML, checked where declared."""

from __future__ import annotations

import pytest

from metaprompt.tasks.errors import TaskDeclarationError
from metaprompt.tasks.taskset import TaskSpec, resolve_tasks

YAML = """
tasks:
  - name: covid_qa
    task_type: qa
    format: squad
    data_files: {train: covid.json}
    long_inputs: {mode: window, stride: 128}
  - name: notes_ner
    task_type: ner
    data_files: {train: notes.jsonl}
    long_inputs: {mode: window, window: 384, stride: 96}
  - name: mts_dialog
    long_inputs: {mode: head_tail, head: 384, tail: 128}
  - bc5cdr_chem
"""


def test_declared_in_the_task_set_yaml(data_root, tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(YAML)
    specs = {s.name: s for s in resolve_tasks(str(path), data_root)}
    assert specs["covid_qa"].long_inputs == {"mode": "window", "stride": 128}
    assert specs["notes_ner"].long_inputs == {"mode": "window", "window": 384, "stride": 96}
    assert specs["mts_dialog"].long_inputs == {"mode": "head_tail", "head": 384, "tail": 128}  # a manifest override
    assert specs["mts_dialog"].task_type == "summarization" and specs["bc5cdr_chem"].long_inputs == {}


@pytest.mark.parametrize(
    "task_type, long_inputs, message",
    [
        (
            "qa",
            {"mode": "slide", "stride": 8},
            r"long_inputs.mode must be one of \['head_tail', 'window'\], got 'slide'",
        ),
        ("qa", "window", r"long_inputs.mode must be one of .* got 'window'"),
        (
            "ner",
            {"mode": "window", "window": 128, "stride": 128},
            r"stride \(128\) must be smaller than .*window \(128\)",
        ),
        ("ner", {"mode": "window", "window": 64, "stride": 100}, r"stride \(100\) must be smaller"),
        ("re", {"mode": "window"}, r"takes stride, window; missing \['stride'\]"),
        ("qa", {"mode": "window", "stride": 8, "overlap": 2}, r"unknown \['overlap'\]"),
        ("qa", {"mode": "window", "stride": -1}, r"long_inputs.stride must be an integer >= 0, got -1"),
        ("qa", {"mode": "window", "stride": True}, r"long_inputs.stride must be an integer"),
        ("summarization", {"mode": "window", "stride": 8}, r"'window' is for qa/ner/re tasks, not 'summarization'"),
        ("ner", {"mode": "head_tail", "head": 8, "tail": 8}, r"'head_tail' is for summarization tasks, not 'ner'"),
        ("summarization", {"mode": "head_tail", "head": 0, "tail": 0}, r"head \+ tail must keep at least one token"),
        ("summarization", {"mode": "head_tail", "head": 8}, r"missing \['tail'\]"),
        ("summarization", {"mode": "head_tail", "head": 8, "tail": 8, "marker": 3}, r"marker must be a string"),
    ],
)
def test_bad_declarations_are_named(task_type, long_inputs, message):
    with pytest.raises(TaskDeclarationError, match=rf"tasks.yaml: tasks\[0\]: task 'x': .*{message}"):
        TaskSpec(name="x", task_type=task_type, long_inputs=long_inputs, origin="tasks.yaml: tasks[0]")
