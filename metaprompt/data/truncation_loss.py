"""How much gold the max-length cut removes: answers, entities and relation mentions no longer in the
prompt, and how much of a summary's source is left out.

A truncated prompt is data loss when the cut removes what the target is about: an extractive answer
that is no longer in the kept context, an entity the target lists but the model cannot see. The
encoder (``PromptEncoder``) says which characters of each prompt it cut; ``data/spans.py`` says where
each record's gold lies; this module counts the rows whose gold is cut. ``MultitaskDataModule.setup``
reports it per task and split (and warns once per affected task); ``metaprompt data stats`` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.spans import gold_items, kept
from metaprompt.tasks.records import Record
from metaprompt.tasks.verbalizers.base import Verbalizer


@dataclass(frozen=True)
class TruncationLoss:
    """The loss of one task's split.

    Attributes:
        examples: Rows checked.
        gold_rows: Rows with gold spans in their input (span tasks).
        gold_lost: Of those, rows that lose at least one gold item to the cut.
        items: Gold items (answers, entities, relations) in all rows.
        items_lost: Gold items cut away.
        source_cut: Rows whose prompt the encoder cut (a ``head_tail`` cut made before encoding is
            reported apart: it is declared, not a loss found afterwards).
        cut_tokens: Prompt tokens cut, over all rows.
    """

    examples: int = 0
    gold_rows: int = 0
    gold_lost: int = 0
    items: int = 0
    items_lost: int = 0
    source_cut: int = 0
    cut_tokens: int = 0

    @property
    def mean_cut_tokens(self) -> float:
        """Tokens left out per cut row."""
        return self.cut_tokens / self.source_cut if self.source_cut else 0.0

    def report(self, task_type: str) -> dict[str, int]:
        """The counts a data module's ``report`` keeps for a task of ``task_type``."""
        if task_type == "summarization":
            return {"source_cut": self.source_cut, "cut_tokens": self.cut_tokens}
        return {"gold_rows": self.gold_rows, "gold_lost": self.gold_lost} if self.gold_rows else {}

    def describe(self, task_type: str) -> str:
        """``"61/593"`` (rows losing gold / rows) or, for summaries, ``"19/64 (-312 tok)"``; ``""`` if none."""
        if task_type == "summarization":
            cut = f"{self.source_cut}/{self.examples}"
            return f"{cut} (-{self.mean_cut_tokens:.0f} tok)" if self.source_cut else cut
        return f"{self.gold_lost}/{self.examples}" if self.gold_rows else ""


def truncation_loss(
    records: Sequence[Record],
    verbalizer: Verbalizer,
    encoder: PromptEncoder,
    truncated: Sequence[int],
) -> TruncationLoss:
    """Count the gold that the encoder's cut removes from ``records``.

    Args:
        records: The rows as served (windows and head+tail cuts included).
        verbalizer: The task's verbalizer (its prompts are what the encoder cut).
        encoder: The encoder that cut them.
        truncated: Per row, the prompt tokens the encoder cut (``Encoded.truncated``).
    """
    gold = [gold_items(r) for r in records]
    rows = [i for i, n in enumerate(truncated) if n > 0 and gold[i][1]]  # only cut rows can lose gold
    prompts = [verbalizer.prompt(records[i]) for i in rows]
    cuts = encoder.cut_chars(prompts, [verbalizer.target(records[i]) for i in rows])
    lost_rows = lost_items = 0
    for (text, items), prompt, cut in zip((gold[i] for i in rows), prompts, cuts):
        at = prompt.find(text)  # where the long field sits in the prompt
        if cut is None or at < 0:
            continue
        first, last = cut[0] - at, cut[1] - at  # the cut in the long field's characters

        def outside(start: int, end: int, first: int = first, last: int = last) -> bool:
            return end <= first or start >= last

        lost = sum(not kept(item, outside) for item in items)
        lost_rows += lost > 0
        lost_items += lost
    return TruncationLoss(
        examples=len(records),
        gold_rows=sum(bool(items) for _, items in gold),
        gold_lost=lost_rows,
        items=sum(len(items) for _, items in gold),
        items_lost=lost_items,
        source_cut=sum(n > 0 for n in truncated),
        cut_tokens=sum(truncated),
    )


def warning_line(
    task: str, task_type: str, max_length: int, losses: Mapping[str, TruncationLoss], declared: bool = False
) -> str | None:
    """One line naming how much ``task`` loses per split, or None when it loses nothing (``declared``: the
    task has a ``long_inputs`` declaration, whose rows still do not fit)."""
    if task_type == "summarization":
        hit = {s: v for s, v in losses.items() if v.source_cut}
        what = "the source of"
        fix = "long_inputs: {mode: head_tail, head: H, tail: T} in the task set keeps its start and end"
    else:
        hit = {s: v for s, v in losses.items() if v.gold_lost}
        what = "gold spans (answers, entities, relation mentions) out of"
        fix = "long_inputs: {mode: window, stride: N} in the task set serves windows instead"
    if not hit:
        return None
    if declared:
        fix = "its long_inputs rows still exceed the budget: lower head/tail/window, or raise max_length"
    counts = ", ".join(f"{v.describe(task_type)} {split}" for split, v in hit.items())
    return f"[metaprompt] {task}: truncation at max_length={max_length} cuts {what} {counts} rows ({fix})"
