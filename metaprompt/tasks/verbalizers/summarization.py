"""Summarization verbalizer: the target is the reference summary itself.

Target format: ``record.summary`` verbatim, e.g.::

    What are the treatments for type 2 diabetes?

The prompt is the instruction, ``Text: <source>`` and the cue ``Summary:``. Parsing returns the output
stripped of surrounding whitespace (ROUGE ignores it), so gold summaries are expected to be stripped.
"""

from __future__ import annotations

from metaprompt.tasks.records import SummarizationRecord
from metaprompt.tasks.verbalizers.base import Verbalizer


class SummarizationVerbalizer(Verbalizer):
    """Abstractive summarization."""

    task_type = "summarization"
    default_instruction = "Summarize the following text."
    cue = "Summary:"

    def prompt(self, record: SummarizationRecord) -> str:
        self._check(record)
        return self._join(self.instruction, f"Text: {record.source}")

    def target(self, record: SummarizationRecord) -> str:
        self._check(record)
        return record.summary

    def parse(self, text: str, record: SummarizationRecord | None = None) -> str:
        return text.strip() if isinstance(text, str) else ""
