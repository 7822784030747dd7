"""``long_inputs``: a task's long documents served as overlapping windows, or as their head and tail.

Chosen per task in the task-set YAML (``metaprompt.tasks.taskset``); tasks without it are served as
before (the encoder's middle cut, ``data/encoding.py``)::

    long_inputs: {mode: window, stride: 128}               # qa, ner, re
    long_inputs: {mode: window, window: 384, stride: 128}
    long_inputs: {mode: head_tail, head: 384, tail: 128}   # summarization

``window``: a record whose long field (the QA context, the NER/RE text; ``data/spans.py``) is longer
than one window becomes windows of ``window`` tokens of that field, each sharing ``stride`` tokens
with the next (HF's ``doc_stride``); the last window ends with the field. Without ``window`` a record's
windows fill what ``max_length`` leaves: minus the chat template, the rest of the prompt, the record's
target (at most half of what is left: an NER window lists only its own entities) and 2 tokens (the
field may tokenise a token longer inside the prompt). A window keeps the field's text between token
boundaries (a substring), with its entities' offsets shifted, the entities inside it (NER), the
relations whose head and tail occur in it (RE), the answers that occur in it (QA; all of them when
none does); its uid is ``<uid>#w<k>``.

* train: the windows that hold gold (an answer, an entity, a relation); a record none of whose
  windows does (no entities, an abstractive answer) keeps its first window;
* validation/test: every window; evaluation merges the windows' predictions into one per record and
  scores it against the whole record (``metaprompt.evaluation.windows``).

Label-like records (multiple choice, yes/no/maybe, candidate pairs) are served whole.

``head_tail``: a summary's source longer than ``head + tail`` tokens keeps its first ``head`` and last
``tail`` tokens with ``marker`` (default ``"\\n[...]\\n"``) between them; the summary is unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.spans import gold_items, long_field, with_field
from metaprompt.evaluation.windows import WindowOf, window_uid
from metaprompt.tasks.records import QaRecord, Record, RelationRecord, SummarizationRecord
from metaprompt.tasks.verbalizers.base import Verbalizer

LONG_INPUTS_VERSION = "1"  # bump when windows or head+tail cuts change: hashed into the data fingerprint
HEAD_TAIL_MARKER = "\n[...]\n"
MARGIN = 2


@dataclass
class Served:
    """A split's records as a ``long_inputs`` task serves them.

    Attributes:
        records: The rows, in record order (a windowed record's windows in place of it).
        windows: Window uid -> where it comes from.
        elided: Record uid -> source tokens a ``head_tail`` cut left out.
    """

    records: list[Record]
    windows: dict[str, WindowOf] = field(default_factory=dict)
    elided: dict[str, int] = field(default_factory=dict)


def window_spans(offsets: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Character ranges of windows of ``size`` tokens, consecutive ones sharing ``overlap`` tokens (at
    least; the last window ends with the text).

    Args:
        offsets: ``(start, end)`` characters of each token of the text.
        size: Tokens per window (> ``overlap``).
        overlap: Tokens each window shares with the next.
    """
    if size <= overlap:
        raise ValueError(f"window_spans: a window of {size} tokens cannot overlap the next by {overlap}")
    n = len(offsets)
    starts = list(range(0, max(n - size, 0), size - overlap)) + [max(n - size, 0)]
    return [(offsets[s][0], offsets[min(s + size, n) - 1][1]) for s in starts]


def slice_record(record: Record, start: int, end: int, uid: str) -> Record:
    """The window ``[start, end)`` (characters of the long field) of ``record`` as a record of its own."""
    text = getattr(record, long_field(record))[start:end]
    changes = {"uid": uid, "origin": f"{record.origin} (window: characters {start}-{end})"}
    if isinstance(record, QaRecord):
        return with_field(
            record, text, answers=tuple(a for a in record.answers if a in text) or record.answers, **changes
        )
    entities = tuple(
        dataclasses.replace(e, start=e.start - start, end=e.end - start) if e.start >= 0 else e
        for e in record.entities
        if (start <= e.start and e.end <= end) or (e.start < 0 and e.text in text)
    )
    if isinstance(record, RelationRecord):
        changes["relations"] = tuple(r for r in record.relations if r.head in text and r.tail in text)
    return with_field(record, text, entities=entities, **changes)


def _window_sizes(records: list[Record], verbalizer: Verbalizer, encoder: PromptEncoder) -> list[int]:
    """Per record, the field tokens that fill the budget (see the module docstring)."""
    tok = lambda texts: encoder.tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    rest = tok([verbalizer.prompt(with_field(r, " ")) for r in records])
    targets = tok([verbalizer.target(r) for r in records])
    overhead = len(encoder.prefix_ids) + len(encoder.suffix_ids) + len(encoder.end_ids) + MARGIN
    sizes = []
    for prompt, target in zip(rest, targets):
        free = encoder.max_length - overhead - len(prompt)
        sizes.append(free - min(len(target), free // 2))
    return sizes


def windows(
    task: str,
    split: str,
    records: list[Record],
    verbalizer: Verbalizer,
    encoder: PromptEncoder,
    stride: int,
    size: int | None,
) -> Served:
    """``records`` as windows (see the module docstring); records that fit one window stay whole."""
    long = [r for r in records if long_field(r) is not None]
    if not long:  # (the tokenizer fails on an empty batch)
        return Served(list(records))
    fields = [getattr(r, long_field(r)) for r in long]
    offsets = encoder.tokenizer(fields, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    sizes = [size] * len(long) if size else _window_sizes(long, verbalizer, encoder)
    split_of: dict[str, list[tuple[WindowOf, Record]]] = {}
    for record, offs, n in zip(long, offsets, sizes):
        if len(offs) <= n:
            continue
        if n <= stride:
            raise ValueError(
                f"task {task!r}: record {record.uid!r} ({record.origin}): a window would hold {n} tokens of its "
                f"{long_field(record)}, not more than long_inputs.stride ({stride}); lower stride, set "
                "long_inputs.window, or raise max_length"
            )
        pieces = []
        for k, (a, b) in enumerate(window_spans(offs, n, stride)):
            uid = window_uid(record.uid, k)
            pieces.append((WindowOf(record.uid, k, a), slice_record(record, a, b, uid)))
        if split == "train":  # only windows the target is about; the first when none is
            pieces = [p for p in pieces if gold_items(p[1])[1]] or pieces[:1]
        split_of[record.uid] = pieces
    served = Served([])
    for record in records:
        for where, piece in split_of.get(record.uid, [(None, record)]):
            served.records.append(piece)
            if where is not None:
                served.windows[piece.uid] = where
    return served


def head_tail(records: list[Record], encoder: PromptEncoder, head: int, tail: int, marker: str) -> Served:
    """Each summary source longer than ``head + tail`` tokens cut to its first ``head`` and last ``tail``."""
    if not records:
        return Served([])
    sources = [r.source if isinstance(r, SummarizationRecord) else "" for r in records]
    offsets = encoder.tokenizer(sources, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    served = Served([])
    for record, source, offs in zip(records, sources, offsets):
        n = len(offs)
        if n <= head + tail:
            served.records.append(record)
            continue
        a = offs[head - 1][1] if head else 0
        b = offs[n - tail][0] if tail else len(source)
        served.records.append(dataclasses.replace(record, source=source[:a] + marker + source[b:]))
        served.elided[record.uid] = n - head - tail
    return served


def serve(
    task: str, split: str, records: list[Record], long_inputs: dict, verbalizer: Verbalizer, encoder: PromptEncoder
) -> Served:
    """``records`` as the task's ``long_inputs`` declaration serves them (validated by ``TaskSpec``)."""
    if long_inputs["mode"] == "window":
        return windows(task, split, records, verbalizer, encoder, long_inputs["stride"], long_inputs.get("window"))
    marker = long_inputs.get("marker", HEAD_TAIL_MARKER)
    return head_tail(records, encoder, long_inputs["head"], long_inputs["tail"], marker)
