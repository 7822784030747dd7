"""PubTator reader (ncbi_disease, cdr): exact spans and relations on fixtures, malformed cases, real data."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.readers import manifest_entries, raises_naming

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import get_reader
from metaprompt.tasks.readers.pubtator import CDR_TYPES, NCBI_TYPES, parse_pubtator, read_cdr
from metaprompt.tasks.records import Entity, Relation

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readers" / "pubtator"
DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data


def test_ncbi_good_fixture():
    out = get_reader("ncbi_disease")(FIXTURES / "ncbi_good")
    assert {k: len(v) for k, v in out.items()} == {"train": 3, "devel": 1, "test": 1}
    first, composite, dup = out["train"]
    assert first.text == "Alpha disease and beta cancer. Gamma syndrome occurs in alpha disease."
    assert first.entities == (
        Entity(0, 13, "SpecificDisease", "Alpha disease"),
        Entity(18, 29, "DiseaseClass", "beta cancer"),
        Entity(31, 45, "Modifier", "Gamma syndrome"),  # mention field had trailing spaces
        Entity(56, 69, "SpecificDisease", "alpha disease"),
    )
    assert (first.uid, first.origin) == ("ncbi_disease/train/111", "NCBItrainset_corpus.txt:2")
    assert composite.entities == (Entity(0, 25, "CompositeMention", "Breast and ovarian cancer"),)
    assert dup.uid == "ncbi_disease/train/111_2" and dup.entities == first.entities
    assert out["devel"][0].entities == ()


def test_cdr_good_fixture():
    out = read_cdr(FIXTURES / "cdr_good")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "dev": 1, "test": 1}
    doc, negative = out["train"]
    assert doc.uid == "cdr/train/900" and doc.origin == "CDR_TrainingSet.PubTator.txt:1"
    assert doc.entities[4] == Entity(66, 88, "Disease", "renal and liver injury")
    assert doc.entities[-1] == Entity(138, 142, "Chemical", "X-99")  # id -1: an entity, never an argument
    chem = "Lithium carbonate"
    assert doc.relations == (
        Relation(chem, "CID", "cyanosis"),
        Relation(chem, "CID", "renal injury"),  # composite: individual mention
        Relation(chem, "CID", "liver injury"),
        Relation(chem, "CID", "choreoathetosis"),  # D14 and D15 share the mention: one triple
    )
    assert negative.relations == ()
    assert out["test"][0].relations == (Relation("Drug X", "CID", "pain"),)


@pytest.mark.parametrize(
    ("name", "line", "problem"),
    [
        ("offset_outside.txt", 3, "outside the document text"),
        ("mention_mismatch.txt", 3, "does not match the text"),
        ("missing_column.txt", 3, "needs 6 or 7 tab-separated fields"),
        ("pmid_mismatch.txt", 3, "differs from the document"),
        ("unknown_type.txt", 3, "unknown entity type 'Disease'"),
        ("missing_abstract.txt", 2, "no abstract line"),
        ("non_utf8.txt", 2, "not valid UTF-8"),
    ],
)
def test_malformed_raises_with_file_and_line(name, line, problem):
    raises_naming(lambda: parse_pubtator(FIXTURES / name, NCBI_TYPES), name, f"line {line}:", problem)


def test_cdr_relation_without_mention_raises(tmp_path):
    for name in (
        "CDR_TrainingSet.PubTator.txt",
        "CDR_DevelopmentSet.PubTator.txt",
        "CDR_TestSet.PubTator.txt",
    ):
        (tmp_path / name).write_bytes((FIXTURES / "cdr_unnamed_id.txt").read_bytes())
    with pytest.raises(DataFormatError, match=r"CDR_TrainingSet.PubTator.txt: line 5: Disease id 'D99' has no Disease"):
        read_cdr(tmp_path)


def _check_offsets(out):
    for records in out.values():
        assert len({r.uid for r in records}) == len(records)
        for r in records:
            for e in r.entities:
                assert r.text[e.start : e.end] == e.text


@pytest.mark.skipif(not (DATA / "MANIFEST.yaml").is_file(), reason="real data not present")
def test_real_ncbi_disease():
    manifest = manifest_entries(DATA)["ncbi_disease"]
    assert tuple(manifest["label_set"]) == NCBI_TYPES
    out = get_reader("ncbi_disease")(DATA / "ncbi_disease")
    assert list(out) == [k.split()[0] for k in manifest["counts"]]
    for split, records in out.items():
        assert len(records) == manifest["counts"][split]["kept_documents"]
        assert sum(len(r.entities) for r in records) == manifest["counts"][split]["mentions"]
    _check_offsets(out)


# CID lines whose two disease ids are named by one shared mention and so give one triple:
# dev 9022662 (D002819|D001264 "choreoathetosis"), test 9578276 (D006973|D007022 "hyper- or hypotension").
CDR_COLLAPSED = {"train": 0, "dev": 1, "test": 1}


@pytest.mark.skipif(not (DATA / "MANIFEST.yaml").is_file(), reason="real data not present")
def test_real_cdr():
    manifest = manifest_entries(DATA)["cdr"]
    assert tuple(manifest["label_set"]["entity_types"]) == CDR_TYPES
    out = get_reader("cdr")(DATA / "cdr")
    assert list(out) == [k.split()[0] for k in manifest["counts"]]
    for split, records in out.items():
        counts = manifest["counts"][split]
        assert len(records) == counts["kept_documents"]
        assert sum(len(r.relations) for r in records) == counts["kept_CID_relations"] - CDR_COLLAPSED[split]
    _check_offsets(out)
