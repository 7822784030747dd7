"""Verbalizers: records <-> instruction-style ``(prompt, target)`` text, one module per task type.

``get_verbalizer(task_type, labels, instruction)`` builds the verbalizer of a task type;
``label_set(records)`` derives the labels a dataset's verbalizer needs from its records when no list
is given (entity types for NER, relation types for RE, the union of label spaces for NLI).
"""

from __future__ import annotations

from collections.abc import Iterable

from metaprompt.tasks.records import NerRecord, NliRecord, Record, RelationRecord
from metaprompt.tasks.verbalizers.base import Verbalizer, escape_field, unescape_field
from metaprompt.tasks.verbalizers.ner import NerVerbalizer
from metaprompt.tasks.verbalizers.nli import NliVerbalizer
from metaprompt.tasks.verbalizers.qa import QaVerbalizer
from metaprompt.tasks.verbalizers.relation import RelationVerbalizer
from metaprompt.tasks.verbalizers.summarization import SummarizationVerbalizer

VERBALIZERS: dict[str, type[Verbalizer]] = {
    cls.task_type: cls
    for cls in (NerVerbalizer, RelationVerbalizer, QaVerbalizer, NliVerbalizer, SummarizationVerbalizer)
}


def get_verbalizer(task_type: str, labels: Iterable[str] = (), instruction: str | None = None) -> Verbalizer:
    """The verbalizer of ``task_type`` (``ner``, ``re``, ``qa``, ``nli``, ``summarization``).

    Args:
        task_type: One of ``metaprompt.tasks.records.TASK_TYPES``.
        labels: The dataset's entity types (NER), relation types (RE) or NLI labels; see :func:`label_set`.
        instruction: Replaces the default instruction sentence.
    """
    if task_type not in VERBALIZERS:
        raise KeyError(f"no verbalizer for task type {task_type!r}; known: {', '.join(VERBALIZERS)}")
    return VERBALIZERS[task_type](labels=labels, instruction=instruction)


def label_set(records: Iterable[Record]) -> tuple[str, ...]:
    """The sorted labels seen in ``records``: entity types (NER), relation types (RE), NLI labels.

    Pass every split's records so that a type absent from train still appears in the prompt. NLI
    records carry their own ``label_space``, which is unioned here; QA and summarization need none.
    """
    seen: set[str] = set()
    for r in records:
        if isinstance(r, NerRecord):
            seen.update(e.label for e in r.entities)
        elif isinstance(r, RelationRecord):
            seen.update(x.relation for x in r.relations)
        elif isinstance(r, NliRecord):
            seen.update(r.label_space or ((r.label,) if r.label else ()))
    return tuple(sorted(seen))


__all__ = [
    "VERBALIZERS",
    "NerVerbalizer",
    "NliVerbalizer",
    "QaVerbalizer",
    "RelationVerbalizer",
    "SummarizationVerbalizer",
    "Verbalizer",
    "escape_field",
    "get_verbalizer",
    "label_set",
    "unescape_field",
]
