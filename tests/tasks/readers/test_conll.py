"""CoNLL IOB2 reader: exact spans on a small fixture, each malformed case, and the real data."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.readers import raises_naming

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import get_reader
from metaprompt.tasks.readers.conll import ENTITY_TYPES, read_split
from metaprompt.tasks.records import Entity

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readers" / "conll"
DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data
BIONLP11ID = ENTITY_TYPES["bionlp11id"]


def test_good_fixture_exact_spans():
    out = get_reader("bionlp11id")(FIXTURES / "good")
    assert list(out) == ["train", "devel", "test"]
    first, second = out["train"]
    assert first.text == "IL-2 gene in E. coli"
    assert first.entities == (Entity(0, 9, "Protein", "IL-2 gene"), Entity(13, 20, "Organism", "E. coli"))
    assert (first.uid, first.origin) == ("bionlp11id/train/0", "train.tsv:1")
    assert (second.text, second.entities, second.origin) == ("No entities .", (), "train.tsv:7")
    (dev,) = out["devel"]  # the extra blank line at the end makes no empty sentence
    assert dev.entities == (
        Entity(0, 10, "Regulon-operon", "lac operon"),
        Entity(17, 21, "Chemical", "IPTG"),
        Entity(22, 26, "Protein", "TetR"),  # B- right after B-: a new entity
    )
    (test,) = out["test"]  # no final blank line
    assert test.entities == (Entity(0, 10, "Organism", "Salmonella"),)


@pytest.mark.parametrize(
    ("name", "line", "problem"),
    [
        ("i_without_b.tsv", 5, "does not continue an entity"),  # I- after a sentence break and an O
        ("type_switch.tsv", 2, "does not continue an entity"),
        ("unknown_tag.tsv", 3, "unknown tag 'B-Gene'"),
        ("non_utf8.tsv", 2, "not valid UTF-8"),
        ("bad_columns.tsv", 2, "expected 2 tab-separated fields"),
    ],
)
def test_malformed_raises_with_file_and_line(name, line, problem):
    raises_naming(
        lambda: read_split(FIXTURES / name, "bionlp11id", "train", BIONLP11ID), name, f"line {line}:", problem
    )


def test_missing_file_raises():
    with pytest.raises(DataFormatError, match=r"conll/train.tsv: file not found"):
        get_reader("bc2gm")(FIXTURES)


@pytest.mark.skipif(not (DATA / "MANIFEST.yaml").is_file(), reason="real data not present")
@pytest.mark.parametrize("dataset", sorted(ENTITY_TYPES))
def test_real_data_counts_and_offsets(dataset):
    import yaml

    manifest = {d["id"]: d for d in yaml.safe_load((DATA / "MANIFEST.yaml").read_text())["datasets"]}[dataset]
    assert set(manifest["label_set"]) == {"O"} | {f"{p}-{t}" for p in "BI" for t in ENTITY_TYPES[dataset]}
    out = get_reader(dataset)(DATA / dataset)
    assert list(out) == [key.split()[0] for key in manifest["counts"]]
    for split, records in out.items():
        counts = manifest["counts"][split]
        assert len(records) == counts["kept_sentences"]
        assert sum(len(r.text.split(" ")) for r in records) == counts["kept_tokens"]
        assert len({r.uid for r in records}) == len(records)
        for r in records:
            for e in r.entities:
                assert r.text[e.start : e.end] == e.text
