"""Small long-document task files for the ``long_inputs`` tests: a SQuAD-format QA set whose contexts
are ~10 windows long, and a JSONL NER set of long notes with unique drug mentions."""

from __future__ import annotations

import json
from pathlib import Path

FILLER = "The committee reviewed the protocol and noted routine findings in every ward. "
DRUGS = ("remdesivir", "dexamethasone", "tocilizumab", "baricitinib", "heparin", "ivermectin")


def write_squad(folder: Path, sizes: dict[str, int]) -> dict[str, str]:
    """``{split: path}`` of SQuAD JSON files; question ``i`` is answered once, a third of the way further
    into the context for each next question, so that answers lie at the start, middle and end."""
    files = {}
    for split, n in sizes.items():
        paragraphs = []
        for i in range(n):
            parts = [FILLER * 12, FILLER * 12, FILLER * 12]
            answer = f"{DRUGS[i % len(DRUGS)]}{i}"
            parts[i % 3] += f"The trial drug was {answer} given daily. "
            context = "".join(parts)
            qa = {"id": f"{split}{i}", "question": "Which drug was given?"}
            qa["answers"] = [{"text": answer, "answer_start": context.index(answer)}]
            paragraphs.append({"context": context, "qas": [qa]})
        files[split] = str(folder / f"{split}.json")
        Path(files[split]).write_text(json.dumps({"data": [{"title": split, "paragraphs": paragraphs}]}))
    return files


def write_notes(folder: Path, sizes: dict[str, int]) -> dict[str, str]:
    """``{split: path}`` of JSONL NER files (columns ``text``, ``entities``): every note mentions each drug
    once (unique mentions, so a perfect per-window extraction merges to the gold exactly)."""
    files = {}
    for split, n in sizes.items():
        lines = []
        for i in range(n):
            text, entities = "", []
            for drug in DRUGS[: 3 + i % 3]:
                text += FILLER * 6
                entities.append({"start": len(text), "end": len(text) + len(drug), "label": "Drug"})
                text += f"{drug} was started. "
            lines.append(json.dumps({"text": text, "entities": entities}))
        files[split] = str(folder / f"{split}.jsonl")
        Path(files[split]).write_text("\n".join(lines) + "\n")
    return files
