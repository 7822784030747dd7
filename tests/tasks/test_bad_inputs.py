"""The bad-input corpus (tests/fixtures/bad/cases.yaml): each case fails with one line naming file, place
and problem; no bare KeyError/IndexError/TypeError, no `datasets` "error occurred while generating"."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metaprompt.tasks.custom import SKIPPED
from metaprompt.tasks.errors import DataFormatError, TaskDeclarationError
from metaprompt.tasks.readers import get_reader
from metaprompt.tasks.taskset import resolve_tasks

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad"
CASES = yaml.safe_load((BAD / "cases.yaml").read_text())["cases"]


def _declare(tmp_path: Path, task: dict) -> Path:
    """A task-set YAML in this folder's terms: data_files stay relative (resolved against the YAML)."""
    path = BAD / f".case-{tmp_path.name}.yaml"  # beside the fixtures: relative data_files resolve here
    path.write_text(yaml.safe_dump({"tasks": [{"name": "case", "role": "target", **task}]}))
    return path


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_line_naming_file_place_and_problem(case, tmp_path):
    if "reader" in case:
        with pytest.raises(DataFormatError) as info:
            get_reader(case["reader"])(BAD / case["folder"])
    else:
        path = _declare(tmp_path, case["task"])
        try:
            with pytest.raises(ValueError) as info:  # DataFormatError is a ValueError; so are declaration errors
                resolve_tasks(str(path))[0].load()
        finally:
            path.unlink()
    message = str(info.value)
    assert "\n" not in message, message
    assert type(info.value) in (DataFormatError, TaskDeclarationError), type(info.value)  # never a bare ValueError
    assert info.match(case["error"]), message


def test_the_corpus_covers_every_format():
    formats = {c["task"].get("format", "jsonl") for c in CASES if "task" in c}
    assert {"jsonl", "json", "csv", "conll", "iob", "squad", "brat", "bioc"} <= formats
    assert len({c["reader"] for c in CASES if "reader" in c}) >= 6
    assert len(CASES) >= 25


def test_on_error_skip_leaves_bad_records_out_and_says_where(tmp_path, capsys):
    data = tmp_path / "notes.jsonl"
    lines = [
        '{"text": "Aspirin helps.", "entities": [{"start": 0, "end": 7, "label": "Drug"}]}',
        '{"text": "Short", "entities": [{"start": 2, "end": 40, "label": "Drug"}]}',
        '{"text": "Metformin too.", "entities": [{"start": 0, "end": 9, "label": "Drug"}]}',
        '{"text": "cut off", "entit',
        '{"text": "Insulin.", "entities": [{"start": 0, "end": 7, "label": "Drug"}]}',
    ]
    data.write_text("\n".join(lines) + "\n")
    decl = {"name": "skippy", "task_type": "ner", "data_files": {"train": str(data)}, "on_error": "skip"}
    splits = resolve_tasks([decl])[0].load()
    kept = [r for recs in splits.values() for r in recs]
    assert sorted(r.text for r in kept) == ["Aspirin helps.", "Insulin.", "Metformin too."]
    assert [s.split(": ")[1] for s in SKIPPED["skippy"]] == ["line 2", "line 4"]
    err = capsys.readouterr().err
    assert (
        "task skippy: skipped 2 of 5 records (on_error: skip)" in err and "notes.jsonl: line 2: entity offsets" in err
    )
    # without on_error: skip the same file stops at its first bad record
    with pytest.raises(DataFormatError, match="notes.jsonl: line 2: entity offsets 2-40"):
        resolve_tasks([{**decl, "name": "strict", "on_error": "raise"}])[0].load()


def test_on_error_skip_of_every_record_is_still_an_error(tmp_path):
    data = tmp_path / "all_bad.jsonl"
    data.write_text('{"text": "x", "entities": [{"start": 0}]}\n')
    decl = {"name": "allbad", "task_type": "ner", "data_files": {"train": str(data)}, "on_error": "skip"}
    with pytest.raises(DataFormatError, match=r"no records \(task 'allbad', split 'train'\); all 1 skipped as bad"):
        resolve_tasks([decl])[0].load()
    good = tmp_path / "good.jsonl"  # another split's skips are not counted as this one's
    good.write_text('{"text": "x", "entities": [{"start": 0}]}\n{"text": "Aspirin.", "entities": []}\n')
    both = {**decl, "name": "both", "data_files": {"train": str(good), "test": str(data)}}
    with pytest.raises(
        DataFormatError, match=r"all_bad.jsonl: no records \(task 'both', split 'test'\); all 1 skipped"
    ):
        resolve_tasks([both])[0].load()


def test_on_error_skip_drops_a_whole_conll_sentence(tmp_path):
    data = tmp_path / "tags.conll"
    data.write_text("Aspirin\tB-Drug\nhelps\tO\n\nThe\tO\nhigh\tI-Dose\n\nInsulin\tB-Drug\n")
    decl = {
        "name": "conll_skip",
        "task_type": "ner",
        "format": "conll",
        "data_files": {"train": str(data)},
        "on_error": "skip",
    }
    kept = [r.text for recs in resolve_tasks([decl])[0].load().values() for r in recs]
    assert sorted(kept) == ["Aspirin helps", "Insulin"]
    assert SKIPPED["conll_skip"] == [
        f"{data}: line 5: tag 'I-Dose' does not continue an entity (previous 'O'); "
        "declare options: {scheme: iob1} if an I- tag may open an entity"
    ]


def test_on_error_skip_applies_to_hub_rows_too(monkeypatch, capsys):
    from metaprompt.tasks import custom

    rows = [
        {"question": "Dose?", "answer": "5 mg"},
        {"question": "Route?", "answer": []},
        {"question": "When?", "answer": "daily"},
    ]
    monkeypatch.setattr(custom, "_hub", lambda spec: {"train": rows})
    decl = {
        "name": "hubby",
        "task_type": "qa",
        "format": "hub",
        "data_files": {"hub": "someone/qa"},
        "on_error": "skip",
    }
    kept = [r for recs in resolve_tasks([decl])[0].load().values() for r in recs]
    assert sorted(r.question for r in kept) == ["Dose?", "When?"]
    assert (
        "task hubby: skipped 1 of 3 records (on_error: skip): someone/qa[train]: record 2: every answer"
        in capsys.readouterr().err
    )
    with pytest.raises(DataFormatError, match=r"someone/qa\[train\]: record 2: every answer must be non-empty text"):
        resolve_tasks([{**decl, "name": "hubstrict", "on_error": "raise"}])[0].load()


def test_json_booleans_are_answers_and_labels_not_errors(tmp_path):
    qa, nli = tmp_path / "qa.jsonl", tmp_path / "nli.jsonl"
    qa.write_text(
        '{"question": "Is aspirin an NSAID?", "answer": true}\n{"question": "Is insulin oral?", "answer": false}\n'
    )
    nli.write_text('{"premise": "Afebrile.", "hypothesis": "No fever.", "label": true}\n'
                   '{"premise": "Temp 39C.", "hypothesis": "No fever.", "label": false}\n')  # fmt: skip
    records = resolve_tasks([{"name": "bq", "task_type": "qa", "data_files": {"train": str(qa)}}])[0].load()
    assert sorted(r.answers for recs in records.values() for r in recs) == [("no",), ("yes",)]
    decl = {"name": "tf", "task_type": "nli", "labels": [True, False], "data_files": {"train": str(nli)}}
    spec = resolve_tasks([decl])[0]
    assert spec.labels == ("true", "false")
    assert sorted(r.label for recs in spec.load().values() for r in recs) == ["false", "true"]
