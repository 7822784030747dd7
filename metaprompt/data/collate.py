"""Batch collation for causal LMs: loss on target tokens only, task id per row."""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            if left:
                out[i, width - len(r) :] = torch.tensor(r)
            else:
                out[i, : len(r)] = torch.tensor(r)
    return out


class CausalLMCollator:
    """Collates encoded rows (``prompt_ids``, ``target_ids``, ``task_id``, ``uid``) into tensors.

    Training batches (right-padded)::

        input_ids       [B, T]  prompt + target tokens
        attention_mask  [B, T]  1 on real tokens
        labels          [B, T]  target tokens, IGNORE_INDEX (-100) on prompt and padding
        task_ids        [B]     integer task index of each row

    Evaluation batches add, for batched greedy generation (left-padded so every row's prompt ends
    at the last column)::

        prompt_input_ids       [B, P]
        prompt_attention_mask  [B, P]
        uids                   list[str]  to find each row's record (reference, options, labels)

    Args:
        pad_token_id: Padding id (the loss never sees it).
        eval_mode: Also build the generation inputs.
        max_target_tokens: Train on at most the first this many target tokens of a row (None: all).
    """

    def __init__(self, pad_token_id: int, eval_mode: bool = False, max_target_tokens: int | None = None):
        if max_target_tokens is not None and max_target_tokens < 1:
            raise ValueError(f"max_target_tokens must be >= 1 or None, got {max_target_tokens}")
        self.pad_token_id = pad_token_id
        self.eval_mode = eval_mode
        self.max_target_tokens = max_target_tokens

    def __call__(self, rows: list[dict]) -> dict:
        targets = [list(r["target_ids"])[: self.max_target_tokens] for r in rows]
        full = [list(r["prompt_ids"]) + t for r, t in zip(rows, targets)]
        labels = [[IGNORE_INDEX] * len(r["prompt_ids"]) + t for r, t in zip(rows, targets)]
        input_ids = _pad(full, self.pad_token_id, left=False)
        batch = {
            "input_ids": input_ids,
            "attention_mask": _pad([[1] * len(f) for f in full], 0, left=False),
            "labels": _pad(labels, IGNORE_INDEX, left=False),
            "task_ids": torch.tensor([int(r["task_id"]) for r in rows], dtype=torch.long),
        }
        if self.eval_mode:
            prompts = [list(r["prompt_ids"]) for r in rows]
            batch["prompt_input_ids"] = _pad(prompts, self.pad_token_id, left=True)
            batch["prompt_attention_mask"] = _pad([[1] * len(p) for p in prompts], 0, left=True)
            batch["uids"] = [r["uid"] for r in rows]
        return batch
