"""``DecomposedPrompt``: a shared prompt modulated per task by a low-rank matrix (MPT, Wang et al. 2023).

    prompt_k = P* ∘ (U_k V_kᵀ),   P* [l, d],  U_k [l, r],  V_k [d, r]

Identical in value to PEFT's ``MultitaskPromptEmbedding`` (``prefix_task_cols`` = U, ``prefix_task_rows``
= Vᵀ), but out-of-place (PEFT's ``*=`` on a module output can drop FSDP2's pre-backward hooks) and with
an init that starts every task prompt *at* P* (U = 1, V = 1/r so U Vᵀ = 1) instead of PEFT's N(0, 0.02²),
which makes the initial prompts ~2,500x smaller than P* (method.md §3.3).
"""

from __future__ import annotations

import torch
from torch import nn


class DecomposedPrompt(nn.Module):
    """Shared prompt ∘ per-task rank-r factors.

    Args:
        num_tasks: K.
        length: l, virtual tokens.
        hidden_size: d.
        rank: r (1 in MPT).
        factor_init: ``"ones"`` (U Vᵀ = 1, prompt_k = P* at start) or ``"normal"`` (PEFT: N(0, 0.02²)).

    Shapes:
        ``shared_prompt`` ``[l, d]``, ``task_cols`` (U) ``[K, l, r]``, ``task_rows`` (V) ``[K, d, r]``,
        all fp32. ``forward(task_ids [B]) -> [B, l, d]``.
    """

    def __init__(self, num_tasks: int, length: int, hidden_size: int, rank: int = 1, factor_init: str = "ones"):
        super().__init__()
        if min(num_tasks, length, hidden_size, rank) < 1:
            raise ValueError(
                f"DecomposedPrompt needs positive sizes, got K={num_tasks} l={length} d={hidden_size} r={rank}"
            )
        self.shared_prompt = nn.Parameter(torch.zeros(length, hidden_size))
        self.task_cols = nn.Parameter(torch.empty(num_tasks, length, rank))
        self.task_rows = nn.Parameter(torch.empty(num_tasks, hidden_size, rank))
        self.reset_factors(factor_init)

    @property
    def length(self) -> int:
        return self.shared_prompt.shape[0]

    @torch.no_grad()
    def reset_factors(self, how: str = "ones", seed: int = 0) -> None:
        """Re-initialise U and V (see class docstring)."""
        r = self.task_cols.shape[-1]
        if how == "ones":
            self.task_cols.fill_(1.0)
            self.task_rows.fill_(1.0 / r)
        elif how == "normal":
            g = torch.Generator().manual_seed(seed)
            self.task_cols.copy_(torch.randn(self.task_cols.shape, generator=g) * 0.02)
            self.task_rows.copy_(torch.randn(self.task_rows.shape, generator=g) * 0.02)
        else:
            raise ValueError(f"factor_init must be 'ones' or 'normal', got {how!r}")

    @torch.no_grad()
    def init_from_mean(self, shared_prompt: torch.Tensor, task_cols: torch.Tensor, task_rows: torch.Tensor) -> None:
        """Target init (MPT): P* as given, every task's U, V = the mean of the source tasks' U, V."""
        self.shared_prompt.copy_(shared_prompt)
        self.task_cols.copy_(task_cols.mean(0, keepdim=True).expand_as(self.task_cols))
        self.task_rows.copy_(task_rows.mean(0, keepdim=True).expand_as(self.task_rows))

    def task_matrix(self, task_ids: torch.Tensor) -> torch.Tensor:
        """``U_k V_kᵀ`` of each row: ``[B] -> [B, l, d]``."""
        return torch.bmm(
            self.task_cols.index_select(0, task_ids), self.task_rows.index_select(0, task_ids).transpose(1, 2)
        )

    def forward(self, task_ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Task prompts ``P* ∘ (U_k V_kᵀ)`` of each row: ``[B] -> [B, l, d]``."""
        out = self.shared_prompt.unsqueeze(0) * self.task_matrix(task_ids)
        return out if dtype is None else out.to(dtype)
