"""Relation-extraction verbalizer: one ``head | relation | tail`` line per triple, ``None`` when empty.

Target format (unique triples in reading order: by first occurrence of the head in the text, then of
the tail, then relation name; arguments not found in the text go last)::

    cisplatin | CID | nephrotoxicity
    BRCA1 | PPI | BARD1

Heads and tails are escaped with :func:`~metaprompt.tasks.verbalizers.base.escape_field` (``\\``,
``|``, newline, carriage return), so any argument round-trips. Relation names are written as given.

Candidate-pair records (gad, pgr: one row = one entity pair to classify) are asked about their
pair: the prompt names the candidate triple and the answer is ``yes`` (the pair holds it) or ``no``.
A one-token decision, not the triple: ranked by summed log-likelihood, the triple's 14 tokens
(``@GENE$ | associated_with | @DISEASE$`` in SmolLM2's tokenizer) all cost log-probability that the
one-token ``None`` does not pay, so the ranking leans to ``None`` whatever the text says (the first
ladder's teachers answered None to every pair, with the same mean margin on pairs that hold and pairs
that do not; issue 10 note). ``yes`` and ``no`` are one token each. Parsing
such a record: a first word ``yes`` gives the candidate, ``no``/``None`` nothing; anything else is read
as triple lines as below (a model that writes the triple is still understood).

Parsing: each non-blank line is split on unescaped ``|``. Three fields give ``(head, relation, tail)``
with the relation mapped onto the label set (case/``_``/``-``/space-insensitive; unknown names are kept
verbatim). With more than three fields (a model that forgot to escape a pipe) the first inner field
that is a known relation splits head from tail (the extra fields are re-joined with `` | ``); with no
known relation among them the second field is taken. Lines with fewer than three fields (``None``,
chatter) or an empty head/relation/tail are ignored. The result is the sorted tuple of unique triples.
"""

from __future__ import annotations

from metaprompt.tasks.records import RelationRecord
from metaprompt.tasks.verbalizers.base import (
    NONE_WORD,
    Verbalizer,
    escape_field,
    item_lines,
    match_label,
    norm_key,
    split_fields,
)

YES, NO = "yes", "no"
"""Answers of a candidate-pair record: the pair holds the candidate relation, or not."""


class RelationVerbalizer(Verbalizer):
    """Relation extraction as ``head | relation | tail`` lines."""

    task_type = "re"
    default_instruction = (
        "Extract all relations between entities in the text. Write one relation per line as "
        f"'head | relation | tail'. Write '{NONE_WORD}' if there are no relations."
    )

    candidate_instruction = "Does the text state the relation below between the two entities? Answer 'yes' or 'no'."

    def prompt(self, record: RelationRecord) -> str:
        self._check(record)
        types = f"Relation types: {', '.join(self.labels)}" if self.labels else None
        if record.candidate is None:
            return self._join(self.instruction, types, f"Text: {record.text}")
        # A candidate-pair row asks about one pair: without naming it the answer is a guess (a PGR
        # sentence often mentions several genes and phenotypes, and its label is about one pair).
        c = record.candidate
        custom = self.instruction != self.default_instruction  # a user's instruction still wins
        pair = f"Candidate: {escape_field(c.head)} | {c.relation} | {escape_field(c.tail)}"
        return self._join(self.instruction if custom else self.candidate_instruction, f"Text: {record.text}", pair)

    def target(self, record: RelationRecord) -> str:
        self._check(record)
        triples = record.structure()
        if record.candidate is not None:
            c = record.candidate
            return YES if (c.head, c.relation, c.tail) in triples else NO
        if not triples:
            return NONE_WORD

        def pos(s: str) -> int:
            i = record.text.find(s) if s else -1
            return i if i >= 0 else len(record.text)

        ordered = sorted(triples, key=lambda t: (pos(t[0]), pos(t[2]), t[1], t[0], t[2]))
        return "\n".join(f"{escape_field(h)} | {r} | {escape_field(t)}" for h, r, t in ordered)

    def _split(self, fields: list[str]) -> tuple[str, str, str]:
        """Head, relation, tail from three or more fields (see the module docstring)."""
        keys = {norm_key(lab) for lab in self.labels}
        i = next((j for j in range(1, len(fields) - 1) if norm_key(fields[j]) in keys), 1)
        head, tail = " | ".join(fields[:i]), " | ".join(fields[i + 1 :])
        return head, match_label(fields[i], self.labels), tail

    def parse(self, text: str, record: RelationRecord | None = None) -> tuple[tuple[str, str, str], ...]:
        if record is not None and record.candidate is not None:
            lines = item_lines(text)
            words = lines[0].strip().split(maxsplit=1) if lines else []
            first = words[0].strip(".,:;!'\"").lower() if words else ""
            if first == YES:
                c = record.candidate
                return ((c.head, c.relation, c.tail),)  # as the gold triple is written
            if first in (NO, NONE_WORD.lower()):
                return ()
        out: set[tuple[str, str, str]] = set()
        for line in item_lines(text):
            fields = split_fields(line)
            if len(fields) < 3:
                continue
            triple = self._split(fields)
            if all(triple):
                out.add(triple)
        return tuple(sorted(out))
