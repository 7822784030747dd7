"""Ranked log-likelihood scoring of label-like answers (NLI labels, yes/no/maybe, multiple choice).

As LM evaluation harnesses do, each allowed answer is scored by the log-probability of its tokens
given ``(soft prompt + prompt)`` and the argmax is the prediction; nothing is generated or parsed.

Candidates are the training targets the record *would* have with each answer: the verbalizer's
``target`` of a copy of the record whose gold answer is that candidate (NLI: each label of the record's
label space; yes/no/maybe: each choice; multiple choice: each option, as ``"B. option text"``;
a candidate-pair relation record (gad, pgr): its candidate triple and ``None``),
tokenised by the data module's :class:`~metaprompt.data.encoding.PromptEncoder` exactly as a training
target (its own tokenizer call, then the end-of-answer token). All candidates of an example share one
prompt, cut for the longest candidate, so the context never depends on which answer is gold. Each
candidate's answer is what the verbalizer's parser returns for its text, so the prediction is what a
perfect generation of that candidate would have been scored as.

Scores per candidate: ``logprob`` (sum of its token log-probs, end token included) and
``logprob_per_byte`` (divided by the UTF-8 bytes of its target text: lm-evaluation-harness's
``acc_norm`` normalisation). The prediction uses the **sum** (``acc``): the most likely complete
answer sequence, what greedy decoding approximates; ties go to the earlier candidate. Both are kept
per example (``Ranked.to_json``).

Pure functions: :func:`build_candidates`, :func:`candidate_batches`, :func:`token_logprobs`,
:func:`rank`, and :func:`score_candidates` chaining them around a model callable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metaprompt.data.collate import IGNORE_INDEX, CausalLMCollator
from metaprompt.data.encoding import PromptEncoder
from metaprompt.evaluation.evaluator import label_like
from metaprompt.tasks.records import NliRecord, QaRecord, Record, RelationRecord
from metaprompt.tasks.verbalizers.base import Verbalizer
from metaprompt.tasks.verbalizers.qa import YES_NO_MAYBE

PRIMARY_SCORE = "logprob"
"""Which per-candidate score picks the prediction (``"logprob"``: sum; see module docstring)."""


@dataclass(frozen=True)
class Candidates:
    """The allowed answers of one example, encoded as training targets.

    Attributes:
        uid: The record's uid.
        prompt_ids: Chat-formatted prompt shared by all candidates (cut for the longest one).
        answers: Per candidate, what the parser returns for its text (a label or option string).
        texts: Per candidate, the target text (``verbalizer.target`` with that answer).
        target_ids: Per candidate, its target token ids ending with the end-of-answer token.
    """

    uid: str
    prompt_ids: list[int]
    answers: tuple[str, ...]
    texts: tuple[str, ...]
    target_ids: tuple[list[int], ...]


@dataclass(frozen=True)
class Ranked:
    """Scores of one example's candidates and the choice.

    Attributes:
        uid: The record's uid.
        answers: As in :class:`Candidates`.
        texts: As in :class:`Candidates`.
        logprob: Per candidate, the sum of its token log-probs.
        n_tokens: Per candidate, its target tokens (end token included).
    """

    uid: str
    answers: tuple[str, ...]
    texts: tuple[str, ...]
    logprob: tuple[float, ...]
    n_tokens: tuple[int, ...]

    @property
    def logprob_per_byte(self) -> tuple[float, ...]:
        return tuple(lp / max(len(t.encode("utf-8")), 1) for lp, t in zip(self.logprob, self.texts))

    def _argmax(self, scores: Sequence[float]) -> int:
        return max(range(len(scores)), key=lambda i: (scores[i], -i))  # ties: the earlier candidate

    @property
    def choice(self) -> int:
        """Index of the predicted candidate (by :data:`PRIMARY_SCORE`)."""
        return self._argmax(self.logprob if PRIMARY_SCORE == "logprob" else self.logprob_per_byte)

    @property
    def choice_per_byte(self) -> int:
        return self._argmax(self.logprob_per_byte)

    @property
    def prediction(self) -> str:
        """The chosen answer string (what the parser returns for the chosen target text)."""
        return self.answers[self.choice]

    @property
    def text(self) -> str:
        """The chosen candidate's target text."""
        return self.texts[self.choice]

    def to_json(self) -> list[dict[str, Any]]:
        """One dict per candidate: answer, text, logprob, logprob_per_byte, n_tokens."""
        return [
            {"answer": a, "text": t, "logprob": lp, "logprob_per_byte": lpb, "n_tokens": n}
            for a, t, lp, lpb, n in zip(self.answers, self.texts, self.logprob, self.logprob_per_byte, self.n_tokens)
        ]


def _alternatives(record: Record, verbalizer: Verbalizer) -> list[Record]:
    """Copies of ``record`` whose gold answer is each allowed answer in turn."""
    if isinstance(record, NliRecord):
        return [dataclasses.replace(record, label=label) for label in verbalizer.label_space(record)]
    if isinstance(record, RelationRecord) and record.candidate is not None:  # the pair's relation, or none
        return [dataclasses.replace(record, relations=(record.candidate,)), dataclasses.replace(record, relations=())]
    if isinstance(record, QaRecord):
        choices = record.options if record.kind == "multiple_choice" else (record.options or YES_NO_MAYBE)
        return [dataclasses.replace(record, answers=(c,)) for c in choices or ()]
    return []


def build_candidates(record: Record, verbalizer: Verbalizer, encoder: PromptEncoder) -> Candidates | None:
    """The candidates of a label-like record, or None when it is not one (see ``label_like``).

    Candidates whose target text repeats an earlier one (duplicate options) are dropped.
    """
    if not label_like(record):
        return None
    texts: dict[str, str] = {}
    for alt in _alternatives(record, verbalizer):
        text = verbalizer.target(alt)
        texts.setdefault(text, verbalizer.parse(text, record))
    if not texts:
        return None
    prompt = verbalizer.prompt(record)
    encoded = encoder.encode_batch([prompt] * len(texts), list(texts))
    # The longest target gets the most-cut prompt; it fits every candidate within max_length.
    shared = max(encoded, key=lambda e: (e.truncated, len(e.target_ids)))
    return Candidates(
        record.uid, list(shared.prompt_ids), tuple(texts.values()), tuple(texts), tuple(e.target_ids for e in encoded)
    )


def candidate_batches(
    candidates: Sequence[Candidates], task_ids: Sequence[int], pad_token_id: int, max_rows: int = 32
) -> list[dict]:
    """Training-format batches of ``[prompt, candidate]`` rows, in order, at most ``max_rows`` each.

    Returns:
        Batches as :class:`~metaprompt.data.collate.CausalLMCollator` builds them (``input_ids``,
        ``attention_mask``, ``labels`` ``[b, T]``, ``task_ids`` ``[b]``) plus ``target_counts``
        (list of int: target tokens per row).
    """
    if max_rows < 1:
        raise ValueError(f"candidate_batches: max_rows must be >= 1, got {max_rows}")
    rows = [
        {"prompt_ids": c.prompt_ids, "target_ids": t, "task_id": task}
        for c, task in zip(candidates, task_ids, strict=True)
        for t in c.target_ids
    ]
    collate = CausalLMCollator(pad_token_id)
    batches = []
    for start in range(0, len(rows), max_rows):
        chunk = rows[start : start + max_rows]
        batch = collate(chunk)
        batch["target_counts"] = [len(r["target_ids"]) for r in chunk]
        batches.append(batch)
    return batches


def token_logprobs(target_logits: torch.Tensor, target_labels: torch.Tensor, batch: dict) -> list[torch.Tensor]:
    """Per row of ``batch``, the log-probs of its target tokens.

    Args:
        target_logits: ``[N, V]`` logits at the positions predicting target tokens, rows in order
            (``prompted_forward(..., need_logits=True)``).
        target_labels: ``[N]`` the tokens they predict.
        batch: The batch from :func:`candidate_batches`.

    Returns:
        One ``[n_i]`` float32 CPU tensor per row.

    Raises:
        ValueError: The forward's target tokens are not the batch's targets in row order.
    """
    counts = batch["target_counts"]
    expected = batch["labels"][batch["labels"] != IGNORE_INDEX]  # row-major: rows in order
    if expected.numel() != sum(counts) or not torch.equal(target_labels.cpu(), expected.cpu()):
        raise ValueError("token_logprobs: the forward's target tokens are not the candidates' targets in row order")
    logp = torch.log_softmax(target_logits.float(), dim=-1).gather(1, target_labels[:, None]).squeeze(1)
    return list(logp.cpu().split(counts))


def rank(candidates: Sequence[Candidates], per_row: Sequence[torch.Tensor]) -> list[Ranked]:
    """Group per-row token log-probs (rows of all candidates, in order) into one :class:`Ranked` each."""
    out, i = [], 0
    for c in candidates:
        rows = per_row[i : i + len(c.answers)]
        i += len(c.answers)
        out.append(Ranked(c.uid, c.answers, c.texts, tuple(float(r.sum()) for r in rows), tuple(len(r) for r in rows)))
    if i != len(per_row):
        raise ValueError(f"rank: {len(per_row)} scored rows for {i} candidates")
    return out


def score_candidates(
    model: Callable[[dict], Any],
    candidates: Sequence[Candidates],
    task_ids: Sequence[int],
    pad_token_id: int,
    max_rows: int = 32,
    device: torch.device | str | None = None,
) -> list[Ranked]:
    """Score every candidate with ``model`` and rank each example's answers.

    Args:
        model: ``batch -> out`` with ``out.target_logits [N, V]`` and ``out.target_labels [N]`` (e.g.
            ``lambda b: module.forward(b, need_logits=True)``; it gets ``task_ids`` so soft prompts
            take the shared-prefix path).
        candidates: From :func:`build_candidates`.
        task_ids: Task id of each example.
        pad_token_id: Padding id.
        max_rows: Candidate rows per forward.
        device: Where batches are moved before the call (default: left on CPU).
    """
    per_row: list[torch.Tensor] = []
    for batch in candidate_batches(candidates, task_ids, pad_token_id, max_rows):
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) and device is not None else v for k, v in batch.items()}
        out = model(moved)
        per_row += token_logprobs(out.target_logits, out.target_labels, batch)
    return rank(candidates, per_row)
