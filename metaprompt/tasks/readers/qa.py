"""Readers for the question-answering sets: PubMedQA, HEAD-QA, MedQuAD and K-QA.

* ``pubmedqa`` (PQA-L): ``ori_pqal.json`` maps PMID -> {QUESTION, CONTEXTS, final_decision, ...};
  ``test_ground_truth.json`` maps the test PMIDs -> yes|no|maybe. Test = the PMIDs of the ground-truth
  file (in its order), train = the other PMIDs of ``ori_pqal.json``. The context is the abstract's
  CONTEXTS joined by newlines; a test label must agree with the article's ``final_decision``.
* ``head_qa``: ``{split}_HEAD_EN.json`` exams -> questions with 4-5 options; the answer is the text
  of the option whose ``aid`` equals ``ra``. Options are kept verbatim and in file order, including
  the few machine-translation duplicates (the right text is still among them).
* ``medquad``: one XML document per focus in the folders ``1_*`` .. ``9_*``; one record per QAPair.
  The original has exactly one QAPair with an empty answer (listed in ``KNOWN_EMPTY_ANSWERS``); it is
  dropped explicitly, and any other empty answer raises. Whitespace of the pretty-printed XML text
  is normalised (see ``_text``).
* ``kqa``: JSON Lines with ``Question`` and the physician-written ``Free_form_answer``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import EXCLUDED, register
from metaprompt.tasks.readers._io import UniqueKeys, iter_jsonl, read_json, read_text, require
from metaprompt.tasks.records import QaRecord, Record

PUBMEDQA_LABELS: tuple[str, ...] = ("yes", "no", "maybe")
HEAD_QA_FILES: dict[str, str] = {
    "train": "train_HEAD_EN.json",
    "dev": "dev_HEAD_EN.json",
    "test": "test_HEAD_EN.json",
}

# "<folder>/<file>#<pid>" of QAPairs whose <Answer> is empty in the original MedQuAD release: the
# manifest's 1995 kept pairs include this one, so the reader returns 1994 records. It is dropped by
# name so that any *other* empty answer is still reported as an error.
KNOWN_EMPTY_ANSWERS: frozenset[str] = frozenset({"2_GARD_QA/0006509.xml#1"})
EXCLUDED["medquad"] = {"all": {key: "QAPair with an empty <Answer/> in the original" for key in KNOWN_EMPTY_ANSWERS}}
_SPACES = re.compile(r"[ \t\u00a0]+")


def _parse_xml(path: Path) -> ET.Element:
    """Parse an XML file (UTF-8 checked by ``read_text``); syntax errors report their line."""
    try:
        return ET.fromstring(read_text(path))
    except ET.ParseError as e:
        raise DataFormatError(path, e.position[0], f"malformed XML: {e}") from None


def _text(elem: ET.Element | None) -> str:
    """Text inside ``elem`` (nested markup flattened); ``""`` if ``elem`` is missing.

    Whitespace is normalised because the XML is pretty-printed (CancerGov answers carry 20-space
    indents): runs of spaces/tabs become one space, lines are stripped, and blank lines dropped.
    """
    if elem is None:
        return ""
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(elem.itertext()).splitlines())
    return "\n".join(line for line in lines if line)


def _object(value: object, path: Path, where: str | None, what: str) -> dict:
    if not isinstance(value, dict):
        raise DataFormatError(path, where, f"expected {what} to be a JSON object, found {type(value).__name__}")
    return value


@register("pubmedqa")
def read_pubmedqa(folder: Path) -> dict[str, list[Record]]:
    """Read PubMedQA PQA-L: ``train`` (500 PMIDs) and ``test`` (the official test PMIDs kept)."""
    ori_path, gt_path = folder / "ori_pqal.json", folder / "test_ground_truth.json"
    ori = _object(read_json(ori_path), ori_path, None, "the document")
    truth = _object(read_json(gt_path), gt_path, None, "the document")

    def record(pmid: str, split: str) -> QaRecord:
        where = f"record {pmid}"
        entry = _object(ori[pmid], ori_path, where, "the article")
        contexts = entry.get("CONTEXTS")
        if not isinstance(contexts, list) or not contexts or not all(isinstance(c, str) for c in contexts):
            raise DataFormatError(ori_path, where, "CONTEXTS must be a non-empty list of strings")
        decision = require(entry.get("final_decision"), ori_path, where, "final_decision")
        if decision not in PUBMEDQA_LABELS:
            raise DataFormatError(ori_path, where, f"unknown final_decision {decision!r}; expected {PUBMEDQA_LABELS}")
        return QaRecord(
            uid=f"pubmedqa/{split}/{pmid}",
            origin=f"ori_pqal.json#{pmid}",
            question=require(entry.get("QUESTION"), ori_path, where, "QUESTION"),
            context="\n".join(c.strip() for c in contexts),
            answers=(decision,),
            kind="yes_no_maybe",
        )

    test: list[Record] = []
    for pmid, label in truth.items():
        where = f"record {pmid}"
        if label not in PUBMEDQA_LABELS:
            raise DataFormatError(gt_path, where, f"unknown label {label!r}; expected {PUBMEDQA_LABELS}")
        if pmid not in ori:
            raise DataFormatError(gt_path, where, "PMID has no article in ori_pqal.json")
        rec = record(pmid, "test")
        if rec.answers[0] != label:  # two sources of the same gold label must agree
            raise DataFormatError(
                gt_path, where, f"label {label!r} != final_decision {rec.answers[0]!r} in ori_pqal.json"
            )
        test.append(rec)
    train = [record(pmid, "train") for pmid in ori if pmid not in truth]
    return {"train": train, "test": test}


@register("head_qa")
def read_head_qa(folder: Path) -> dict[str, list[Record]]:
    """Read HEAD-QA (English): multiple-choice questions of every exam in each split file."""
    out: dict[str, list[Record]] = {}
    for split, name in HEAD_QA_FILES.items():
        path = folder / name
        doc = _object(read_json(path), path, None, "the document")
        exams = _object(doc.get("exams"), path, None, "'exams'")
        records: list[Record] = []
        seen = UniqueKeys(path, "qid in exam")
        for exam_name, exam in exams.items():
            questions = _object(exam, path, f"exam {exam_name}", "the exam").get("data")
            if not isinstance(questions, list):
                raise DataFormatError(path, f"exam {exam_name}", "'data' must be a list of questions")
            for n, q in enumerate(questions):
                qid = str(q.get("qid", "")) if isinstance(q, dict) else ""
                where = f"record {exam_name}/{qid or f'#{n}'}"
                if not qid:
                    raise DataFormatError(path, where, "question without 'qid'")
                key = seen.add(f"{exam_name}/{qid}", where, qid)
                answers = q.get("answers")
                if not isinstance(answers, list) or len(answers) < 2 or not all(isinstance(a, dict) for a in answers):
                    raise DataFormatError(path, where, "'answers' must list at least two options")
                options = [
                    (str(a.get("aid", "")), require(a.get("atext"), path, where, "option text")) for a in answers
                ]
                right = str(q.get("ra", "")).strip()
                correct = [text for aid, text in options if aid == right]
                if len(correct) != 1:
                    raise DataFormatError(path, where, f"right answer id {right!r} is not exactly one option aid")
                records.append(
                    QaRecord(
                        uid=f"head_qa/{split}/{key}",
                        origin=f"{name}#{key}",
                        question=require(q.get("qtext"), path, where, "question text"),
                        options=tuple(text for _, text in options),
                        answers=(correct[0],),
                        kind="multiple_choice",
                    )
                )
        out[split] = records
    return out


@register("medquad")
def read_medquad(folder: Path) -> dict[str, list[Record]]:
    """Read MedQuAD (folders 1-9): one free-text record per QAPair, all in split ``all``."""
    files = sorted(p for p in folder.glob("*/*.xml") if p.parent.name.split("_", 1)[0].isdigit())
    if not files:
        raise DataFormatError(folder, None, "no <folder>/<id>.xml documents found")
    records: list[Record] = []
    seen: set[str] = set()
    for path in files:
        shown = f"{path.parent.name}/{path.name}"
        root = _parse_xml(path)
        if root.tag != "Document":
            raise DataFormatError(path, None, f"root element is <{root.tag}>, expected <Document>")
        for n, pair in enumerate(root.iter("QAPair"), 1):
            pid = pair.get("pid") or str(n)
            where = f"record {pid} (QAPair {n})"
            question = pair.find("Question")
            if question is None:
                raise DataFormatError(path, where, "QAPair without <Question>")
            qid = require(question.get("qid"), path, where, "Question qid")
            uid = f"medquad/all/{path.parent.name}/{qid}"  # document ids repeat across folders
            if uid in seen:
                raise DataFormatError(path, where, f"duplicate qid {qid!r} in folder")
            seen.add(uid)
            answer = _text(pair.find("Answer"))
            if not answer:
                if f"{shown}#{pid}" in KNOWN_EMPTY_ANSWERS:
                    continue
                raise DataFormatError(path, where, "empty Answer")
            records.append(
                QaRecord(
                    uid=uid,
                    origin=f"{shown}#{qid}",
                    question=require(_text(question), path, where, "Question"),
                    answers=(answer,),
                    kind="free_text",
                )
            )
    return {"all": records}


@register("kqa")
def read_kqa(folder: Path) -> dict[str, list[Record]]:
    """Read K-QA's answered questions: question -> physician-written free-form answer (split ``all``)."""
    name = "questions_w_answers.jsonl"
    path = folder / name
    records: list[Record] = []
    for lineno, obj in iter_jsonl(path):
        records.append(
            QaRecord(
                uid=f"kqa/all/{lineno}",
                origin=f"{name}:{lineno}",
                question=require(obj.get("Question"), path, lineno, "Question"),
                answers=(require(obj.get("Free_form_answer"), path, lineno, "Free_form_answer"),),
                kind="free_text",
            )
        )
    return {"all": records}
