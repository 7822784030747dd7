"""bioinfer (unified PPI XML): fixture parsing, malformed variants, the real files against the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.readers import manifest_entries, raises_naming

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import get_reader
from metaprompt.tasks.readers.bioinfer import FILES, read
from metaprompt.tasks.records import Entity, Relation

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readers" / "bioinfer"
DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data


def test_reads_sentences_entities_and_interactions():
    out = read(FIXTURES)
    assert sorted(out) == ["test", "train"]
    train = out["train"]
    assert [r.uid for r in train] == [
        "bioinfer/train/BioInfer.d0.s0",
        "bioinfer/train/BioInfer.d1.s0",
        "bioinfer/train/BioInfer.d1.s1",
    ]
    first = train[0]
    assert first.origin == "BioInfer-train.xml#BioInfer.d0.s0"
    assert first.entities == (
        Entity(20, 33, "Individual_protein", "T-cell factor"),
        Entity(0, 13, "Individual_protein", "alpha-catenin"),
        Entity(-1, -1, "Individual_protein", "muscle actin"),  # discontinuous 38-44,55-60
    )
    # PPI is undirected: head is the argument that comes first in the sentence
    assert first.relations == (
        Relation("alpha-catenin", "PPI", "T-cell factor"),
        Relation("alpha-catenin", "PPI", "muscle actin"),
    )
    assert train[1].relations == () and len(train[1].entities) == 2  # one negative candidate pair
    assert train[2].entities == () and train[2].text == "No proteins here."
    assert out["test"][0].relations == (Relation("Actin", "PPI", "myosin"),)
    assert get_reader("bioinfer") is read


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    """Copy the fixtures into tmp_path with one replacement in the train file."""
    for name in FILES.values():
        shutil.copy(FIXTURES / name, tmp_path / name)
    path = tmp_path / FILES["train"]
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "where", "problem"),
    [
        (
            'e2="BioInfer.d0.s0.e2"',
            'e2="BioInfer.d0.s0.e7"',
            "interaction BioInfer.d0.s0.i1 (sentence BioInfer.d0.s0)",
            "unknown entity id(s)",
        ),
        ('charOffset="0-13"', 'charOffset="0-99"', "entity BioInfer.d0.s0.e1", "outside the sentence"),
        ('charOffset="0-13"', 'charOffset="1-14"', "entity BioInfer.d0.s0.e1", "does not match"),
        ('charOffset="0-13"', 'charOffset="0:13"', "entity BioInfer.d0.s0.e1", "is not 'start-end"),
        (
            'type="PPI" />\n    </sentence>',
            'type="binds" />\n    </sentence>',
            "interaction BioInfer.d0.s0.i1 (sentence BioInfer.d0.s0)",
            "unknown interaction type",
        ),
        ('text="No proteins here."', 'text=" "', "sentence BioInfer.d1.s1", "empty sentence text"),
        (' text="Profilin was seen near actin."', "", "sentence BioInfer.d1.s0", "lacks attribute 'text'"),
    ],
)
def test_malformed_content(tmp_path, old, new, where, problem):
    _broken(tmp_path, old, new)
    raises_naming(lambda: read(tmp_path), f"BioInfer-train.xml: {where}: ", problem)


def test_truncated_xml_reports_line_and_column(tmp_path):
    path = _broken(tmp_path, "x", "x")
    path.write_text(path.read_text(encoding="utf-8")[:600], encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"BioInfer-train\.xml: line \d+, column \d+: malformed XML"):
        read(tmp_path)


def test_non_utf8_bytes(tmp_path):
    path = _broken(tmp_path, "Profilin was", "Profilin was")
    path.write_bytes(path.read_bytes().replace(b"Profilin was", b"Profil\xefn was", 1))
    with pytest.raises(DataFormatError, match=r"BioInfer-train\.xml: line 13: not valid UTF-8"):
        read(tmp_path)


@pytest.mark.skipif(not (DATA / "bioinfer" / FILES["train"]).is_file(), reason="real bioinfer data not present")
def test_real_bioinfer_matches_manifest():
    counts = manifest_entries(DATA)["bioinfer"]["counts"]
    out = read(DATA / "bioinfer")
    assert sorted(out) == sorted(counts)
    for split, records in out.items():
        expected = counts[split]
        assert len(records) == expected["sentences"]
        assert len({r.uid for r in records}) == len(records)
        assert len({r.uid.rsplit(".s", 1)[0] for r in records}) == expected["documents"]
        assert sum(len(r.entities) for r in records) == expected["entities"]
        assert sum(len(r.relations) for r in records) == expected["positive_interactions"]
        assert sum(len(r.entities) * (len(r.entities) - 1) // 2 for r in records) == expected["candidate_entity_pairs"]
        for r in records:
            for e in r.entities:
                assert e.start == -1 or r.text[e.start : e.end] == e.text, (r.uid, e)
