"""NLI / claim-verification verbalizer: the target is the label word itself.

Target format: the gold label exactly as in the record's ``label_space``, e.g.::

    Entailment

The prompt shows the instruction, the allowed labels (``record.label_space``, or the constructor's
labels when the record has none), the premise, the hypothesis and the cue ``Answer:``.

Parsing maps the output onto the label space with
:func:`~metaprompt.tasks.verbalizers.base.match_choice` (case, spacing, ``_``/``-`` and edge
punctuation ignored; a label followed by more words, e.g. ``Entailment. The premise ...``, counts; a
unique >= 3-character label prefix such as ``entail`` counts), also after an ``Answer:`` prefix.
Anything else, and any output when no label space is known, gives ``""``.
"""

from __future__ import annotations

from metaprompt.tasks.records import NliRecord
from metaprompt.tasks.verbalizers.base import Verbalizer, match_choice, strip_answer_prefix


class NliVerbalizer(Verbalizer):
    """Natural-language inference as a single label word."""

    task_type = "nli"
    default_instruction = "Decide how the hypothesis relates to the premise. Reply with one label."

    def label_space(self, record: NliRecord | None) -> tuple[str, ...]:
        """The record's own label space, else the constructor's labels."""
        if record is not None and record.label_space:
            return tuple(record.label_space)
        return self.labels

    def prompt(self, record: NliRecord) -> str:
        self._check(record)
        labels = self.label_space(record)
        listing = f"Labels: {', '.join(labels)}" if labels else None
        return self._join(self.instruction, listing, f"Premise: {record.premise}", f"Hypothesis: {record.hypothesis}")

    def target(self, record: NliRecord) -> str:
        self._check(record)
        return record.label

    def parse(self, text: str, record: NliRecord | None = None) -> str:
        if not isinstance(text, str):
            return ""
        labels = self.label_space(record)
        return match_choice(text, labels) or match_choice(strip_answer_prefix(text), labels)
