"""``EvalArgs``: how a stage evaluates (a stage module's ``evaluation`` argument).

One validated dataclass (as litgpt's ``EvalArgs``) instead of five flat module arguments; a YAML sets it
as ``model.init_args.evaluation`` and the command line as ``--model.init_args.evaluation.label_scoring``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metaprompt.groups import ArgGroup
from metaprompt.tasks.records import TASK_TYPES

# Greedy decoding budget per task type (tokens); NER/RE lists and summaries are the long ones.
DEFAULT_MAX_NEW_TOKENS = {"ner": 128, "re": 128, "qa": 96, "nli": 8, "summarization": 128}
LABEL_SCORINGS = ("ranked", "generated")


@dataclass(frozen=True)
class EvalArgs(ArgGroup):
    """Validation/test scoring settings.

    Attributes:
        max_new_tokens: Greedy decoding budget per task type, over ``DEFAULT_MAX_NEW_TOKENS``.
        stop_strings: Per task type, strings that end a generated answer besides the end-of-answer token
            (e.g. ``{"summarization": ["\\n\\n"]}``): a row stops decoding once its text (special tokens
            skipped) contains one, and its text is cut before it (``metaprompt.forward.decode``).
        generate: Decode/rank and score in validation and test (False: the loss only, e.g. a sweep).
        log_predictions: Rows per task kept in the prediction table (W&B/CSV logs).
        label_scoring: How label-like answers (NLI labels, yes/no/maybe, multiple choice, a candidate
            pair's relation vs none) are scored: ``"ranked"`` picks the allowed answer with the highest
            log-likelihood (``metaprompt.evaluation.ranking``; each context encoded once per example),
            ``"generated"`` parses the greedy generation. NER, open RE, free-text QA and summarization
            are always generated.
    """

    name = "evaluation"

    max_new_tokens: dict[str, int] = field(default_factory=dict)
    stop_strings: dict[str, list[str]] = field(default_factory=dict)
    generate: bool = True
    log_predictions: int = 8
    label_scoring: str = "ranked"

    def __post_init__(self):
        if self.label_scoring not in LABEL_SCORINGS:
            raise ValueError(f"evaluation.label_scoring must be one of {LABEL_SCORINGS}, got {self.label_scoring!r}")
        budget = dict(self.max_new_tokens or {})
        bad = {t: n for t, n in budget.items() if t not in TASK_TYPES or not isinstance(n, int) or n < 1}
        if bad:
            raise ValueError(
                f"evaluation.max_new_tokens: expected a positive token count per task type "
                f"({', '.join(TASK_TYPES)}), got {bad}"
            )
        for task_type, strings in (self.stop_strings or {}).items():
            if (
                task_type not in TASK_TYPES
                or isinstance(strings, str)
                or not all(isinstance(x, str) and x for x in strings)
            ):
                raise ValueError(
                    f"evaluation.stop_strings: expected a list of non-empty strings per task type "
                    f"({', '.join(TASK_TYPES)}), got {task_type!r}: {strings!r}"
                )
        if self.log_predictions < 0:
            raise ValueError(f"evaluation.log_predictions must be >= 0, got {self.log_predictions}")
        object.__setattr__(self, "max_new_tokens", budget)
        object.__setattr__(self, "stop_strings", {t: list(s) for t, s in (self.stop_strings or {}).items()})

    def budget(self, task_type: str) -> int:
        """Greedy decoding budget of ``task_type`` (tokens)."""
        return {**DEFAULT_MAX_NEW_TOKENS, **self.max_new_tokens}[task_type]
