"""Prompt/target text -> token ids, in the backbone's chat format, with the max-length policy.

Policy: the *target is never truncated*. When ``prompt + target`` exceeds ``max_length``, tokens are
cut from the middle of the prompt body (the record's input text): the first quarter of the budget
(instruction, start of the input) and the rest from the end (question, options, the ``Answer:`` cue)
are kept. The body keeps at least ``min_prompt_tokens``, so a row whose target alone is longer than
``max_length - min_prompt_tokens`` ends up longer than ``max_length``; such rows are counted as
``over_length`` (and dropped only if asked to), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

_SENTINEL = "\u2063@@METAPROMPT_BODY@@\u2063"


@dataclass(frozen=True)
class Encoded:
    """One tokenised example.

    Attributes:
        prompt_ids: Chat-formatted prompt, ending where generation starts.
        target_ids: Target tokens followed by the end-of-turn token.
        truncated: Number of prompt tokens cut (0 if none).
        over_length: True if the row is longer than ``max_length`` even after truncation.
    """

    prompt_ids: list[int]
    target_ids: list[int]
    truncated: int
    over_length: bool


class PromptEncoder:
    """Encodes (prompt, target) text pairs for one tokenizer.

    Args:
        tokenizer: The backbone's tokenizer.
        max_length: Budget for prompt + target tokens (soft prompt tokens not included).
        min_prompt_tokens: Body tokens always kept, however long the target.
        use_chat_template: Wrap the prompt as a user turn of the tokenizer's chat template (if it
            has one); otherwise the prompt is used as is, followed by a newline.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 1024,
        min_prompt_tokens: int = 64,
        use_chat_template: bool = True,
    ):
        if max_length <= min_prompt_tokens:
            raise ValueError(f"max_length ({max_length}) must exceed min_prompt_tokens ({min_prompt_tokens})")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.min_prompt_tokens = min_prompt_tokens
        if use_chat_template and getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
            )
            prefix, suffix = rendered.split(_SENTINEL)
        else:
            prefix, suffix = "", "\n"
        self.prefix_ids = self._ids(prefix)
        self.suffix_ids = self._ids(suffix)
        # The end-of-turn token ends every target so that generation learns to stop.
        self.end_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, prompt: str, target: str) -> Encoded:
        """Tokenise one example under the max-length policy (see module docstring)."""
        return self.encode_batch([prompt], [target])[0]

    def encode_batch(self, prompts: list[str], targets: list[str]) -> list[Encoded]:
        """Tokenise many examples at once (one fast-tokenizer call per side)."""
        tok = lambda texts: self.tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
        return [self._fit(b, t + self.end_ids) for b, t in zip(tok(prompts), tok(targets))]

    def cut_range(self, n_body: int, n_target: int) -> tuple[int, int]:
        """The body tokens ``[start, stop)`` the max-length policy cuts (``start == stop``: none).

        Args:
            n_body: Tokens of the prompt text (before the chat template).
            n_target: Target tokens, end token included.
        """
        overhead = len(self.prefix_ids) + len(self.suffix_ids)
        budget = max(self.max_length - overhead - n_target, self.min_prompt_tokens)
        if n_body <= budget:
            return 0, 0
        head = budget // 4
        return head, n_body - (budget - head)

    def cut_chars(self, prompts: list[str], targets: list[str]) -> list[tuple[int, int] | None]:
        """Per example, the characters ``[a, b)`` of its prompt text that the policy cuts (None: none),
        so that a caller can tell which parts of the input (an answer, an entity) the model never sees."""
        if not prompts:  # the tokenizer fails on an empty batch
            return []
        bodies = self.tokenizer(prompts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        tok = lambda texts: self.tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
        out: list[tuple[int, int] | None] = []
        for offsets, target in zip(bodies, tok(targets)):
            start, stop = self.cut_range(len(offsets), len(target) + len(self.end_ids))
            out.append((offsets[start][0], offsets[stop - 1][1]) if stop > start else None)
        return out

    def _fit(self, body: list[int], target_ids: list[int]) -> Encoded:
        start, stop = self.cut_range(len(body), len(target_ids))
        if stop > start:
            body = body[:start] + body[stop:]
        prompt_ids = self.prefix_ids + body + self.suffix_ids
        return Encoded(prompt_ids, target_ids, stop - start, len(prompt_ids) + len(target_ids) > self.max_length)
