"""Where a record's gold lies in its long input: what a cut (max-length truncation, a window) can lose.

Span tasks have one *long field* that carries their gold as character spans:

* extractive QA (a free-text or unlabelled answer found verbatim in ``context``): the field is the
  context; the one gold item is "an answer", kept while any occurrence of any gold answer is kept;
* NER: ``text``; one item per entity with known offsets, kept while its span is kept;
* open RE: ``text``; one item per relation (for a candidate-pair record, its candidate) whose head
  and tail both occur in the text, kept while some occurrence of the head *and* one of the tail are kept.

Label-like records (NLI, yes/no/maybe, multiple choice, and candidate pairs scored by ranking; see
``evaluation.evaluator.label_like``) have no such field for windowing, but candidate pairs still
count their pair's mentions as gold for the truncation report. Summaries have no gold in the input.

An item is a list of *requirements*, each a list of alternative ``(start, end)`` character ranges of
the long field: the item is kept when every requirement has at least one range kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from metaprompt.tasks.records import NerRecord, QaRecord, Record, RelationRecord

Item = list[list[tuple[int, int]]]


def occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    """Every (possibly overlapping) ``(start, end)`` of ``needle`` in ``text``; none for an empty needle."""
    out, i = [], text.find(needle) if needle else -1
    while i >= 0:
        out.append((i, i + len(needle)))
        i = text.find(needle, i + 1)
    return out


def extractive(record: Record) -> bool:
    """A QA record whose context holds one of its gold answers verbatim (and not a label answer)."""
    return (
        isinstance(record, QaRecord)
        and record.kind == "free_text"
        and bool(record.context)
        and any(occurrences(record.context, a) for a in record.answers)
    )


def long_field(record: Record) -> str | None:
    """The name of the record's field that windows split (``context`` / ``text``), or None."""
    if isinstance(record, QaRecord):
        return "context" if record.kind == "free_text" and record.context else None
    if isinstance(record, RelationRecord):
        return "text" if record.candidate is None else None
    if isinstance(record, NerRecord):
        return "text"
    return None


def with_field(record: Record, value: str, **changes) -> Record:
    """A copy of ``record`` whose long field is ``value`` (other fields as given in ``changes``)."""
    return dataclasses.replace(record, **{long_field(record): value}, **changes)


def gold_items(record: Record) -> tuple[str, list[Item]]:
    """The text holding the record's gold and the gold items in it (see the module docstring)."""
    if isinstance(record, QaRecord):
        if not extractive(record):
            return "", []
        return record.context, [[[span for a in record.answers for span in occurrences(record.context, a)]]]
    if isinstance(record, NerRecord):
        return record.text, [[[(e.start, e.end)]] for e in record.entities if 0 <= e.start < e.end]
    if isinstance(record, RelationRecord):
        triples = (record.candidate,) if record.candidate is not None else record.relations
        items = [[occurrences(record.text, t.head), occurrences(record.text, t.tail)] for t in triples]
        return record.text, [item for item in items if all(item)]
    return "", []


def kept(item: Item, keep: Callable[[int, int], bool]) -> bool:
    """Whether ``item`` survives a cut that keeps the ranges for which ``keep(start, end)`` is true."""
    return all(any(keep(a, b) for a, b in requirement) for requirement in item)
