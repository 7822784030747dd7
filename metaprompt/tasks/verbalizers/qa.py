"""QA verbalizer, one format per ``QaRecord.kind``.

Target formats::

    multiple_choice   B. Inhibition of cyclooxygenase      (option letter, '. ', option text)
    yes_no_maybe      yes                                    (the answer word)
    free_text         Metformin is first-line therapy ...    (the first gold answer)

The prompt holds an instruction, the context (if any), the question, the options as ``A. ...`` lines
(multiple choice) and the cue ``Answer:``. Options are lettered A-Z, then numbered (27, 28, ...).

Parsing never raises and returns the structure ``answers[0]`` is compared with:

* multiple choice -> one of ``record.options`` verbatim, tried in this order on the whole output, then
  on its first line: the letter+text form; the option text alone; a letter alone or with ``.``/``)``/
  ``:`` (``B``, ``(b)``, ``B) ...``), where text after the letter that names another option wins; an
  option text the output starts with (longest). All comparisons ignore case, spacing, ``_``/``-`` and
  edge punctuation, and an ``Answer:`` / ``The answer is`` prefix. Nothing matches -> ``""``.
* yes/no/maybe -> the choice (``record.options`` or ``yes``/``no``/``maybe``) matched by
  :func:`~metaprompt.tasks.verbalizers.base.match_choice` (``Yes, because ...`` -> ``yes``), also after
  an ``Answer:`` prefix; else ``""``.
* free text -> the output stripped of surrounding whitespace.
"""

from __future__ import annotations

import re
import string

from metaprompt.tasks.records import QaRecord
from metaprompt.tasks.verbalizers.base import Verbalizer, match_choice, norm_key, strip_answer_prefix

YES_NO_MAYBE: tuple[str, ...] = ("yes", "no", "maybe")
_LETTER_RE = re.compile(r"^\(?([A-Za-z]|\d{1,3})\s*(?:[.):]|$)\s*(.*)$", re.DOTALL)


def option_tag(i: int) -> str:
    """``A``..``Z`` for the first 26 options, then the 1-based number."""
    return string.ascii_uppercase[i] if i < 26 else str(i + 1)


class QaVerbalizer(Verbalizer):
    """Question answering (multiple choice, yes/no/maybe, free text)."""

    task_type = "qa"
    default_instruction = "Answer the question."
    _kind_hint = {
        "multiple_choice": "Reply with the letter and the text of the correct option.",
        "yes_no_maybe": "Reply with {choices}.",
        "free_text": "",
    }

    @staticmethod
    def _choices(record: QaRecord) -> tuple[str, ...]:
        return tuple(record.options) if record.options else YES_NO_MAYBE

    def prompt(self, record: QaRecord) -> str:
        self._check(record)
        hint = self._kind_hint.get(record.kind, "")
        if record.kind == "yes_no_maybe":
            words = self._choices(record)
            hint = hint.format(choices=", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1])
        head = f"{self.instruction} {hint}".strip()
        context = f"Context: {record.context}" if record.context else None
        options = None
        if record.kind == "multiple_choice" and record.options:
            options = "Options:\n" + "\n".join(f"{option_tag(i)}. {o}" for i, o in enumerate(record.options))
        return self._join(head, context, f"Question: {record.question}", options)

    def target(self, record: QaRecord) -> str:
        self._check(record)
        answer = record.structure()
        if record.kind == "multiple_choice" and record.options and answer in record.options:
            return f"{option_tag(record.options.index(answer))}. {answer}"
        return answer

    def parse(self, text: str, record: QaRecord | None = None) -> str:
        if not isinstance(text, str):
            return ""
        if record is None or record.kind == "free_text":
            return text.strip()
        if record.kind == "multiple_choice" and record.options:
            return self._parse_choice(text, tuple(record.options))
        return self._parse_word(text, self._choices(record))

    @staticmethod
    def _parse_word(text: str, choices: tuple[str, ...]) -> str:
        return match_choice(text, choices) or match_choice(strip_answer_prefix(text), choices)

    @staticmethod
    def _parse_choice(text: str, options: tuple[str, ...]) -> str:
        tags = [option_tag(i) for i in range(len(options))]
        opt_keys = [norm_key(o) for o in options]
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        candidates = [text.strip()] + ([lines[0].strip()] if len(lines) > 1 else [])
        for raw in candidates:
            for cand in dict.fromkeys((raw, strip_answer_prefix(raw))):
                key = norm_key(cand)
                if not key:
                    continue
                for i, o in enumerate(options):
                    if key == norm_key(f"{tags[i]}. {o}") or key == opt_keys[i]:
                        return o
                m = _LETTER_RE.match(cand.strip())
                if m and m.group(1).upper() in tags:
                    rest = norm_key(m.group(2))
                    if rest in opt_keys:
                        return options[opt_keys.index(rest)]
                    return options[tags.index(m.group(1).upper())]
                hits = [(len(k), i) for i, k in enumerate(opt_keys) if k and key.startswith(k)]
                if hits:
                    return options[max(hits)[1]]
        return ""
