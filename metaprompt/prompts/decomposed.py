"""``DecomposedPrompt``: a shared prompt modulated per task by a low-rank matrix (MPT, Wang et al. 2023).

    prompt_k = P* ∘ (U_k V_kᵀ),   P* [l, d],  U_k [l, r],  V_k [d, r]

Identical in value to PEFT's ``MultitaskPromptEmbedding`` (``prefix_task_cols`` = U, ``prefix_task_rows``
= Vᵀ), but out-of-place (PEFT's ``*=`` on a module output can drop FSDP2's pre-backward hooks) and with
an init that starts every task prompt *at* P* while keeping all r ranks alive (``"identity"``):

* PEFT's N(0, 0.02²) makes the initial prompts ~2,500x smaller than P* (method.md §3.3);
* filling every column of U and V with the same value (U = 1, V = 1/r) also starts at P*, but then
  every column gets the same gradient and the factors stay rank 1 for ever, whatever r is.

``"identity"`` sets the first column of U and of V to ones (so U Vᵀ = 1 and prompt_k = P*), the other
columns of U to N(0, 1) and of V to zero, as LoRA starts B = 0 with A random: the product starts
exactly at the identity, and the random columns of U give the other ranks distinct gradients.
"""

from __future__ import annotations

import torch
from torch import nn

FACTOR_INITS = ("identity", "normal")


class DecomposedPrompt(nn.Module):
    """Shared prompt ∘ per-task rank-r factors.

    Args:
        num_tasks: K.
        length: l, virtual tokens.
        hidden_size: d.
        rank: r (1 in MPT).
        factor_init: ``"identity"`` (U Vᵀ = 1 at start, all ranks trainable apart; see module docstring)
            or ``"normal"`` (PEFT: N(0, 0.02²)).
        seed: Seed of the random columns.

    Shapes:
        ``shared_prompt`` ``[l, d]``, ``task_cols`` (U) ``[K, l, r]``, ``task_rows`` (V) ``[K, d, r]``,
        all fp32. ``forward(task_ids [B]) -> [B, l, d]``.
    """

    def __init__(
        self,
        num_tasks: int,
        length: int,
        hidden_size: int,
        rank: int = 1,
        factor_init: str = "identity",
        seed: int = 0,
    ):
        super().__init__()
        if min(num_tasks, length, hidden_size, rank) < 1:
            raise ValueError(
                f"DecomposedPrompt needs positive sizes, got K={num_tasks} l={length} d={hidden_size} r={rank}"
            )
        self.shared_prompt = nn.Parameter(torch.zeros(length, hidden_size))
        self.task_cols = nn.Parameter(torch.empty(num_tasks, length, rank))
        self.task_rows = nn.Parameter(torch.empty(num_tasks, hidden_size, rank))
        self.reset_factors(factor_init, seed)

    @property
    def length(self) -> int:
        return self.shared_prompt.shape[0]

    @property
    def rank(self) -> int:
        return self.task_cols.shape[-1]

    @torch.no_grad()
    def reset_factors(self, how: str = "identity", seed: int = 0) -> None:
        """Re-initialise U and V (see the module docstring)."""
        g = torch.Generator().manual_seed(seed)
        if how == "identity":
            self.task_cols.copy_(torch.randn(self.task_cols.shape, generator=g))
            self.task_cols[..., 0] = 1.0
            self.task_rows.zero_()
            self.task_rows[..., 0] = 1.0
        elif how == "normal":
            self.task_cols.copy_(torch.randn(self.task_cols.shape, generator=g) * 0.02)
            self.task_rows.copy_(torch.randn(self.task_rows.shape, generator=g) * 0.02)
        else:
            hint = " ('ones' gave every rank the same gradient, i.e. rank 1; use 'identity')" if how == "ones" else ""
            raise ValueError(f"factor_init must be one of {FACTOR_INITS}, got {how!r}{hint}")

    @torch.no_grad()
    def init_from_mean(self, shared_prompt: torch.Tensor, task_cols: torch.Tensor, task_rows: torch.Tensor) -> None:
        """Target init: P* as given; every task's U, V = the mean source task matrix, truncated to rank r.

        The factors of a task are defined only up to an invertible r x r mix (scale, sign, rotation)
        per task, so averaging U over sources and V over sources (PEFT's AVERAGE_SOURCE_TASKS) is not
        the mean task matrix: ``mean(U) mean(V)ᵀ != mean(U Vᵀ)``. Here ``M = mean_k U_k V_kᵀ`` ``[l, d]``
        is split by SVD, ``M ≈ A S Bᵀ``, and ``U = A √S``, ``V = B √S`` (its best rank-r approximation;
        exact when the sources' rank allows it).

        Args:
            shared_prompt: ``[l, d]`` P*.
            task_cols: ``[K_src, l, r_src]`` source U.
            task_rows: ``[K_src, d, r_src]`` source V.
        """
        self.shared_prompt.copy_(shared_prompt)
        cols, rows = mean_task_factors(task_cols, task_rows, self.rank)
        self.task_cols.copy_(cols.unsqueeze(0).expand_as(self.task_cols))
        self.task_rows.copy_(rows.unsqueeze(0).expand_as(self.task_rows))

    def task_matrix(self, task_ids: torch.Tensor) -> torch.Tensor:
        """``U_k V_kᵀ`` of each row: ``[B] -> [B, l, d]``."""
        return torch.bmm(
            self.task_cols.index_select(0, task_ids), self.task_rows.index_select(0, task_ids).transpose(1, 2)
        )

    def forward(self, task_ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Task prompts ``P* ∘ (U_k V_kᵀ)`` of each row: ``[B] -> [B, l, d]``."""
        out = self.shared_prompt.unsqueeze(0) * self.task_matrix(task_ids)
        return out if dtype is None else out.to(dtype)


def mean_task_factors(task_cols: torch.Tensor, task_rows: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-``rank`` factors of the mean task matrix ``mean_k U_k V_kᵀ``.

    Args:
        task_cols: ``[K, l, r]`` U of K tasks.
        task_rows: ``[K, d, r]`` V of K tasks.
        rank: r of the returned factors (columns beyond the mean matrix's rank are zero).

    Returns:
        ``(U [l, rank], V [d, rank])`` fp32 with ``U Vᵀ`` the best rank-``rank`` approximation of the mean.
    """
    mean = torch.einsum("klr,kdr->ld", task_cols.float(), task_rows.float()) / task_cols.shape[0]
    a, s, bh = torch.linalg.svd(mean, full_matrices=False)
    root = s[:rank].sqrt()
    cols, rows = a[:, :rank] * root, bh[:rank].T * root
    # keep the dominant direction's sign positive on average (the identity init's orientation), so
    # the same sources always give the same factors
    sign = torch.where(cols.sum(0) < 0, -1.0, 1.0)
    cols, rows = cols * sign, rows * sign
    if rank > cols.shape[1]:  # mean matrix smaller than the requested rank (tiny l or d)
        cols = torch.nn.functional.pad(cols, (0, rank - cols.shape[1]))
        rows = torch.nn.functional.pad(rows, (0, rank - rows.shape[1]))
    return cols, rows
