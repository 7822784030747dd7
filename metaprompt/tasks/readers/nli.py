"""Readers for the inference / claim-verification sets: RQE, CliniFact, Evidence Inference, K-QA NLI.

* ``rqe``: XML ``<pair pid type value>`` with ``<chq>`` (premise) and ``<faq>`` (hypothesis); label =
  ``value`` (``true`` = the FAQ is entailed by the consumer question).
* ``clinifact``: CSV rows; premise = ``article_abstract``, hypothesis = ``claim``; the numeric label is
  mapped to its name (1 evidence, 0 inconclusive, 2 no_info, as the authors' split script does).
* ``evidence_inference`` (v2): one record per prompt (PromptID) of the articles listed in
  ``splits/ev2_<split>_article_ids.txt``. Hypothesis = the authors' prompt sentence built from
  outcome/intervention/comparator. Label = majority over annotators (one vote per UserID), with
  the typo ``significantly increase`` read as ``significantly increased``. Ties (two annotators who
  disagree: 156 of 1275 prompts) are broken by (1) counting only the tied labels of annotators whose
  answer the verifier accepted (``Valid Label`` True), then (2) the label of the earliest annotation
  row in file order (the prompt creator's own answer). Premise = the evidence spans (``Annotations``)
  cited by the annotators who gave that label, de-duplicated, in file order, newline-joined: a few
  hundred characters, where the full articles (``txt_files/``, not read here) run to ~10k tokens.
* ``kqa_nli``: CSV; premise = the LLM ``answer``, hypothesis = ``claim``, label = ``majority_label``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import register
from metaprompt.tasks.readers._io import UniqueKeys, choice, iter_csv, read_splits, read_text, require
from metaprompt.tasks.records import NliRecord, Record

RQE_FILES: dict[str, str] = {
    "train": "RQE_Train_8588_AMIA2016.xml",
    "test": "RQE_Test_302_pairs_AMIA2016.xml",
}
RQE_LABELS: tuple[str, ...] = ("true", "false")

CLINIFACT_FILES: dict[str, str] = {
    "train": "train_set.csv",
    "validation": "validation_set.csv",
    "test": "test_set.csv",
}
CLINIFACT_LABELS: dict[str, str] = {"1": "evidence", "0": "inconclusive", "2": "no_info"}

EI_SPLITS: tuple[str, ...] = ("train", "validation", "test")
EI_LABELS: tuple[str, ...] = (
    "no significant difference",
    "significantly decreased",
    "significantly increased",
)
EI_LABEL_FIX: dict[str, str] = {"significantly increase": "significantly increased"}  # typo in the original
EI_HYPOTHESIS = (  # the authors' prompt sentence, filled in
    "With respect to {outcome}, characterize the reported difference between {intervention} "
    "and those receiving {comparator}."
)

KQA_NLI_LABELS: tuple[str, ...] = ("Contradiction", "Entailment", "Neutral")


def read_rqe_file(path: Path, split: str) -> list[Record]:
    """One RQE XML file (see module docstring)."""
    try:
        root = ET.fromstring(read_text(path))
    except ET.ParseError as e:
        raise DataFormatError(path, e.position[0], f"malformed XML: {e}") from None
    records: list[Record] = []
    pids = UniqueKeys(path, "pid")
    for n, pair in enumerate(root, 1):
        pid = pair.get("pid", "")
        where = f"record {n} (pid={pid or '?'})"
        if pair.tag != "pair" or not pid:
            raise DataFormatError(path, where, f"expected <pair pid=...>, found <{pair.tag}> {dict(pair.attrib)}")
        pids.add(pid, where)
        label = choice(pair.get("value", ""), path, where, "label value", RQE_LABELS)
        chq, faq = pair.find("chq"), pair.find("faq")
        records.append(
            NliRecord(
                uid=f"rqe/{split}/{pid}",
                origin=f"{path.name}#{pid}",
                premise=require(None if chq is None else "".join(chq.itertext()), path, where, "<chq>"),
                hypothesis=require(None if faq is None else "".join(faq.itertext()), path, where, "<faq>"),
                label=label,
                label_space=RQE_LABELS,
            )
        )
    return records


@register("rqe")
def read_rqe(folder: Path) -> dict[str, list[Record]]:
    """Read the RQE AMIA 2016 pairs: ``train`` and ``test``."""
    return read_splits(folder, RQE_FILES, read_rqe_file)


def read_clinifact_file(path: Path, split: str) -> list[Record]:
    """One CliniFact CSV (see module docstring)."""
    space = tuple(CLINIFACT_LABELS.values())
    records: list[Record] = []
    indices = UniqueKeys(path, "index")
    for line, row in iter_csv(path, required=("index", "claim", "article_abstract", "label")):
        index = indices.add(require(row["index"], path, line, "index"), line)
        code = choice(require(row["label"], path, line, "label"), path, line, "label", CLINIFACT_LABELS)
        records.append(
            NliRecord(
                uid=f"clinifact/{split}/{index}",
                origin=f"{path.name}:{line}",
                premise=require(row["article_abstract"], path, line, "article_abstract"),
                hypothesis=require(row["claim"], path, line, "claim"),
                label=CLINIFACT_LABELS[code],
                label_space=space,
            )
        )
    return records


@register("clinifact")
def read_clinifact(folder: Path) -> dict[str, list[Record]]:
    """Read CliniFact: claim vs linked publication abstract, 3 classes, ``train/validation/test``."""
    return read_splits(folder, CLINIFACT_FILES, read_clinifact_file)


def _article_splits(folder: Path) -> dict[str, str]:
    """PMCID -> split name from the ``ev2_<split>_article_ids.txt`` files (an id in two splits raises)."""
    split_of: dict[str, str] = {}
    for split in EI_SPLITS:
        path = folder / "annotations" / "splits" / f"ev2_{split}_article_ids.txt"
        for lineno, line in enumerate(read_text(path).splitlines(), 1):
            pmcid = line.strip()
            if not pmcid:
                continue
            if not pmcid.isdigit():
                raise DataFormatError(path, lineno, f"expected a numeric PMCID, found {pmcid!r}")
            if pmcid in split_of:
                raise DataFormatError(path, lineno, f"PMCID {pmcid} is also listed in split {split_of[pmcid]!r}")
            split_of[pmcid] = split
    return split_of


def _majority(rows: list[tuple[int, dict]], path: Path, prompt_id: str) -> str:
    """The prompt's label from its annotation rows ``(line, row)``; see the module doc for ties."""
    votes: dict[str, str] = {}  # UserID -> normalised label (first row of each annotator)
    accepted: set[str] = set()  # annotators whose answer the verifier accepted
    for line, row in rows:
        raw = row["Label"].strip()
        label = EI_LABEL_FIX.get(raw, raw)
        if label not in EI_LABELS:
            raise DataFormatError(
                path, line, f"unknown Label {raw!r} (PromptID {prompt_id}); expected one of {EI_LABELS}"
            )
        user = require(row["UserID"], path, line, "UserID")
        if votes.setdefault(user, label) != label:
            raise DataFormatError(path, line, f"annotator {user} gives two labels for PromptID {prompt_id}")
        if row["Valid Label"].strip() == "True":
            accepted.add(user)
    counts = Counter(votes.values())
    best = max(counts.values())
    leaders = {label for label, c in counts.items() if c == best}
    if len(leaders) > 1:
        valid = Counter(label for user, label in votes.items() if user in accepted and label in leaders)
        if valid:
            top = max(valid.values())
            if sum(c == top for c in valid.values()) == 1:
                return valid.most_common(1)[0][0]
            leaders = {label for label, c in valid.items() if c == top}
        for _, row in rows:  # still tied: the earliest row's label
            label = EI_LABEL_FIX.get(row["Label"].strip(), row["Label"].strip())
            if label in leaders:
                return label
    return min(leaders)  # a single label here


@register("evidence_inference")
def read_evidence_inference(folder: Path) -> dict[str, list[Record]]:
    """Read Evidence Inference 2.0: one record per prompt, ``train/validation/test`` by article split."""
    ann_dir = folder / "annotations"
    split_of = _article_splits(folder)
    ann_path = ann_dir / "v2_annotations.csv"
    by_prompt: dict[str, list[tuple[int, dict]]] = {}
    for line, row in iter_csv(
        ann_path, required=("UserID", "PromptID", "PMCID", "Valid Label", "Label", "Annotations")
    ):
        pmcid = require(row["PMCID"], ann_path, line, "PMCID")
        if pmcid not in split_of:
            raise DataFormatError(ann_path, line, f"PMCID {pmcid} is in no split file")
        by_prompt.setdefault(require(row["PromptID"], ann_path, line, "PromptID"), []).append((line, row))

    prompts_path = ann_dir / "prompts_merged.csv"
    out: dict[str, list[Record]] = {split: [] for split in EI_SPLITS}
    seen: set[str] = set()
    for line, row in iter_csv(prompts_path, required=("PromptID", "PMCID", "Outcome", "Intervention", "Comparator")):
        prompt_id = require(row["PromptID"], prompts_path, line, "PromptID")
        if prompt_id in seen:
            raise DataFormatError(prompts_path, line, f"duplicate PromptID {prompt_id}")
        seen.add(prompt_id)
        rows = by_prompt.get(prompt_id)
        if not rows:
            raise DataFormatError(prompts_path, line, f"PromptID {prompt_id} has no annotation in {ann_path.name}")
        pmcid = row["PMCID"].strip()
        if any(r["PMCID"].strip() != pmcid for _, r in rows):
            raise DataFormatError(
                prompts_path, line, f"PromptID {prompt_id}: PMCID {pmcid} differs from its annotations'"
            )
        label = _majority(rows, ann_path, prompt_id)
        voters = {
            r["UserID"].strip() for _, r in rows if EI_LABEL_FIX.get(r["Label"].strip(), r["Label"].strip()) == label
        }
        spans = dict.fromkeys(r["Annotations"].strip() for _, r in rows if r["UserID"].strip() in voters)
        evidence = "\n".join(s for s in spans if s)
        if not evidence:
            raise DataFormatError(
                ann_path, f"PromptID {prompt_id}", f"no evidence text for the majority label {label!r}"
            )
        hypothesis = EI_HYPOTHESIS.format(
            outcome=require(row["Outcome"], prompts_path, line, "Outcome"),
            intervention=require(row["Intervention"], prompts_path, line, "Intervention"),
            comparator=require(row["Comparator"], prompts_path, line, "Comparator"),
        )
        split = split_of[pmcid]
        out[split].append(
            NliRecord(
                uid=f"evidence_inference/{split}/{prompt_id}",
                origin=f"annotations/prompts_merged.csv:{line}",
                premise=evidence,
                hypothesis=hypothesis,
                label=label,
                label_space=EI_LABELS,
            )
        )
    orphans = sorted(set(by_prompt) - seen)
    if orphans:
        raise DataFormatError(
            ann_path,
            f"PromptID {orphans[0]}",
            f"{len(orphans)} annotated prompt(s) missing from prompts_merged.csv",
        )
    return out


@register("kqa_nli")
def read_kqa_nli(folder: Path) -> dict[str, list[Record]]:
    """Read K-QA's physician-labelled NLI rows (LLM answer vs statement), split ``all``."""
    name = "NLI_medical_annotator.csv"
    path = folder / name
    records: list[Record] = []
    indices = UniqueKeys(path, "row index")
    for line, row in iter_csv(path, required=("", "answer", "claim", "majority_label")):
        index = indices.add(require(row[""], path, line, "row index"), line)
        label = choice(
            require(row["majority_label"], path, line, "majority_label"), path, line, "majority_label", KQA_NLI_LABELS
        )
        records.append(
            NliRecord(
                uid=f"kqa_nli/all/{index}",
                origin=f"{name}:{line}",
                premise=require(row["answer"], path, line, "answer"),
                hypothesis=require(row["claim"], path, line, "claim"),
                label=label,
                label_space=KQA_NLI_LABELS,
            )
        )
    return {"all": records}
