"""Distillation losses for multitask prompt distillation (MPT, Wang et al. 2023, eq. L_Logits and L_Hidden).

``L_total = L_PLM + lam * (kl_weight * L_Logits + beta * L_Hidden)`` where

* ``L_Logits`` is the temperature-scaled KL(teacher || student) over the next-token distributions at the
  target-token positions (``labels != -100``), multiplied by ``T**2`` so gradient magnitudes do not
  shrink as ``T`` grows (Hinton et al., 2015);
* ``L_Hidden`` is the mean squared error between teacher and student hidden states at the positions a
  mask selects (both sides carry ``l`` prompt positions, so positions line up one to one).

All maths runs in fp32 whatever the input dtype (bf16 logits lose too much in a softmax over a large
vocabulary), and the teacher side is always detached: only the student receives gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DistillationLoss", "hidden_state_mse", "target_token_kl", "topk_kl"]


def _check_temperature(temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"{name} must be [N, V] logits gathered at target tokens, got shape {tuple(logits.shape)}")


def _mean_over_rows(per_row: torch.Tensor) -> torch.Tensor:
    # An empty batch (no target tokens) gives 0, still attached to the graph, instead of mean()'s NaN.
    return per_row.sum() / max(per_row.numel(), 1)


def _kl_from_logprobs(teacher_logprobs: torch.Tensor, student_logprobs: torch.Tensor) -> torch.Tensor:
    """Row-wise sum of p_t * (log p_t - log p_s); entries with p_t == 0 contribute 0 (not 0 * inf = NaN)."""
    teacher_probs = teacher_logprobs.exp()
    log_ratio = torch.where(teacher_probs > 0, teacher_logprobs - student_logprobs, 0.0)
    return (teacher_probs * log_ratio).sum(dim=-1)


def target_token_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Temperature-scaled KL(teacher || student) averaged over target tokens.

    Args:
        student_logits: ``[N, V]`` student logits at the N target-token positions of the batch.
        teacher_logits: ``[N, V]`` teacher logits at the same positions (detached here).
        temperature: Softmax temperature ``T`` applied to both sides.

    Returns:
        Scalar fp32 tensor ``T**2 * mean_n KL(softmax(teacher_n / T) || softmax(student_n / T))``;
        exactly 0 when the logits are equal, and 0 when N == 0.
    """
    _check_temperature(temperature)
    _check_logits("student_logits", student_logits)
    _check_logits("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits "
            f"{tuple(teacher_logits.shape)} must have the same shape"
        )
    student_logprobs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_logprobs = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    return temperature**2 * _mean_over_rows(_kl_from_logprobs(teacher_logprobs, student_logprobs))


def topk_kl(
    student_logits: torch.Tensor,
    teacher_topk_logprobs: torch.Tensor,
    teacher_topk_indices: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL(teacher || student) when the teacher is known only by its top-k log-probabilities (a cache).

    The teacher is renormalised over its k entries; the student is a full softmax over V at temperature
    ``T``, read at the teacher's indices. With k = V this equals :func:`target_token_kl`.

    Args:
        student_logits: ``[N, V]`` student logits at the target-token positions.
        teacher_topk_logprobs: ``[N, k]`` teacher log-probabilities at temperature ``T`` (detached here).
        teacher_topk_indices: ``[N, k]`` int64 vocabulary indices of those entries.
        temperature: The ``T`` the cache was built with; applied to the student.

    Returns:
        Scalar fp32 tensor ``T**2 * mean_n sum_{j in topk} q_nj (log q_nj - log p_s,nj)``; non-negative.
    """
    _check_temperature(temperature)
    _check_logits("student_logits", student_logits)
    if teacher_topk_logprobs.dim() != 2 or teacher_topk_logprobs.shape != teacher_topk_indices.shape:
        raise ValueError(
            f"teacher_topk_logprobs {tuple(teacher_topk_logprobs.shape)} and teacher_topk_indices "
            f"{tuple(teacher_topk_indices.shape)} must both be [N, k]"
        )
    if teacher_topk_indices.dtype != torch.int64:
        raise ValueError(f"teacher_topk_indices must be int64, got {teacher_topk_indices.dtype}")
    n_rows, vocab = student_logits.shape
    if teacher_topk_indices.shape[0] != n_rows:
        raise ValueError(f"teacher top-k has {teacher_topk_indices.shape[0]} rows but student_logits has {n_rows}")
    if teacher_topk_indices.numel() and (teacher_topk_indices.min() < 0 or teacher_topk_indices.max() >= vocab):
        raise ValueError(f"teacher_topk_indices must lie in [0, {vocab}) (the student's vocabulary)")
    teacher_logprobs = teacher_topk_logprobs.detach().float()
    teacher_logprobs = teacher_logprobs - torch.logsumexp(teacher_logprobs, dim=-1, keepdim=True)
    student_logprobs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    student_at_topk = student_logprobs.gather(-1, teacher_topk_indices)
    return temperature**2 * _mean_over_rows(_kl_from_logprobs(teacher_logprobs, student_at_topk))


def hidden_state_mse(
    student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor], mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error between student and teacher hidden states at masked positions.

    Args:
        student_hidden: Per-layer student states, each ``[B, T, d]``.
        teacher_hidden: The teacher's states for the same layers, each ``[B, T, d]`` (detached here).
        mask: ``[B, T]`` 0/1 (or bool) mask of the positions to compare.

    Returns:
        Scalar fp32 tensor: per layer, the mean of ``(s - t)**2`` over masked positions and ``d``; then the
        mean over layers. Unmasked positions never contribute (not even NaN/inf); 0 when nothing is masked.
    """
    if len(student_hidden) != len(teacher_hidden) or not student_hidden:
        raise ValueError(
            f"student_hidden and teacher_hidden must be non-empty lists of equal length, "
            f"got {len(student_hidden)} and {len(teacher_hidden)}"
        )
    keep = mask.bool()
    per_layer = []
    for layer, (student, teacher) in enumerate(zip(student_hidden, teacher_hidden)):
        if student.dim() != 3 or student.shape != teacher.shape or student.shape[:2] != keep.shape:
            raise ValueError(
                f"layer {layer}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} hidden "
                f"states must both be [B, T, d] with [B, T] = mask {tuple(keep.shape)}"
            )
        squared = (student.float() - teacher.detach().float()).pow(2).sum(dim=-1)
        # where(), not multiplication: a NaN at an unmasked position must not leak into the sum.
        masked_sum = torch.where(keep, squared, 0.0).sum()
        per_layer.append(masked_sum / max(int(keep.sum()) * student.shape[-1], 1))
    return torch.stack(per_layer).mean()


class DistillationLoss(torch.nn.Module):
    """``loss = ce + lam * (kl_weight * KL + beta * MSE)``: MPT's L_PLM + lambda (L_Logits + L_Hidden).

    Args:
        lam: Weight of the whole distillation term (MPT's lambda); >= 0.
        temperature: Softmax temperature of the KL term; > 0.
        beta: Weight of the hidden-state MSE inside the distillation term; 0 disables it.
        kl_weight: Weight of the KL inside the distillation term; >= 0.
    """

    def __init__(self, lam: float = 1.0, temperature: float = 2.0, beta: float = 1.0, kl_weight: float = 1.0):
        super().__init__()
        for name, value in (("lam", lam), ("beta", beta), ("kl_weight", kl_weight)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        _check_temperature(temperature)
        self.lam, self.temperature, self.beta, self.kl_weight = (
            float(lam),
            float(temperature),
            float(beta),
            float(kl_weight),
        )

    def forward(
        self,
        ce: torch.Tensor,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_hidden: Sequence[torch.Tensor] = (),
        teacher_hidden: Sequence[torch.Tensor] = (),
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Combine the student's cross-entropy with the distillation terms.

        Args:
            ce: Scalar cross-entropy of the student on the target tokens.
            student_logits: ``[N, V]`` student logits at the target tokens.
            teacher_logits: ``[N, V]`` teacher logits at the same tokens.
            student_hidden: Per-layer ``[B, T, d]`` student states (empty: no MSE term).
            teacher_hidden: Per-layer ``[B, T, d]`` teacher states.
            mask: ``[B, T]`` positions for the MSE; required when the MSE term is on.

        Returns:
            ``{"loss", "ce", "kl", "mse"}`` scalar tensors; ``mse`` is 0 when skipped (beta == 0 or no hiddens).
        """
        if ce.dim() != 0:
            raise ValueError(f"ce must be a scalar tensor, got shape {tuple(ce.shape)}")
        kl = target_token_kl(student_logits, teacher_logits, self.temperature)
        if self.beta > 0 and len(student_hidden) > 0:
            if mask is None:
                raise ValueError("mask is required for the hidden-state MSE (beta > 0 and hidden states given)")
            mse = hidden_state_mse(student_hidden, teacher_hidden, mask)
        else:
            mse = torch.zeros((), device=kl.device)
        loss = ce.float() + self.lam * (self.kl_weight * kl + self.beta * mse)
        return {"loss": loss, "ce": ce, "kl": kl, "mse": mse}
