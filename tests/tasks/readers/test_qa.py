"""QA readers (pubmedqa, head_qa, medquad, kqa): exact fields, malformed inputs, real-data counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support.readers import edit, fixture_copy, manifest_entries, read_broken

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.readers import get_reader, qa
from metaprompt.tasks.records import QaRecord

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readers"
DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data


def test_pubmedqa_fixture_exact():
    out = get_reader("pubmedqa")(FIXTURES / "pubmedqa")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "test": 1}
    assert out["train"][0] == QaRecord(
        uid="pubmedqa/train/111",
        origin="ori_pqal.json#111",
        question="Does drug A reduce pain?",
        context="Background sentence.\nResults sentence.",
        answers=("yes",),
        kind="yes_no_maybe",
    )
    assert out["train"][1].answers == ("maybe",)
    test = out["test"][0]
    assert (test.uid, test.answers, test.context) == (
        "pubmedqa/test/333",
        ("no",),
        "Context one.\nContext two.",
    )


def test_head_qa_fixture_exact():
    out = get_reader("head_qa")(FIXTURES / "head_qa")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "dev": 1, "test": 1}
    first, dup = out["train"]
    assert first == QaRecord(
        uid="head_qa/train/Cuaderno_2013_1_B/1",
        origin="train_HEAD_EN.json#Cuaderno_2013_1_B/1",
        question="The excitatory postsynaptic potentials:",
        options=(
            "They are all or nothing.",
            "They are hyperpolarizing.",
            "They can be added.",
            "They spread long distances.",
            "They present a refractory period.",
        ),
        answers=("They can be added.",),
        kind="multiple_choice",
    )
    # duplicated option texts (as in the original translation) are kept verbatim
    assert dup.options.count("Effectiveness.") == 2 and dup.answers == ("Effectiveness.",)
    assert out["dev"][0].answers == ("Proprioception",) and len(out["test"][0].options) == 4


def test_medquad_fixture_exact():
    out = get_reader("medquad")(FIXTURES / "medquad")
    recs = out["all"]
    assert [r.uid for r in recs] == [
        "medquad/all/1_CancerGov_QA/0000004_5-1",
        "medquad/all/1_CancerGov_QA/0000004_5-2",
        "medquad/all/2_GARD_QA/0000004_5-1",
    ]
    assert recs[0].origin == "1_CancerGov_QA/0000004_5.xml#0000004_5-1"
    assert recs[0].question == "What is (are) Primary CNS Lymphoma ?"
    assert recs[0].answers == (
        "Key Points\n- Primary CNS lymphoma is a disease. - Having a weakened immune system may increase "
        "the risk.\nLymphoma is a disease of the lymph system.",
    )
    assert recs[1].answers == ("Radiation & chemotherapy.",)
    assert all(r.kind == "free_text" and r.context is None and r.options is None for r in recs)


def test_medquad_known_empty_answer_is_dropped(tmp_path, monkeypatch):
    folder = fixture_copy("medquad", tmp_path)
    edit(folder / "1_CancerGov_QA" / "0000004_5.xml", "Radiation &amp; chemotherapy.", "")
    monkeypatch.setattr(qa, "KNOWN_EMPTY_ANSWERS", frozenset({"1_CancerGov_QA/0000004_5.xml#2"}))
    assert [r.uid.rsplit("/", 1)[1] for r in qa.read_medquad(folder)["all"]] == ["0000004_5-1", "0000004_5-1"]


def test_kqa_fixture_exact():
    recs = get_reader("kqa")(FIXTURES / "kqa")["all"]
    assert recs == [
        QaRecord(
            uid="kqa/all/1",
            origin="questions_w_answers.jsonl:1",
            question="What is Lexapro?",
            answers=("An SSRI antidepressant.\nTake with care.",),
            kind="free_text",
        ),
        QaRecord(
            uid="kqa/all/3",
            origin="questions_w_answers.jsonl:3",
            question="Can I take ibuprofen?",
            answers=("Usually yes.",),
            kind="free_text",
        ),
    ]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


GARD = "2_GARD_QA/0000004_5.xml"
CANCER = "1_CancerGov_QA/0000004_5.xml"
MALFORMED: list[tuple[str, str, Callable[[Path], None], str, str]] = [
    # (dataset, file edited, edit, expected location, expected problem)
    ("pubmedqa", "ori_pqal.json", _truncate, "line ", "invalid JSON"),
    (
        "pubmedqa",
        "ori_pqal.json",
        lambda p: edit(p, "Background", b"Backgr\xffound"),
        "line 5",
        "not valid UTF-8",
    ),
    (
        "pubmedqa",
        "ori_pqal.json",
        lambda p: edit(p, '"final_decision": "yes"', '"final_decision": ""'),
        "record 111",
        "empty final_decision",
    ),
    (
        "pubmedqa",
        "ori_pqal.json",
        lambda p: edit(p, '"final_decision": "yes"', '"final_decision": "probably"'),
        "record 111",
        "unknown final_decision 'probably'",
    ),
    (
        "pubmedqa",
        "ori_pqal.json",
        lambda p: edit(p, '"CONTEXTS": ["Only context."],', ""),
        "record 222",
        "CONTEXTS",
    ),
    (
        "pubmedqa",
        "test_ground_truth.json",
        lambda p: edit(p, '"no"', '"unsure"'),
        "record 333",
        "unknown label",
    ),
    (
        "pubmedqa",
        "test_ground_truth.json",
        lambda p: edit(p, '"no"', '"yes"'),
        "record 333",
        "!= final_decision",
    ),
    ("pubmedqa", "test_ground_truth.json", lambda p: edit(p, '"333"', '"999"'), "record 999", "no article"),
    ("head_qa", "dev_HEAD_EN.json", _truncate, "line 1", "invalid JSON"),
    (
        "head_qa",
        "dev_HEAD_EN.json",
        lambda p: edit(p, '"ra": "1"', '"ra": "9"'),
        "record Cuaderno_2015_1_B/3",
        "right answer id '9'",
    ),
    (
        "head_qa",
        "dev_HEAD_EN.json",
        lambda p: edit(p, '"atext": "Pain."', '"atext": " "'),
        "record Cuaderno_2015_1_B/3",
        "empty option text",
    ),
    (
        "head_qa",
        "dev_HEAD_EN.json",
        lambda p: edit(p, '"qtext": "The sensory fibers with the highest driving speed are:"', '"qtext": ""'),
        "record Cuaderno_2015_1_B/3",
        "empty question text",
    ),
    ("head_qa", "test_HEAD_EN.json", lambda p: edit(p, '"exams": {', '"exams": 3, "x": {'), "", "'exams'"),
    ("medquad", CANCER, lambda p: edit(p, "</Question>", ""), "line 18", "malformed XML"),
    ("medquad", CANCER, lambda p: edit(p, "Radiation", b"Radi\xe9tion"), "line 21", "not valid UTF-8"),
    ("medquad", GARD, lambda p: edit(p, "Fever.", ""), "record 1 (QAPair 1)", "empty Answer"),
    (
        "medquad",
        GARD,
        lambda p: edit(p, "<Answer>Fever.</Answer>", ""),
        "record 1 (QAPair 1)",
        "empty Answer",
    ),
    (
        "medquad",
        GARD,
        lambda p: edit(p, ' qid="0000004_5-1"', ""),
        "record 1 (QAPair 1)",
        "empty Question qid",
    ),
    (
        "kqa",
        "questions_w_answers.jsonl",
        lambda p: edit(p, '"Usually yes."', '""'),
        "line 3",
        "empty Free_form_answer",
    ),
    (
        "kqa",
        "questions_w_answers.jsonl",
        lambda p: edit(p, '"Question":"Can I take ibuprofen?",', ""),
        "line 3",
        "empty Question",
    ),
    ("kqa", "questions_w_answers.jsonl", _truncate, "line 3", "invalid JSON"),
    (
        "kqa",
        "questions_w_answers.jsonl",
        lambda p: edit(p, "Lexapro", b"Lex\xc3apro"),
        "line 1",
        "not valid UTF-8",
    ),
]


@pytest.mark.parametrize(("dataset", "file", "mutate", "where", "problem"), MALFORMED)
def test_malformed_raises_with_file_and_place(tmp_path, dataset, file, mutate, where, problem):
    read_broken(fixture_copy(dataset, tmp_path), dataset, file, mutate, where, problem)


def _counts(entry: dict, key: str) -> dict[str, int]:
    """``{split: entry.counts[<split ...>][key]}`` with the split = first word of each counts key."""
    return {name.split()[0]: c[key] for name, c in entry["counts"].items()}


@pytest.mark.skipif(not (DATA / "MANIFEST.yaml").is_file(), reason="real data not present")
@pytest.mark.parametrize(
    ("dataset", "key"),
    [("pubmedqa", "kept"), ("head_qa", "kept_questions"), ("medquad", "kept_qa_pairs"), ("kqa", "kept")],
)
def test_real_data_counts_and_targets(dataset, key):
    entry = manifest_entries(DATA)[dataset]
    out = get_reader(dataset)(DATA / dataset)
    expected = _counts(entry, key)
    if dataset == "medquad":  # the one original QAPair with an empty <Answer> is dropped by name
        expected = {"all": expected["all"] - len(qa.KNOWN_EMPTY_ANSWERS)}
    assert {k: len(v) for k, v in out.items()} == expected
    uids = [r.uid for recs in out.values() for r in recs]
    assert len(uids) == len(set(uids))
    for recs in out.values():
        assert all(r.question and r.answers and all(a.strip() for a in r.answers) for r in recs)
        assert all(r.options is None or r.answers[0] in r.options for r in recs)
    if dataset == "pubmedqa":
        for name, c in entry["counts"].items():
            assert Counter(r.answers[0] for r in out[name.split()[0]]) == c["labels"]
    if dataset == "head_qa":
        assert all(r.kind == "multiple_choice" for recs in out.values() for r in recs)
