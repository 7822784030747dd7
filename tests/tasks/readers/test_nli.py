"""NLI readers (rqe, clinifact, evidence_inference, kqa_nli): exact fields, malformed inputs, real data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support.readers import edit, fixture_copy, manifest_entries, read_broken

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.readers import get_reader, nli
from metaprompt.tasks.records import NliRecord

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readers"
DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data
EI = ("no significant difference", "significantly decreased", "significantly increased")


def test_rqe_fixture_exact():
    out = get_reader("rqe")(FIXTURES / "rqe")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "test": 1}
    assert out["train"][0] == NliRecord(
        uid="rqe/train/2",
        origin="RQE_Train_8588_AMIA2016.xml#2",
        premise="Can I use heparin in pregnancy?",
        hypothesis="Heparin in pregnancy?",
        label="true",
        label_space=("true", "false"),
    )
    assert out["train"][1].label == "false"
    assert (out["test"][0].uid, out["test"][0].premise) == ("rqe/test/3", "medicine and al\ns??")


def test_clinifact_fixture_exact():
    out = get_reader("clinifact")(FIXTURES / "clinifact")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "validation": 1, "test": 1}
    space = ("evidence", "inconclusive", "no_info")
    assert out["train"][0] == NliRecord(
        uid="clinifact/train/5604",
        origin="train_set.csv:2",
        premise="Abstract one, with a comma.\nSecond line.",
        hypothesis="A is superior to B in terms of X",
        label="no_info",
        label_space=space,
    )
    assert (out["train"][1].origin, out["train"][1].label) == ("train_set.csv:4", "evidence")
    assert out["validation"][0].label == "inconclusive"
    assert (out["test"][0].premise, out["test"][0].label) == ("Abstract four.", "evidence")  # CRLF file


def test_evidence_inference_fixture_majority_and_ties():
    out = get_reader("evidence_inference")(FIXTURES / "evidence_inference")
    assert {k: [r.uid for r in v] for k, v in out.items()} == {
        "train": ["evidence_inference/train/11", "evidence_inference/train/12"],
        "validation": ["evidence_inference/validation/21"],
        "test": ["evidence_inference/test/31"],
    }
    typo, valid_wins = out["train"]
    # 'significantly increase' (typo) and 'significantly increased' are one label; spans de-duplicated
    assert typo == NliRecord(
        uid="evidence_inference/train/11",
        origin="annotations/prompts_merged.csv:2",
        premise="Pain scores rose with drug A (p<0.01)\nTable 2\npain 5.1 vs 3.2",
        hypothesis="With respect to Pain score, characterize the reported difference between Drug A "
        "and those receiving Placebo.",
        label="significantly increased",
        label_space=EI,
    )
    # 1-1 tie: only annotator 6's answer was accepted by the verifier
    assert (valid_wins.label, valid_wins.premise) == (
        "no significant difference",
        "Nausea was similar (p=0.4)",
    )
    # 1-1 tie, both accepted: the earliest row wins
    assert (out["validation"][0].label, out["validation"][0].premise) == (
        "significantly decreased",
        "Mortality was lower after surgery",
    )
    assert out["test"][0].premise == "HbA1c did not differ\nChange in HbA1c: -0.1 vs -0.2"


def test_kqa_nli_fixture_exact():
    recs = get_reader("kqa_nli")(FIXTURES / "kqa_nli")["all"]
    assert [r.label for r in recs] == ["Entailment", "Neutral", "Contradiction"]
    assert recs[0] == NliRecord(
        uid="kqa_nli/all/0",
        origin="NLI_medical_annotator.csv:2",
        premise="Lexapro is an SSRI, used for depression.",
        hypothesis="Escitalopram is an SSRI",
        label="Entailment",
        label_space=("Contradiction", "Entailment", "Neutral"),
    )


RQE_TRAIN = "RQE_Train_8588_AMIA2016.xml"
ANN = "annotations/v2_annotations.csv"
PROMPTS = "annotations/prompts_merged.csv"
KQA = "NLI_medical_annotator.csv"
MALFORMED: list[tuple[str, str, Callable[[Path], None], str, str]] = [
    # (dataset, file edited, edit, expected location, expected problem)
    ("rqe", RQE_TRAIN, lambda p: edit(p, "</chq>", ""), "line 10", "malformed XML"),
    (
        "rqe",
        RQE_TRAIN,
        lambda p: edit(p, 'value="false"', 'value="maybe"'),
        "record 2 (pid=26)",
        "unknown label",
    ),
    (
        "rqe",
        RQE_TRAIN,
        lambda p: edit(p, "How should I treat polymenorrhea?", "  "),
        "record 2 (pid=26)",
        "empty <faq>",
    ),
    ("rqe", RQE_TRAIN, lambda p: edit(p, "heparin", b"hep\xa0rin"), "line 5", "not valid UTF-8"),
    ("rqe", RQE_TRAIN, lambda p: edit(p, 'pid="26"', 'pid="2"'), "record 2 (pid=2)", "duplicate pid"),
    (
        "clinifact",
        "train_set.csv",
        lambda p: edit(p, ",label,", ",labels,"),
        "line 1",
        "missing column(s) ['label']",
    ),
    (
        "clinifact",
        "train_set.csv",
        lambda p: edit(p, "Abstract two.,1,", "Abstract two.,3,"),
        "line 4",
        "unknown label '3'",
    ),
    ("clinifact", "train_set.csv", lambda p: edit(p, "C is non-inferior to D", ""), "line 4", "empty claim"),
    (
        "clinifact",
        "validation_set.csv",
        lambda p: edit(p, "Abstract three.", b"Abstract \xff."),
        "line 2",
        "not valid UTF-8",
    ),
    (
        "clinifact",
        "train_set.csv",
        lambda p: edit(p, "77,NCT2", "5604,NCT2"),
        "line 4",
        "duplicate index '5604'",
    ),
    (
        "evidence_inference",
        ANN,
        lambda p: edit(p, "no significant difference,Nausea", "invalid prompt,Nausea"),
        "line 7",
        "unknown Label 'invalid prompt'",
    ),
    (
        "evidence_inference",
        ANN,
        lambda p: edit(p, "UserID,", "User,"),
        "line 1",
        "missing column(s) ['UserID']",
    ),
    (
        "evidence_inference",
        ANN,
        lambda p: edit(p, "0,31,300,", "0,31,999,"),
        "line 10",
        "PMCID 999 is in no split",
    ),
    (
        "evidence_inference",
        ANN,
        lambda p: edit(p, "Nausea fell", b"Nausea f\xe9ll"),
        "line 6",
        "not valid UTF-8",
    ),
    (
        "evidence_inference",
        ANN,
        lambda p: edit(p, 'True,True,significantly increased,"Table', 'True,True,no significant difference,"Table'),
        "line 4",
        "annotator 6 gives two labels",
    ),
    ("evidence_inference", PROMPTS, lambda p: edit(p, "HbA1c,", ","), "line 5", "empty Outcome"),
    (
        "evidence_inference",
        PROMPTS,
        lambda p: edit(p, "31,300,", "32,300,"),
        "line 5",
        "PromptID 32 has no annotation",
    ),
    (
        "evidence_inference",
        PROMPTS,
        lambda p: edit(p, "12,100,Nausea,Drug A,Placebo\n", ""),
        "PromptID 12",
        "missing from prompts_merged.csv",
    ),
    (
        "evidence_inference",
        "annotations/splits/ev2_test_article_ids.txt",
        lambda p: edit(p, "300", "PMC300"),
        "line 1",
        "numeric PMCID",
    ),
    ("kqa_nli", KQA, lambda p: edit(p, ",majority_label,", ",majority,"), "line 1", "missing column(s)"),
    (
        "kqa_nli",
        KQA,
        lambda p: edit(p, "Must_have,Entailment,", "Must_have,Entailed,"),
        "line 2",
        "unknown majority_label 'Entailed'",
    ),
    ("kqa_nli", KQA, lambda p: edit(p, "X is safe for adults", ""), "line 4", "empty claim"),
]


@pytest.mark.parametrize(("dataset", "file", "mutate", "where", "problem"), MALFORMED)
def test_malformed_raises_with_file_and_place(tmp_path, dataset, file, mutate, where, problem):
    read_broken(fixture_copy(dataset, tmp_path), dataset, file, mutate, where, problem)


@pytest.mark.skipif(not (DATA / "MANIFEST.yaml").is_file(), reason="real data not present")
@pytest.mark.parametrize(
    ("dataset", "key", "label_key"),
    [
        ("rqe", "kept_pairs", "labels"),
        ("clinifact", "kept_rows", "labels"),
        ("evidence_inference", "kept_prompts", None),
        ("kqa_nli", "kept", "majority_label"),
    ],
)
def test_real_data_counts_and_labels(dataset, key, label_key):
    entry = manifest_entries(DATA)[dataset]
    out = get_reader(dataset)(DATA / dataset)
    assert {k: len(v) for k, v in out.items()} == {n.split()[0]: c[key] for n, c in entry["counts"].items()}
    uids = [r.uid for recs in out.values() for r in recs]
    assert len(uids) == len(set(uids))
    for recs in out.values():
        assert all(r.premise and r.hypothesis and r.label in r.label_space for r in recs)
    if label_key:
        names = nli.CLINIFACT_LABELS if dataset == "clinifact" else {}
        for n, c in entry["counts"].items():
            expected = {names.get(str(k), str(k)): v for k, v in c[label_key].items()}
            assert Counter(r.label for r in out[n.split()[0]]) == expected
    else:  # evidence_inference: the manifest lists raw labels incl. the typo; every label is normalised
        assert {r.label for recs in out.values() for r in recs} == set(EI)
