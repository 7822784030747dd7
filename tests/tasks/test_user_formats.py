"""A user's own data in the formats they have: conll/iob (IOB1, IOB2, IOBES), SQuAD v1/v2, brat, BioC."""

from __future__ import annotations

from pathlib import Path

import pytest

from metaprompt.tasks.records import Entity, Relation
from metaprompt.tasks.taskset import resolve_tasks

FMT = Path(__file__).resolve().parents[1] / "fixtures" / "formats"


def load(tmp_path: Path, **decl) -> list:
    """Every record of a one-task set declared in a YAML beside the fixtures' copy (relative data_files)."""
    import yaml

    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump({"tasks": [{"name": "mine", "role": "target", **decl}]}))
    for f in FMT.iterdir():  # relative data_files resolve against the YAML's folder
        (tmp_path / f.name).symlink_to(f)
    splits = resolve_tasks(str(path))[0].load()
    return sorted((r for recs in splits.values() for r in recs), key=lambda r: r.origin)


def spans(record) -> list[tuple[str, str]]:
    return [(e.text, e.label) for e in record.entities]


def test_conll_iob2_with_extra_columns_and_docstart(tmp_path):
    first, second = load(tmp_path, task_type="ner", format="conll", data_files={"train": "iob2.conll"})
    assert first.text == "Aspirin and acetyl salicylic acid" and first.origin.endswith("iob2.conll:3")
    assert spans(first) == [("Aspirin", "Drug"), ("acetyl salicylic acid", "Drug")]
    assert all(first.text[e.start : e.end] == e.text for e in first.entities)
    assert second.text == "No" and second.entities == ()


def test_iob1_lets_i_open_an_entity_and_b_split_neighbours(tmp_path):
    (record,) = load(
        tmp_path, task_type="ner", format="iob", options={"scheme": "iob1"}, data_files={"train": "iob1.conll"}
    )
    assert spans(record) == [("high dose", "Dose"), ("low", "Dose"), ("then", "Dose")]


def test_iobes_single_and_end_tags_and_bilou_aliases(tmp_path):
    (record,) = load(
        tmp_path, task_type="ner", format="conll", options={"scheme": "iobes"}, data_files={"train": "iobes.conll"}
    )
    assert spans(record) == [("Acetyl salicylic acid", "Drug"), ("insulin", "Drug"), ("heparin", "Drug")]


def test_squad_v1_keeps_distinct_answers_in_order(tmp_path):
    a, b = load(tmp_path, task_type="qa", format="squad", data_files={"train": "squad_v1.json"})
    assert a.question == "What dose?" and a.answers == ("5 mg", "5 mg twice daily") and a.kind == "free_text"
    assert a.context == "Take 5 mg twice daily with food." and b.answers == ("food",)


def test_squad_v2_impossible_question_gets_the_no_answer_target(tmp_path):
    records = load(tmp_path, task_type="qa", format="squad", options={"no_answer": "not in the text"},
                   data_files={"train": "squad_v2.json"})  # fmt: skip
    assert {r.question: r.answers for r in records} == {
        "What dose?": ("5 mg",),
        "Which pharmacy?": ("not in the text",),
    }


@pytest.mark.parametrize("task_type", ["ner", "re"])
def test_brat_folder_reads_entities_and_relations(tmp_path, task_type):
    doc1, doc2 = load(tmp_path, task_type=task_type, format="brat", data_files={"train": "brat"})
    assert doc1.entities == (Entity(0, 7, "Drug", "Aspirin"), Entity(15, 19, "Problem", "pain"))
    assert spans(doc2) == [("Insulin", "Drug")]
    if task_type == "re":
        assert doc1.relations == (Relation("Aspirin", "Treats", "pain"),) and doc2.relations == ()


@pytest.mark.parametrize("task_type", ["ner", "re"])
def test_bioc_places_passages_at_their_offsets(tmp_path, task_type):
    doc, empty = load(tmp_path, task_type=task_type, format="bioc", data_files={"train": "collection.bioc.xml"})
    assert doc.text == "Aspirin and pain. Aspirin treats headache in adults."
    assert all(doc.text[e.start : e.end] == e.text for e in doc.entities)
    assert spans(doc) == [
        ("Aspirin", "Chemical"),
        ("pain", "Disease"),
        ("headache", "Disease"),
        ("Aspirin", "Chemical"),
    ]
    assert empty.text == "No entities here." and empty.entities == ()
    if task_type == "re":
        assert doc.relations == (Relation("Aspirin", "CID", "headache"),)


def test_user_formats_are_served_by_the_data_module(tmp_path):
    from metaprompt.data.datamodule import MultitaskDataModule

    load(tmp_path, task_type="ner", format="conll", data_files={"train": "iob2.conll"})  # writes tasks.yaml
    data = MultitaskDataModule(tasks=str(tmp_path / "tasks.yaml"), backbone="tiny-llama", batch_size=1)
    data.setup("fit")
    targets = [data.verbalizers["mine"].target(r) for r in data.records.values()]
    assert any("acetyl salicylic acid" in t for t in targets)
