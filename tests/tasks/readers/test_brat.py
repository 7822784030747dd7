"""chia (brat standoff in a zip): a tiny archive built per test, malformed variants, the real archive."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from support.readers import manifest_entries, raises_naming

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import get_reader
from metaprompt.tasks.readers.brat import ARCHIVE, parse_ann, read
from metaprompt.tasks.records import Entity, Relation

DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data

# CRLF document, as most chia .txt files are; "obesity\r" (31-39) and fragment 12-39 include a '\r'.
TEXT = "Adults with type 2 diabetes or obesity\r\nHbA1c > 7 %\r\nno insulin\r\n"
ANN = "\n".join(
    [
        "T1\tPerson 0 6\tAdults",
        "T2\tCondition 12 27\ttype 2 diabetes",
        "T3\tCondition 31 39\tobesity",
        "T4\tMeasurement 40 45\tHbA1c",
        "T5\tValue 46 51\t> 7 %",
        "R1\tHas_value Arg1:T4 Arg2:T5\t",
        "T6\tNegation 53 55\tno",
        "T7\tDrug 56 63\tinsulin",
        "Hypercoagulable state",  # stray line after a complete mention: dropped
        "R2\tHas_negation Arg1:T7 Arg2:T6\t",
        "*\tOR T3 T2",
        "T8\tScope 12 39;40 51\ttype 2 diabetes or obesity",
        " HbA1c > 7 %",  # continuation line: the mention text contained a newline
        "R3\tSubsumes Arg1:T1 Arg2:T8\t",
        "A1\tOptional T7",
        "#1\tAnnotatorNotes T7\tchecked",
        "",
    ]
)
ANN_MEMBER = "chia_with_scope/NCT1_inc.ann"


def make_archive(folder: Path, ann: str = ANN, text: str | bytes = TEXT, drop: str = "") -> Path:
    """Write chia_with_scope.zip with NCT1_inc (the test document) and an empty NCT1_exc."""
    members = {
        "chia_with_scope/NCT1_inc.txt": text,
        ANN_MEMBER: ann,
        "chia_with_scope/NCT1_exc.txt": "    \n",
        "chia_with_scope/NCT1_exc.ann": "\n",
        "chia_with_scope/annotation.conf": "[entities]\n",
    }
    with zipfile.ZipFile(folder / ARCHIVE, "w") as zf:
        zf.writestr("chia_with_scope/", "")
        for name, data in members.items():
            if name != drop:
                zf.writestr(name, data)
    return folder


def test_reads_entities_and_triples(tmp_path):
    records = read(make_archive(tmp_path))["all"]
    assert [r.uid for r in records] == ["chia/all/NCT1_exc", "chia/all/NCT1_inc"]
    empty, doc = records
    assert empty.text == "    \n" and empty.entities == () and empty.relations == ()
    assert doc.origin == f"{ARCHIVE}!chia_with_scope/NCT1_inc.txt"
    assert doc.text == TEXT
    assert doc.entities == (
        Entity(0, 6, "Person", "Adults"),
        Entity(12, 27, "Condition", "type 2 diabetes"),
        Entity(31, 38, "Condition", "obesity"),  # span trimmed of the '\r'
        Entity(40, 45, "Measurement", "HbA1c"),
        Entity(46, 51, "Value", "> 7 %"),
        Entity(53, 55, "Negation", "no"),
        Entity(56, 63, "Drug", "insulin"),
        Entity(-1, -1, "Scope", "type 2 diabetes or obesity HbA1c > 7 %"),  # discontinuous
    )
    assert doc.relations == (
        Relation("HbA1c", "Has_value", "> 7 %"),
        Relation("insulin", "Has_negation", "no"),
        Relation("type 2 diabetes", "OR", "obesity"),  # group members in text order
        Relation("Adults", "Subsumes", "type 2 diabetes or obesity HbA1c > 7 %"),
    )
    assert get_reader("chia") is read


def test_group_gives_neighbour_pairs_in_text_order():
    text = "a b c d"
    ann = "T1\tX 6 7\td\nT2\tX 0 1\ta\nT3\tX 4 5\tc\n*\tOR T1 T3 T2\n"
    result = parse_ann(text, ann, "x.ann")
    assert (result.n_binary, result.n_groups) == (0, 1)
    assert result.relations == [Relation("a", "OR", "c"), Relation("c", "OR", "d")]


@pytest.mark.parametrize(
    ("ann_line", "line", "problem"),
    [
        ("T9\tDrug 60 70\tinsulin", 17, "outside the text"),
        ("T9\tDrug 56 63\tmetformin", 17, "does not match"),
        ("R9\tAND Arg1:T1 Arg2:T42\t", 17, "unknown entity id(s) ['T42']"),
        ("*\tOR T1 T77", 17, "unknown entity id(s) ['T77']"),
        ("E1\tEvent:T1", 17, "unsupported annotation line"),
        ("T9\tDrug 5x 63\tinsulin", 17, "unsupported annotation line"),
    ],
)
def test_malformed_ann_lines(tmp_path, ann_line, line, problem):
    make_archive(tmp_path, ann=ANN + ann_line + "\n")
    raises_naming(lambda: read(tmp_path), f"{ARCHIVE}!{ANN_MEMBER}: line {line}: ", problem)


def test_line_that_is_not_after_a_mention(tmp_path):
    make_archive(tmp_path, ann="R1\tAND Arg1:T1 Arg2:T1\nstray text\n")
    with pytest.raises(DataFormatError, match=r"NCT1_inc\.ann: line 2: unrecognised line"):
        read(tmp_path)


def test_non_utf8_document(tmp_path):
    make_archive(tmp_path, text=TEXT.encode() + b"caf\xe9\n")
    with pytest.raises(
        DataFormatError, match=r"chia_with_scope\.zip!chia_with_scope/NCT1_inc\.txt: line 4: not valid UTF-8"
    ):
        read(tmp_path)


def test_empty_text_with_annotations(tmp_path):
    make_archive(tmp_path, text="", ann="T1\tPerson 0 2\tAd\n")
    with pytest.raises(DataFormatError, match=r"NCT1_inc\.ann: line 1: T1: span 0-2 outside the text \(0 chars\)"):
        read(tmp_path)


def test_missing_ann_and_bad_archive(tmp_path):
    make_archive(tmp_path, drop=ANN_MEMBER)
    with pytest.raises(DataFormatError, match=r"NCT1_inc\.txt: document without a matching \.ann"):
        read(tmp_path)
    (tmp_path / ARCHIVE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataFormatError, match="not a readable ZIP archive"):
        read(tmp_path)


@pytest.mark.skipif(not (DATA / "chia" / ARCHIVE).is_file(), reason="real chia data not present")
def test_real_chia_matches_manifest():
    counts = manifest_entries(DATA)["chia"]["counts"]["all (no official split)"]
    records = read(DATA / "chia")["all"]
    assert len(records) == counts["documents_txt"] == 2000
    assert len({r.uid for r in records}) == len(records)
    assert sum(len(r.entities) for r in records) == counts["entities"]
    for r in records:
        for e in r.entities:
            assert e.start == -1 or r.text[e.start : e.end] == e.text, (r.uid, e)
    # The manifest counts one relation per R line and per '*' group line.
    with zipfile.ZipFile(DATA / "chia" / ARCHIVE) as zf:
        lines = 0
        for r in records:
            txt = r.origin.split("!", 1)[1]
            member = txt[:-4] + ".ann"
            ann = parse_ann(zf.read(txt).decode(), zf.read(member).decode(), member, member)
            lines += ann.n_binary + ann.n_groups
    assert lines == counts["relations"]
