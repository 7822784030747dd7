from pathlib import Path

import pytest

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.taskset import TaskSpec, resolve_tasks

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "custom"


def test_builtin_task_sets(data_root):
    sources = resolve_tasks("clinical21", data_root)
    targets = resolve_tasks("targets10", data_root)
    assert len(sources) == 21 and {s.role for s in sources} == {"source"}
    assert len(targets) == 10 and {s.role for s in targets} == {"target"}
    assert not {s.name for s in sources} & {t.name for t in targets}
    assert [s.name for s in resolve_tasks("gad, rqe", data_root)] == ["gad", "rqe"]


def test_unknown_and_duplicate_tasks_are_named(data_root):
    with pytest.raises(KeyError, match="no_such_task"):
        resolve_tasks("gad,no_such_task", data_root)
    with pytest.raises(ValueError, match="more than once"):
        resolve_tasks(["gad", "gad"], data_root)
    with pytest.raises(ValueError, match="task_type 'pos'"):
        TaskSpec(name="x", task_type="pos")


def test_user_task_from_yaml_without_code(data_root, tmp_path):
    text = (FIX / "tasks.yaml").read_text().replace("notes_ner.jsonl", str(FIX / "notes_ner.jsonl"))
    (tmp_path / "tasks.yaml").write_text(text)
    gad, notes = resolve_tasks(str(tmp_path / "tasks.yaml"), data_root)
    assert gad.task_type == "re" and notes.role == "target"
    splits = notes.load()
    recs = [r for s in splits.values() for r in s]
    assert len(recs) == 5  # one file -> 80/10/10 partition, nothing lost
    first = next(r for r in recs if r.text.startswith("Patient"))
    assert first.structure() == (("metformin", "Drug"), ("type 2 diabetes", "Problem"))


def test_user_csv_nli_and_label_space():
    spec = TaskSpec(name="pairs", task_type="nli", format="csv", data_files={"train": str(FIX / "pairs_nli.csv")})
    recs = [r for s in spec.load().values() for r in s]
    assert len(recs) == 3
    assert recs[0].label_space == ("contradiction", "entailment", "neutral")


def test_user_data_errors_name_file_and_record():
    bad = TaskSpec(
        name="bad",
        task_type="ner",
        format="jsonl",
        data_files={"train": str(FIX / "bad_offsets.jsonl")},
        columns={"text": "note", "entities": "spans"},
    )
    with pytest.raises(DataFormatError, match=r"bad_offsets.jsonl: record 2: entity offsets 3-99 outside"):
        bad.load()
    missing = TaskSpec(name="m", task_type="nli", format="csv", data_files={"train": str(FIX / "missing_column.csv")})
    with pytest.raises(DataFormatError, match=r"missing_column.csv: record 1: missing column 'hypothesis'"):
        missing.load()
    gone = TaskSpec(name="g", task_type="nli", format="csv", data_files={"train": str(FIX / "nope.csv")})
    with pytest.raises(DataFormatError, match="nope.csv"):
        gone.load()
