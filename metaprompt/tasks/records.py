"""Typed records, one per task type, shared by every reader, verbalizer, parser and metric.

Readers build these from the original files; verbalizers turn them into (prompt, target) text;
parsers turn generated text back into the *structure* of a record (``record.structure()``), which is
also what metrics compare. Records are frozen so a reader cannot be mutated by later stages.

Every record carries ``uid`` (``"<dataset>/<split>/<n>"``-style, unique in its dataset) and
``origin`` (``"<file>:<line>"`` or ``"<file>#<record id>"``) so that any downstream problem can be
traced back to the exact line of the original file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

TaskType = Literal["ner", "re", "qa", "nli", "summarization"]
TASK_TYPES: tuple[str, ...] = ("ner", "re", "qa", "nli", "summarization")


@dataclass(frozen=True)
class Entity:
    """A typed mention. ``text == record.text[start:end]`` whenever offsets are known.

    Attributes:
        start: Character offset of the first character (inclusive), or -1 if unknown.
        end: Character offset after the last character (exclusive), or -1 if unknown.
        label: Entity type, e.g. ``"Chemical"``.
        text: Surface string of the mention.
    """

    start: int
    end: int
    label: str
    text: str


@dataclass(frozen=True)
class Relation:
    """A typed head-relation-tail triple between two mentions given by their surface text."""

    head: str
    relation: str
    tail: str


@dataclass(frozen=True)
class Record:
    """Base of all records: identity and provenance."""

    uid: str
    origin: str
    task_type: ClassVar[str] = ""


@dataclass(frozen=True)
class NerRecord(Record):
    """Named-entity recognition: ``text`` with typed character spans.

    ``structure()`` is the sorted tuple of ``(mention text, label)`` pairs (a multiset): generated
    text carries no offsets, so strict entity F1 over generation compares mention strings and types.
    """

    text: str = ""
    entities: tuple[Entity, ...] = ()
    task_type: ClassVar[str] = "ner"

    def structure(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((e.text, e.label) for e in self.entities))


@dataclass(frozen=True)
class RelationRecord(Record):
    """Relation extraction: ``text``, its entities and typed triples (empty for negatives).

    ``candidate`` is set by candidate-pair corpora (gad, pgr: one row = one entity pair to classify):
    the one relation this pair may hold, so the answer is either it or none. Such records are label-like
    (scored by ranking the two answers, as BLURB scores GAD by the positive class's F1); records without
    a candidate are open extraction and are scored by generation.
    """

    text: str = ""
    entities: tuple[Entity, ...] = ()
    relations: tuple[Relation, ...] = ()
    candidate: Relation | None = None
    task_type: ClassVar[str] = "re"

    def structure(self) -> tuple[tuple[str, str, str], ...]:
        return tuple(sorted({(r.head, r.relation, r.tail) for r in self.relations}))


QaKind = Literal["yes_no_maybe", "multiple_choice", "free_text"]


@dataclass(frozen=True)
class QaRecord(Record):
    """Question answering.

    Attributes:
        question: The question.
        context: Supporting passage(s), or ``None`` for closed-book questions.
        options: Answer options for multiple choice (the answer is one of them), else ``None``.
        answers: Acceptable gold answers; the first is the one used as training target.
        kind: How it is scored: accuracy for ``yes_no_maybe``/``multiple_choice``,
            EM/token-F1/ROUGE for ``free_text``.
    """

    question: str = ""
    context: str | None = None
    options: tuple[str, ...] | None = None
    answers: tuple[str, ...] = ()
    kind: QaKind = "free_text"
    task_type: ClassVar[str] = "qa"

    def structure(self) -> str:
        return self.answers[0] if self.answers else ""


@dataclass(frozen=True)
class NliRecord(Record):
    """Natural-language inference / claim verification: premise, hypothesis, label.

    ``label_space`` lists the dataset's labels so that verbalizers can show the choices and parsers
    can map free generation back onto one of them.
    """

    premise: str = ""
    hypothesis: str = ""
    label: str = ""
    label_space: tuple[str, ...] = field(default=())
    task_type: ClassVar[str] = "nli"

    def structure(self) -> str:
        return self.label


@dataclass(frozen=True)
class SummarizationRecord(Record):
    """Summarization: ``source`` text and a reference ``summary``."""

    source: str = ""
    summary: str = ""
    task_type: ClassVar[str] = "summarization"

    def structure(self) -> str:
        return self.summary


RECORD_TYPES: dict[str, type[Record]] = {
    cls.task_type: cls for cls in (NerRecord, RelationRecord, QaRecord, NliRecord, SummarizationRecord)
}
