"""neurotrial_ner JSON reader: exact spans on a fixture, malformed cases, real data."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.readers import raises_naming

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.readers import get_reader
from metaprompt.tasks.readers.neurotrial import ENTITY_TYPES, read_split
from metaprompt.tasks.records import Entity

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readers" / "neurotrial"
DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data


def test_good_fixture_exact_spans():
    out = get_reader("neurotrial_ner")(FIXTURES / "good")
    assert {k: len(v) for k, v in out.items()} == {"train": 3, "dev": 1, "test": 1}
    first, null_summary, no_entities = out["train"]
    assert first.text == "Donepezil in Alzheimer's Disease | Patients receive donepezil or placebo."
    assert first.entities == (
        Entity(0, 9, "DRUG", "Donepezil"),
        Entity(13, 32, "CONDITION", "Alzheimer's Disease"),
        Entity(65, 72, "CONTROL", "placebo"),
    )
    assert (first.uid, first.origin) == ("neurotrial_ner/train/NCT001", "train.json#NCT001")
    assert null_summary.text == "Exercise for Stroke Recovery |"
    assert no_entities.entities == ()


@pytest.mark.parametrize(
    ("name", "where", "problem"),
    [
        ("truncated.json", "line ", "invalid JSON"),
        ("non_utf8.json", "line 5:", "not valid UTF-8"),
        ("missing_field.json", "record 0 (id=NCT010)", "missing field 'text'"),
        ("missing_entity_field.json", "record 0 (id=NCT010) entity 1", "missing field 'type'"),
        ("offset_outside.json", "record 0 (id=NCT010) entity 1", "outside the text"),
        ("mention_mismatch.json", "record 0 (id=NCT010) entity 0", "does not match the text"),
        ("unknown_type.json", "record 0 (id=NCT010) entity 0", "unknown entity type 'DRUGS'"),
        ("not_array.json", "not_array.json", "expected a JSON array"),
    ],
)
def test_malformed_raises_with_file_and_record(name, where, problem):
    raises_naming(lambda: read_split(FIXTURES / name, "train"), name, where, problem)


@pytest.mark.skipif(not (DATA / "MANIFEST.yaml").is_file(), reason="real data not present")
def test_real_data_counts_and_offsets():
    import yaml

    manifest = {d["id"]: d for d in yaml.safe_load((DATA / "MANIFEST.yaml").read_text())["datasets"]}["neurotrial_ner"]
    assert sorted(manifest["label_set"]) == sorted(ENTITY_TYPES)
    out = get_reader("neurotrial_ner")(DATA / "neurotrial_ner")
    assert list(out) == [k.split()[0] for k in manifest["counts"]]
    for split, records in out.items():
        assert len(records) == manifest["counts"][split]["kept_records"]
        assert sum(len(r.entities) for r in records) == manifest["counts"][split]["entities"]
        assert len({r.uid for r in records}) == len(records)
        for r in records:
            for e in r.entities:
                assert r.text[e.start : e.end] == e.text
