"""Summarization readers (mts_dialog, mediqa_qs, meqsum, mediqa_mas): exact fields, bad inputs, real data.

XLSX fixtures are generated with openpyxl into ``tmp_path`` (binary workbooks are not checked in).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.readers import edit, manifest_entries, raises_naming, read_broken

from metaprompt.tasks.catalog import default_data_root
from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import get_reader, summarization
from metaprompt.tasks.records import SummarizationRecord

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readers"
DATA = default_data_root() or Path("/nonexistent")  # $METAPROMPT_DATA or ../shared/data

QS_VAL = [
    ("q_id", "NLM Question", "Summary", "Question Focus", "Question Type"),
    (
        3,
        "I'm 53 years old.\r\nI have a meniscus tear. ",
        "Should I leave a meniscus tear untreated?",
        "tear",
        "Prognosis",
    ),
    (4, "I have a tapeworm infection.", "How can I cure my tapeworm infection?", "tapeworm", "Treatment"),
]
QS_TEST = [
    ("q_id", "NLM Question", "Summary"),
    (96, "Lower lip birthmark, tried all options.", "How to remove a lip birthmark?"),
]
MEQSUM = [
    ("File", "CHQ", "Summary", None, None),
    (
        "1-131188152.xml.txt",
        "SUBJECT: cetirizine\nMESSAGE: Who makes it?",
        "Who manufactures cetirizine?",
        None,
        None,
    ),
    (None, None, None, None, None),  # blank rows are skipped
    ("14348.txt", "who makes bromocriptine", "Who manufactures bromocriptine?", None, None),
]
MAS_ANSWERS = [
    ("question_id", "answer_id", "Answer"),
    (5, "5_Answer2", "Treat the cause of the cough."),
    (5, "5_Answer1", "Chronic cough has many causes."),
    (24, "24_Answer1", "Calcification can be genetic."),
]


def write_xlsx(path: Path, rows: list[tuple], sheet: str = "Sheet1") -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    for row in rows:
        ws.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def make(dataset: str, tmp_path: Path, **override: list[tuple]) -> Path:
    """Build the fixture folder of ``dataset`` in ``tmp_path`` (text files copied, workbooks written)."""
    folder = tmp_path / dataset
    if (FIXTURES / dataset).is_dir():
        shutil.copytree(FIXTURES / dataset, folder)
    if dataset == "mediqa_qs":
        write_xlsx(folder / summarization.MEDIQA_QS_FILES["validation"], override.get("val", QS_VAL))
        write_xlsx(folder / summarization.MEDIQA_QS_FILES["test"], override.get("test", QS_TEST))
    elif dataset == "meqsum":
        write_xlsx(folder / summarization.MEQSUM_FILE, override.get("rows", MEQSUM), override.get("sheet", "QS"))
    elif dataset == "mediqa_mas":
        write_xlsx(
            folder / summarization.MAS_ANSWERS,
            override.get("rows", MAS_ANSWERS),
            "MEDIQA2021-Task2-AS-TestSet-Ans",
        )
    return folder


def test_mts_dialog_fixture_exact():
    out = get_reader("mts_dialog")(FIXTURES / "mts_dialog")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "validation": 1, "test1": 1, "test2": 1}
    assert out["train"][0] == SummarizationRecord(
        uid="mts_dialog/train/0",
        origin="MTS-Dialog-TrainingSet.csv:2",
        source="Doctor: What brings you in?\nPatient: A refill.",
        summary="GENHX: The patient is a 76-year-old female.\nShe has hypertension.",
    )
    assert (out["train"][1].origin, out["train"][1].summary) == ("MTS-Dialog-TrainingSet.csv:5", "CC: Cough.")
    assert out["test2"][0].uid == "mts_dialog/test2/5"


def test_mediqa_qs_fixture_exact(tmp_path):
    out = get_reader("mediqa_qs")(make("mediqa_qs", tmp_path))
    assert {k: len(v) for k, v in out.items()} == {"validation": 2, "test": 1}
    assert out["validation"][0] == SummarizationRecord(
        uid="mediqa_qs/validation/3",
        origin="MEDIQA2021-Task1-QuestionSummarization-ValidationSet.xlsx#3",
        source="I'm 53 years old.\nI have a meniscus tear.",
        summary="Should I leave a meniscus tear untreated?",
    )
    assert out["test"][0].uid == "mediqa_qs/test/96"


def test_meqsum_fixture_exact(tmp_path):
    recs = get_reader("meqsum")(make("meqsum", tmp_path))["all"]
    assert [r.uid for r in recs] == ["meqsum/all/1-131188152.xml.txt", "meqsum/all/14348.txt"]
    assert recs[0] == SummarizationRecord(
        uid="meqsum/all/1-131188152.xml.txt",
        origin="MeQSum_ACL2019_BenAbacha_Demner-Fushman.xlsx#1-131188152.xml.txt",
        source="SUBJECT: cetirizine\nMESSAGE: Who makes it?",
        summary="Who manufactures cetirizine?",
    )


def test_mediqa_mas_fixture_exact(tmp_path):
    recs = get_reader("mediqa_mas")(make("mediqa_mas", tmp_path))["test"]
    assert recs[0] == SummarizationRecord(
        uid="mediqa_mas/test/5",
        origin="MEDIQA2021_Task2_MAS_TestSet_shortQuestions.txt:1",
        source="Question: Is there gene therapy for persistent cough?\n\n"
        "Answer 1: Treat the cause of the cough.\n\nAnswer 2: Chronic cough has many causes.",
        summary="Chronic cough has many causes.",  # the abstractive one, not the extractive file
    )
    assert (recs[1].uid, recs[1].summary) == ("mediqa_mas/test/24", "Brain calcification can be genetic.")


MTS = "MTS-Dialog-TrainingSet.csv"
QS = summarization.MEDIQA_QS_FILES["validation"]
MQ = summarization.MEQSUM_FILE
QUESTIONS = summarization.MAS_QUESTIONS
SUMMARIES = summarization.MAS_SUMMARIES
MALFORMED_TEXT: list[tuple[str, str, Callable[[Path], None], str, str]] = [
    # (dataset, file edited, edit, expected location, expected problem)
    (
        "mts_dialog",
        MTS,
        lambda p: edit(p, ",dialogue", ",dialog"),
        "line 1",
        "missing column(s) ['dialogue']",
    ),
    ("mts_dialog", MTS, lambda p: edit(p, "Cough.", ""), "line 5", "empty section_text"),
    (
        "mts_dialog",
        MTS,
        lambda p: edit(p, '"Doctor: Hello.\nPatient: I cough."', '" "'),
        "line 5",
        "empty dialogue",
    ),
    ("mts_dialog", MTS, lambda p: edit(p, "Hello", b"H\xe9llo"), "line 5", "not valid UTF-8"),
    ("mts_dialog", MTS, lambda p: edit(p, "\r\n1,CC", "\r\n0,CC"), "line 5", "duplicate ID '0'"),
    ("mediqa_mas", QUESTIONS, lambda p: edit(p, "24||", "24|"), "line 2", "expected 'question_id||text'"),
    ("mediqa_mas", QUESTIONS, lambda p: edit(p, "gene", b"g\xe8ne"), "line 1", "not valid UTF-8"),
    (
        "mediqa_mas",
        SUMMARIES,
        lambda p: edit(p, "24||Brain calcification can be genetic.", ""),
        "line 2",
        "has no summary",
    ),
    (
        "mediqa_mas",
        SUMMARIES,
        lambda p: edit(p, "Chronic cough has many causes. ", ""),
        "line 1",
        "empty text",
    ),
    ("mediqa_mas", SUMMARIES, lambda p: edit(p, "24||", "25||"), "line 2", "question_id '25' not in"),
]


@pytest.mark.parametrize(("dataset", "file", "mutate", "where", "problem"), MALFORMED_TEXT)
def test_malformed_text_raises_with_file_and_place(tmp_path, dataset, file, mutate, where, problem):
    read_broken(make(dataset, tmp_path), dataset, file, mutate, where, problem)


MALFORMED_XLSX: list[tuple[str, dict, str, str, str]] = [
    # (dataset, workbook override, file, expected location, expected problem)
    ("mediqa_qs", {"val": [("q_id", "NLM Question", "Summ")]}, QS, "row 1", "missing column(s) ['Summary']"),
    ("mediqa_qs", {"val": [*QS_VAL, (7, "Question?", "  ")]}, QS, "row 4 (q_id=7)", "empty Summary"),
    ("mediqa_qs", {"val": [*QS_VAL, (3, "Again?", "Again?")]}, QS, "row 4", "duplicate q_id '3'"),
    ("meqsum", {"sheet": "Sheet1"}, MQ, "", "no sheet 'QS'"),
    ("meqsum", {"rows": [*MEQSUM, ("9.txt", "", "Why?")]}, MQ, "row 5 (File=9.txt)", "empty CHQ"),
    (
        "mediqa_mas",
        {"rows": [*MAS_ANSWERS, (77, "77_Answer1", "text")]},
        summarization.MAS_ANSWERS,
        "row 5 (answer_id=77_Answer1)",
        "question_id '77' not in",
    ),
    (
        "mediqa_mas",
        {"rows": [*MAS_ANSWERS, (24, "24_Answer2", None)]},
        summarization.MAS_ANSWERS,
        "row 5 (answer_id=24_Answer2)",
        "empty Answer",
    ),
    ("mediqa_mas", {"rows": MAS_ANSWERS[:3]}, QUESTIONS, "line 2", "has no answer"),
]


@pytest.mark.parametrize(("dataset", "override", "file", "where", "problem"), MALFORMED_XLSX)
def test_malformed_xlsx_raises_with_file_and_place(tmp_path, dataset, override, file, where, problem):
    folder = make(dataset, tmp_path, **override)
    raises_naming(lambda: get_reader(dataset)(folder), file, where, problem)


def test_damaged_workbook_raises(tmp_path):
    folder = make("meqsum", tmp_path)
    (folder / MQ).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFormatError, match=f"{MQ}.*not a readable XLSX"):
        get_reader("meqsum")(folder)


@pytest.mark.skipif(not (DATA / "MANIFEST.yaml").is_file(), reason="real data not present")
@pytest.mark.parametrize(
    ("dataset", "key"),
    [("mts_dialog", "kept"), ("mediqa_qs", "kept"), ("meqsum", "kept"), ("mediqa_mas", "questions")],
)
def test_real_data_counts_and_targets(dataset, key):
    entry = manifest_entries(DATA)[dataset]
    out = get_reader(dataset)(DATA / dataset)
    assert {k: len(v) for k, v in out.items()} == {n.split()[0]: c[key] for n, c in entry["counts"].items()}
    uids = [r.uid for recs in out.values() for r in recs]
    assert len(uids) == len(set(uids))
    for recs in out.values():
        assert all(r.source.strip() and r.summary.strip() and "\r" not in r.source + r.summary for r in recs)
    if dataset == "mediqa_mas":  # every one of the 303 answers ends up in some source
        assert sum(r.source.count("\n\nAnswer ") for r in out["test"]) == entry["counts"]["test"]["answers"]
