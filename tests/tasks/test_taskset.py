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
    with pytest.raises(DataFormatError, match=r"bad_offsets.jsonl: line 2: entity offsets 3-99 outside"):
        bad.load()
    missing = TaskSpec(name="m", task_type="nli", format="csv", data_files={"train": str(FIX / "missing_column.csv")})
    with pytest.raises(DataFormatError, match=r"missing_column.csv: line 2: missing column 'hypothesis'"):
        missing.load()
    gone = TaskSpec(name="g", task_type="nli", format="csv", data_files={"train": str(FIX / "nope.csv")})
    with pytest.raises(DataFormatError, match="nope.csv"):
        gone.load()


def _spec(task_type: str, file: str, **kw) -> TaskSpec:
    fmt = file.rsplit(".", 1)[1]
    return TaskSpec(name="mine", task_type=task_type, format=fmt, data_files={"train": str(FIX / file)}, **kw)


@pytest.mark.parametrize(
    ("spec", "message"),
    [  # what used to be lost or distorted without a word
        (_spec("ner", "ner_typo_column.jsonl", columns={"text": "note", "entities": "spans"}),
         r"ner_typo_column.jsonl: line 1: missing column 'spans' \(field 'entities'\)"),
        (_spec("ner", "ner_typo_column.jsonl", columns={"text": "note"}),  # no mapping: 'entities' must exist
         r"ner_typo_column.jsonl: line 1: missing column 'entities'"),
        (_spec("ner", "ner_text_offsets.jsonl", columns={"text": "note", "entities": "spans"}),
         r"ner_text_offsets.jsonl: line 1: entity text 'aspirin' disagrees with offsets 11-20 \('metformin'\)"),
        (_spec("qa", "qa_blank_answer.jsonl"), r"qa_blank_answer.jsonl: line 1: every answer must be non-empty"),
        (_spec("nli", "empty.jsonl"), r"empty.jsonl: no records \(task 'mine', split 'train'\): the file is empty"),
    ],
)  # fmt: skip
def test_user_data_is_never_silently_dropped_or_distorted(spec, message):
    with pytest.raises(DataFormatError, match=message):
        spec.load()


def test_csv_cells_stay_text_and_labels_are_a_list(tmp_path):
    recs = [r for s in _spec("qa", "qa_na.csv").load().values() for r in s]
    assert sorted(a for r in recs for a in r.answers) == ["5 mg", "NA"]  # not "None", not dropped
    with pytest.raises(ValueError, match=r"labels must be a list, e.g. \[Drug\]"):
        _spec("ner", "notes_ner.jsonl", labels="Drug")
    (tmp_path / "t.yaml").write_text(
        "tasks:\n  - {name: x, task_type: ner, role: target, data_files: {train: a.jsonl}, labels: Drug}\n"
    )
    with pytest.raises(
        ValueError, match=r"t.yaml: tasks\[0\]: task 'x': labels must be a list of names, e.g. \[Drug\]"
    ):
        resolve_tasks(str(tmp_path / "t.yaml"))
