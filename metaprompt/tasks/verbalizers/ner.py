"""NER verbalizer: one ``mention | Type`` line per entity, ``None`` when there are none.

Target format (entities in order of appearance, i.e. by ``(start, end)``, unknown offsets last;
duplicates kept, since the structure is a multiset)::

    aspirin | Chemical
    myocardial infarction | Disease

Mentions are escaped with :func:`~metaprompt.tasks.verbalizers.base.escape_field` (``\\``, ``|``,
newline and carriage return become ``\\\\``, ``\\|``, ``\\n``, ``\\r``), so any mention round-trips.
Types are written as given.

Parsing: each non-blank line is split on unescaped ``|``; the last field is the type (mapped onto
the label set by case/``_``/``-``/space-insensitive match; an unknown type is kept verbatim so it
still counts as a false positive), the fields before it are the mention (joined with `` | `` if the
model forgot to escape a pipe). Lines without a separator (``None``, chatter) and lines with an
empty mention or type are ignored. The result is the sorted tuple of ``(mention, type)`` pairs.
Mentions are compared after stripping surrounding whitespace, so gold mentions are expected to be
stripped (readers guarantee ``text == record.text[start:end]``; see ``roundtrip_ok``).
"""

from __future__ import annotations

from metaprompt.tasks.records import NerRecord
from metaprompt.tasks.verbalizers.base import (
    NONE_WORD,
    Verbalizer,
    escape_field,
    item_lines,
    match_label,
    split_fields,
)


class NerVerbalizer(Verbalizer):
    """Named-entity recognition as ``mention | Type`` lines."""

    task_type = "ner"
    default_instruction = (
        "Extract all named entities from the text. Write one entity per line as 'mention | type', "
        f"in order of appearance. Write '{NONE_WORD}' if there are no entities."
    )

    def prompt(self, record: NerRecord) -> str:
        self._check(record)
        types = f"Entity types: {', '.join(self.labels)}" if self.labels else None
        return self._join(self.instruction, types, f"Text: {record.text}")

    def target(self, record: NerRecord) -> str:
        self._check(record)
        # Stable sort; entities with unknown offsets (-1) go last, in record order.
        ents = sorted(record.entities, key=lambda e: (e.start < 0, e.start, e.end))
        if not ents:
            return NONE_WORD
        return "\n".join(f"{escape_field(e.text)} | {e.label}" for e in ents)

    def parse(self, text: str, record: NerRecord | None = None) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        for line in item_lines(text):
            fields = split_fields(line)
            if len(fields) < 2:
                continue
            mention, label = " | ".join(fields[:-1]), match_label(fields[-1], self.labels)
            if mention and label:
                out.append((mention, label))
        return tuple(sorted(out))
