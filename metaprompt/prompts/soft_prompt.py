"""``SoftPrompt``: one trainable prompt of ``l`` virtual tokens per task (Lester et al., 2021).

The fp32 master copy is what the optimizer sees; ``forward`` casts to the backbone's dtype at use,
so bf16 backbones never round the prompt's updates away.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn

from metaprompt.scale.zero import gathered


class PromptInit(str, Enum):
    """How a soft prompt is initialised (names follow PEFT's ``PromptTuningInit``)."""

    SAMPLE_VOCAB = "sample_vocab"  # rows of the embedding matrix, sampled from the 5,000 most frequent ids
    TEXT = "text"  # the embeddings of a text, repeated/truncated to l tokens
    RANDOM = "random"  # N(0, std of the embedding matrix)


class SoftPrompt(nn.Module):
    """Per-task soft prompts.

    Args:
        num_tasks: K, number of tasks (rows are selected by task id).
        length: l, virtual tokens per prompt (100 in Lester et al. / MPT).
        hidden_size: d, the backbone's embedding width.

    Shapes:
        ``prompts``: ``[K, l, d]`` fp32 parameter. ``forward(task_ids [B]) -> [B, l, d]``.
    """

    def __init__(self, num_tasks: int, length: int, hidden_size: int):
        super().__init__()
        if num_tasks < 1 or length < 1 or hidden_size < 1:
            raise ValueError(f"SoftPrompt needs positive sizes, got tasks={num_tasks} length={length} d={hidden_size}")
        self.prompts = nn.Parameter(torch.zeros(num_tasks, length, hidden_size, dtype=torch.float32))

    @property
    def length(self) -> int:
        return self.prompts.shape[1]

    @torch.no_grad()
    def initialize(
        self,
        how: PromptInit | str,
        embeddings: torch.Tensor,
        text_ids: list[int] | None = None,
        seed: int = 0,
        exclude_ids: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        """Fill every task's prompt from the input embedding matrix ``[V, d]``.

        Under DeepSpeed ZeRO-3 the embedding weight (and the prompt, if it was built partitioned) is
        gathered for the duration of the init (``metaprompt.scale.gathered``; a no-op otherwise), so
        every rank reads the same whole matrix and rank 0's values are the ones kept. Only the sampled
        rows are copied off the embedding's device. An embedding on the meta device (adapter rebuilt
        for consolidation) has no values: the prompt is left as is, to be loaded from a checkpoint.

        Args:
            how: A :class:`PromptInit`.
            embeddings: The backbone's input embedding weight (whole or ZeRO-3-partitioned).
            text_ids: Token ids of the init text (``how == "text"``).
            seed: Seed of the vocabulary sample / random init, so runs are reproducible.
            exclude_ids: Ids never sampled (``special_token_ids(tokenizer)``): special/control tokens
                such as ``<|im_start|>`` sit among the lowest ids of many tokenizers, and a prompt made
                of their embeddings starts as a burst of chat-control signals, not ordinary text.
        """
        how = PromptInit(how)
        with gathered([embeddings]), gathered([self.prompts], modifier_rank=0):
            if embeddings.is_meta:
                return
            g = torch.Generator().manual_seed(seed)
            k, length, _ = self.prompts.shape
            emb = embeddings.detach()
            if how is PromptInit.SAMPLE_VOCAB:
                # Low ids are frequent BPE merges in most tokenizers; Lester et al. sample the top 5,000.
                pool = torch.tensor(
                    [i for i in range(min(5000 + len(exclude_ids), emb.shape[0])) if i not in exclude_ids]
                )
                pool = pool[:5000]
                ids = pool[torch.randint(0, len(pool), (k, length), generator=g)]
                values = emb[ids.to(emb.device)].float()
            elif how is PromptInit.TEXT:
                if not text_ids:
                    raise ValueError("prompt init 'text' needs a non-empty init text")
                reps = -(-length // len(text_ids))
                ids = torch.tensor((list(text_ids) * reps)[:length], device=emb.device)
                values = emb[ids].float().unsqueeze(0).expand(k, -1, -1)
            else:
                values = torch.randn(k, length, emb.shape[1], generator=g) * emb.float().std().cpu()
            self.prompts.copy_(values.to(self.prompts.device))

    def forward(self, task_ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Prompts of each row's task: ``[B] -> [B, l, d]`` (cast to ``dtype`` if given)."""
        out = self.prompts.index_select(0, task_ids)
        return out if dtype is None else out.to(dtype)


def special_token_ids(tokenizer) -> frozenset[int]:
    """Ids a vocabulary-sampled prompt must not use: special tokens and added (control) tokens."""
    if tokenizer is None:
        return frozenset()
    ids = set(tokenizer.all_special_ids)
    ids.update(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return frozenset(int(i) for i in ids)
