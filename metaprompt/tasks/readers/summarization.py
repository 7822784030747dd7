"""Readers for the summarization sets: MTS-Dialog, MEDIQA-QS, MeQSum and MEDIQA-MAS.

* ``mts_dialog``: CSV rows ``ID, section_header, section_text, dialogue``; source = the dialogue,
  summary = ``"<section_header>: <section_text>"`` (MEDIQA-Chat task A asks for both header and text).
  Splits ``train``, ``validation``, ``test1`` (MEDIQA-Chat 2023), ``test2`` (MEDIQA-Sum 2023).
* ``mediqa_qs``: XLSX ``q_id, NLM Question, Summary`` (``validation`` and ``test``).
* ``meqsum``: XLSX sheet ``QS``, ``File, CHQ, Summary`` (split ``all``; id = ``File``).
* ``mediqa_mas`` (test split only): per question, source = ``"Question: <short question>"`` followed
  by ``"Answer <k>: <text>"`` for each of its answers in workbook order; summary = the expert
  *abstractive* multi-answer summary. The extractive summaries are not read: a generative model is
  trained/scored against abstractive references, and one target per record keeps ROUGE unambiguous.

All texts have CRLF/CR line ends turned into LF (the CSVs mix them inside quoted fields) and are
stripped; an empty source or summary raises.
"""

from __future__ import annotations

from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import register
from metaprompt.tasks.readers._io import UniqueKeys, iter_csv, iter_xlsx, read_splits, read_text, require
from metaprompt.tasks.records import Record, SummarizationRecord

MTS_FILES: dict[str, str] = {
    "train": "MTS-Dialog-TrainingSet.csv",
    "validation": "MTS-Dialog-ValidationSet.csv",
    "test1": "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv",
    "test2": "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv",
}
MEDIQA_QS_FILES: dict[str, str] = {
    "validation": "MEDIQA2021-Task1-QuestionSummarization-ValidationSet.xlsx",
    "test": "MEDIQA2021-Task1-TestSet-ReferenceSummaries.xlsx",
}
MEQSUM_FILE = "MeQSum_ACL2019_BenAbacha_Demner-Fushman.xlsx"
MAS_ANSWERS = "MEDIQA2021_Task2_MAS_TestSet_Answers.xlsx"
MAS_QUESTIONS = "MEDIQA2021_Task2_MAS_TestSet_shortQuestions.txt"
MAS_SUMMARIES = "MEDIQA2021_Task2_TestSet_MultiAbstrativeSummaries.txt"  # sic: the original file name


def _clean(text: str, path: Path, where: str | int, what: str) -> str:
    """``text`` with LF line ends, stripped; blank raises (an empty source or target)."""
    return require(text.replace("\r\n", "\n").replace("\r", "\n"), path, where, what)


def read_mts_dialog_file(path: Path, split: str) -> list[Record]:
    """One MTS-Dialog CSV (see module docstring)."""
    records: list[Record] = []
    ids = UniqueKeys(path, "ID")
    for line, row in iter_csv(path, required=("ID", "section_header", "section_text", "dialogue")):
        rid = ids.add(require(row["ID"], path, line, "ID"), line)
        header = require(row["section_header"], path, line, "section_header")
        records.append(
            SummarizationRecord(
                uid=f"mts_dialog/{split}/{rid}",
                origin=f"{path.name}:{line}",
                source=_clean(row["dialogue"], path, line, "dialogue"),
                summary=f"{header}: {_clean(row['section_text'], path, line, 'section_text')}",
            )
        )
    return records


@register("mts_dialog")
def read_mts_dialog(folder: Path) -> dict[str, list[Record]]:
    """Read MTS-Dialog: dialogue -> section header + section text."""
    return read_splits(folder, MTS_FILES, read_mts_dialog_file)


def read_mediqa_qs_file(path: Path, split: str) -> list[Record]:
    """One MEDIQA-QS workbook (see module docstring)."""
    records: list[Record] = []
    ids = UniqueKeys(path, "q_id")
    for n, row in iter_xlsx(path, required=("q_id", "NLM Question", "Summary")):
        qid = ids.add(require(row["q_id"], path, f"row {n}", "q_id"), f"row {n}")
        where = f"row {n} (q_id={qid})"
        records.append(
            SummarizationRecord(
                uid=f"mediqa_qs/{split}/{qid}",
                origin=f"{path.name}#{qid}",
                source=_clean(row["NLM Question"], path, where, "NLM Question"),
                summary=_clean(row["Summary"], path, where, "Summary"),
            )
        )
    return records


@register("mediqa_qs")
def read_mediqa_qs(folder: Path) -> dict[str, list[Record]]:
    """Read MEDIQA 2021 question summarization: NLM consumer question -> short question."""
    return read_splits(folder, MEDIQA_QS_FILES, read_mediqa_qs_file)


@register("meqsum")
def read_meqsum(folder: Path) -> dict[str, list[Record]]:
    """Read MeQSum (sheet ``QS``): consumer health question (CHQ) -> summary question."""
    path = folder / MEQSUM_FILE
    records: list[Record] = []
    ids = UniqueKeys(path, "File")
    for n, row in iter_xlsx(path, required=("File", "CHQ", "Summary"), sheet="QS"):
        file_id = ids.add(require(row["File"], path, f"row {n}", "File"), f"row {n}")
        where = f"row {n} (File={file_id})"
        records.append(
            SummarizationRecord(
                uid=f"meqsum/all/{file_id}",
                origin=f"{MEQSUM_FILE}#{file_id}",
                source=_clean(row["CHQ"], path, where, "CHQ"),
                summary=_clean(row["Summary"], path, where, "Summary"),
            )
        )
    return {"all": records}


def _id_lines(path: Path) -> dict[str, tuple[int, str]]:
    """``question_id -> (line, text)`` from a ``question_id||text`` file (ordered as in the file)."""
    out: dict[str, tuple[int, str]] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        qid, sep, text = line.partition("||")
        qid = qid.strip()
        if not sep or not qid:
            raise DataFormatError(path, lineno, "expected 'question_id||text'")
        if qid in out:
            raise DataFormatError(path, lineno, f"duplicate question_id {qid!r}")
        out[qid] = (lineno, require(text, path, lineno, "text after '||'"))
    return out


@register("mediqa_mas")
def read_mediqa_mas(folder: Path) -> dict[str, list[Record]]:
    """Read MEDIQA 2021 multi-answer summarization (test): question + answers -> abstractive summary."""
    questions = _id_lines(folder / MAS_QUESTIONS)
    summaries_path = folder / MAS_SUMMARIES
    summaries = _id_lines(summaries_path)
    answers_path = folder / MAS_ANSWERS
    answers: dict[str, list[str]] = {}
    answer_ids = UniqueKeys(answers_path, "answer_id")
    for n, row in iter_xlsx(answers_path, required=("question_id", "answer_id", "Answer")):
        where = f"row {n}"
        qid = require(row["question_id"], answers_path, where, "question_id")
        aid = answer_ids.add(require(row["answer_id"], answers_path, where, "answer_id"), where)
        if qid not in questions:
            raise DataFormatError(
                answers_path, f"row {n} (answer_id={aid})", f"question_id {qid!r} not in {MAS_QUESTIONS}"
            )
        answers.setdefault(qid, []).append(_clean(row["Answer"], answers_path, f"row {n} (answer_id={aid})", "Answer"))
    extra = [qid for qid in summaries if qid not in questions]
    if extra:
        raise DataFormatError(
            summaries_path, summaries[extra[0]][0], f"question_id {extra[0]!r} not in {MAS_QUESTIONS}"
        )
    records: list[Record] = []
    for qid, (lineno, question) in questions.items():
        if qid not in answers:
            raise DataFormatError(folder / MAS_QUESTIONS, lineno, f"question_id {qid!r} has no answer in {MAS_ANSWERS}")
        if qid not in summaries:
            raise DataFormatError(
                folder / MAS_QUESTIONS, lineno, f"question_id {qid!r} has no summary in {MAS_SUMMARIES}"
            )
        parts = [f"Question: {question}"] + [f"Answer {k}: {a}" for k, a in enumerate(answers[qid], 1)]
        records.append(
            SummarizationRecord(
                uid=f"mediqa_mas/test/{qid}",
                origin=f"{MAS_QUESTIONS}:{lineno}",
                source="\n\n".join(parts),
                summary=summaries[qid][1],
            )
        )
    return {"test": records}
