"""The verbalizer contract and the field escaping shared by the line-based formats (NER, RE).

A verbalizer turns a record into an instruction-style ``(prompt, target)`` text pair and turns
generated text back into the record's ``structure()``. Prompts are plain text (the data module wraps
them in the backbone's chat template) and never contain the answer. Parsers never raise on model
output: garbage yields an empty (or partial) structure.

Field escaping (NER mentions, RE heads/tails): the line formats use ``|`` between fields and a newline
between items, so a field writes ``\\`` as ``\\\\``, ``|`` as ``\\|``, a newline as ``\\n`` and a carriage
return as ``\\r``. ``unescape_field(escape_field(s)) == s`` for every string; unescaping is lenient (a
backslash before any other character is kept as is), so untrained-for output still parses.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from metaprompt.tasks.records import Record

_ESCAPES = {"\\": "\\\\", "|": "\\|", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "|": "|", "n": "\n", "r": "\r"}
_ESCAPE_RE = re.compile(r"[\\|\n\r]")
_PREFIX_RE = re.compile(
    r"^\s*(?:the\s+)?(?:correct\s+)?(?:answer|option|label)\b\s*(?:is\b)?\s*[:\-]?\s*", re.IGNORECASE
)
NONE_WORD = "None"
"""Target of a record with no entities / no relations."""


def escape_field(s: str) -> str:
    """Escape ``s`` so that it holds no unescaped ``|``, no newline and no carriage return."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], s)


def unescape_field(s: str) -> str:
    """Invert :func:`escape_field`; unknown escapes and a trailing backslash are kept literally."""
    if "\\" not in s:
        return s
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in _UNESCAPES:
            out.append(_UNESCAPES[s[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_fields(line: str) -> list[str]:
    """Split one line on unescaped ``|``; fields are stripped of surrounding whitespace, then unescaped."""
    fields: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            cur.append(line[i : i + 2])  # keep the escape pair; unescaped after the split
            i += 2
            continue
        if c == "|":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    fields.append("".join(cur))
    return [unescape_field(f.strip()) for f in fields]


def item_lines(text: str) -> list[str]:
    """The non-blank lines of a generation (``\\r\\n`` and lone ``\\r`` count as line breaks)."""
    if not isinstance(text, str):
        return []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [ln for ln in lines if ln.strip()]


def norm_key(s: str) -> str:
    """A matching key robust to case, Unicode width forms, ``_``/``-`` vs space and edge punctuation."""
    s = unicodedata.normalize("NFKC", s).casefold().replace("_", " ").replace("-", " ")
    s = " ".join(s.split())
    return s.strip(" .,;:!?\"'`()[]{}*")


def match_label(raw: str, labels: Sequence[str]) -> str:
    """Map ``raw`` onto ``labels`` by :func:`norm_key`; unknown (or no label set) -> ``raw`` unchanged."""
    if not labels:
        return raw
    key = norm_key(raw)
    for label in labels:
        if norm_key(label) == key:
            return label
    return raw


def strip_answer_prefix(s: str) -> str:
    """``s`` without a leading ``Answer:`` / ``The answer is`` / ``Option`` / ``Label:``, stripped."""
    return _PREFIX_RE.sub("", s, count=1).strip()


def match_choice(text: str, choices: Sequence[str]) -> str:
    """The choice ``text`` names, by :func:`norm_key`; ``""`` when none does.

    Tried in order: equality; the longest choice the output starts with as whole words (``Yes, because
    ...``); the only choice that starts with the output, if the output has >= 3 characters
    (``entail`` -> ``Entailment``).
    """
    if not isinstance(text, str):
        return ""
    key = norm_key(text)
    if not key:
        return ""
    keys = [(norm_key(c), c) for c in choices]
    for k, c in keys:
        if key == k:
            return c
    hits = [(len(k), c) for k, c in keys if k and re.match(re.escape(k) + r"(?!\w)", key)]
    if hits:
        return max(hits, key=lambda h: h[0])[1]
    if len(key) >= 3:
        partial = [c for k, c in keys if k.startswith(key)]
        if len(partial) == 1:
            return partial[0]
    return ""


class Verbalizer(ABC):
    """Casts records of one task type to ``(prompt, target)`` text and parses generations back.

    Args:
        labels: The dataset's label set: entity types (NER), relation types (RE), NLI labels (NLI);
            ignored by QA and summarization. Shown in the prompt in the given order.
        instruction: Replaces the default instruction sentence (the label list, input and answer cue
            are still added).
    """

    task_type: ClassVar[str] = ""
    default_instruction: ClassVar[str] = ""
    cue: ClassVar[str] = "Answer:"

    def __init__(self, labels: Iterable[str] = (), instruction: str | None = None):
        self.labels: tuple[str, ...] = tuple(dict.fromkeys(labels))  # dedupe, keep order
        self.instruction = instruction if instruction is not None else self.default_instruction

    def _check(self, record: Record) -> None:
        if record.task_type != self.task_type:
            raise TypeError(f"{type(self).__name__} needs a {self.task_type!r} record, got {record.task_type!r}")

    def _join(self, *parts: str | None) -> str:
        """Blocks of the prompt separated by blank lines, ending with the answer cue."""
        return "\n\n".join(p for p in (*parts, self.cue) if p)

    @abstractmethod
    def prompt(self, record: Any) -> str:
        """The instruction + input text for ``record`` (never containing its answer)."""

    @abstractmethod
    def target(self, record: Any) -> str:
        """The text the model should generate for ``record``."""

    @abstractmethod
    def parse(self, text: str, record: Any = None) -> Any:
        """The structure generated ``text`` denotes (``record`` supplies options/label space)."""

    def roundtrip_ok(self, record: Any) -> bool:
        """Whether parsing the gold target gives back the record's structure exactly."""
        return self.parse(self.target(record), record) == record.structure()
