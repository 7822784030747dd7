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


_FLOOR = -1.0e4  # log-space stand-in for "no mass" that keeps gradients finite


def _check_temperature(temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"{name} must be [N, V] logits gathered at target tokens, got shape {tuple(logits.shape)}")


def _mean_over_rows(per_row: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of per-token values, or their weighted sum when ``weights`` ``[N]`` (summing to 1) is given.

    An empty batch (no target tokens) gives 0, still attached to the graph, instead of mean()'s NaN.
    """
    if weights is not None:
        if weights.shape != per_row.shape:
            raise ValueError(f"weights {tuple(weights.shape)} must match the {per_row.shape[0]} target tokens")
        return (per_row * weights.to(per_row.dtype)).sum()
    return per_row.sum() / max(per_row.numel(), 1)


def _kl_from_logprobs(teacher_logprobs: torch.Tensor, student_logprobs: torch.Tensor) -> torch.Tensor:
    """Row-wise sum of p_t * (log p_t - log p_s); entries with p_t == 0 contribute 0 (not 0 * inf = NaN)."""
    teacher_probs = teacher_logprobs.exp()
    log_ratio = torch.where(teacher_probs > 0, teacher_logprobs - student_logprobs, 0.0)
    return (teacher_probs * log_ratio).sum(dim=-1)


def target_token_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temperature-scaled KL(teacher || student) averaged over target tokens.

    Args:
        student_logits: ``[N, V]`` student logits at the N target-token positions of the batch.
        teacher_logits: ``[N, V]`` teacher logits at the same positions (detached here).
        temperature: Softmax temperature ``T`` applied to both sides.
        weights: Optional ``[N]`` token weights summing to 1 (per-task averaging, see
            ``metaprompt.forward.prompted.task_balanced_weights``); default: the plain mean.

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
    return temperature**2 * _mean_over_rows(_kl_from_logprobs(teacher_logprobs, student_logprobs), weights)


def topk_kl(
    student_logits: torch.Tensor,
    teacher_topk_logprobs: torch.Tensor,
    teacher_topk_indices: torch.Tensor,
    temperature: float = 1.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) when the teacher is known only by its top-k log-probabilities (a cache).

    Both distributions are collapsed onto the same k + 1 outcomes: the teacher's k entries and one tail
    bucket holding everything else (teacher: ``1 - sum_k q``, from the cached full-vocabulary
    log-probabilities; student: ``logsumexp`` of its logits outside the k ids, exactly). KL between
    these (k + 1)-way distributions is a proper divergence: 0 with zero gradient when the student
    equals the teacher, never rewards the student for piling mass onto the top k, equals the full KL
    when k = V, and lower-bounds it otherwise (the data-processing inequality).

    Renormalising the teacher over its k entries while keeping the student's full softmax (the
    earlier form) is biased: it is not 0 when student == teacher and pushes the student to sharpen.

    Args:
        student_logits: ``[N, V]`` student logits at the target-token positions.
        teacher_topk_logprobs: ``[N, k]`` teacher log-probabilities at temperature ``T``, normalised over
            the full vocabulary (``log_softmax(z / T).topk(k)``; detached here).
        teacher_topk_indices: ``[N, k]`` int64 vocabulary indices of those entries (distinct per row).
        temperature: The ``T`` the cache was built with; applied to the student.
        weights: Optional ``[N]`` token weights summing to 1 (default: the plain mean).

    Returns:
        Scalar fp32 tensor ``T**2 * mean_n KL_{k+1}(q_n || p_n)``; non-negative.
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
    teacher_top = teacher_topk_logprobs.detach().float()
    # teacher tail: log(1 - sum q); clamped because the cached top k may sum to 1 up to rounding
    teacher_mass = teacher_top.exp().sum(-1).clamp(max=1.0)
    teacher_tail = torch.log1p(-teacher_mass.clamp(max=1.0 - 1e-7))
    # no tail bucket when the k ids cover the vocabulary (the cached mass misses 1 only by rounding)
    empty = (teacher_mass >= 1.0 - 1e-7) | (teacher_topk_indices.shape[1] >= vocab)
    teacher_tail = torch.where(empty, float("-inf"), teacher_tail)
    scaled = student_logits.float() / temperature
    log_z = torch.logsumexp(scaled, dim=-1, keepdim=True)
    student_top = scaled.gather(-1, teacher_topk_indices) - log_z
    # a finite floor, not -inf, at the top-k ids: with k = V a logsumexp over all -inf has a NaN gradient
    outside = scaled.scatter(-1, teacher_topk_indices, _FLOOR)
    student_tail = torch.logsumexp(outside, dim=-1, keepdim=True) - log_z  # ~exp(-1e4) ≈ 0 when k = V
    teacher_logprobs = torch.cat([teacher_top, teacher_tail[:, None]], dim=-1)
    student_logprobs = torch.cat([student_top, student_tail], dim=-1)
    per_row = _kl_from_logprobs(teacher_logprobs, student_logprobs)
    return temperature**2 * _mean_over_rows(per_row, weights)


def hidden_state_mse(
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    mask: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between student and teacher hidden states at masked positions.

    Args:
        student_hidden: Per-layer student states, each ``[B, T, d]``.
        teacher_hidden: The teacher's states for the same layers, each ``[B, T, d]`` (detached here).
        mask: ``[B, T]`` 0/1 (or bool) mask of the positions to compare.
        weights: Optional ``[B, T]`` position weights summing to 1 over the mask (per-task averaging);
            default: every masked position alike.

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
        if weights is None:
            masked_sum = torch.where(keep, squared, 0.0).sum()
            per_layer.append(masked_sum / max(int(keep.sum()) * student.shape[-1], 1))
        else:
            weighted = torch.where(keep, squared * weights.to(squared.dtype), 0.0).sum()
            per_layer.append(weighted / student.shape[-1])
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
        teacher_logits: torch.Tensor | None = None,
        student_hidden: Sequence[torch.Tensor] = (),
        teacher_hidden: Sequence[torch.Tensor] = (),
        mask: torch.Tensor | None = None,
        *,
        teacher_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
        kl: torch.Tensor | None = None,
        target_weights: torch.Tensor | None = None,
        token_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Combine the student's cross-entropy with the distillation terms.

        The teacher comes as logits (online, exact KL), as a cached top-k (``teacher_topk``, the
        (k+1)-way KL of :func:`topk_kl`), or as the KL itself computed without logits (``kl``, from
        ``forward.fused_loss.frozen_head_distillation``); this is the one place the MPT loss is written.

        Args:
            ce: Scalar cross-entropy of the student on the target tokens.
            student_logits: ``[N, V]`` student logits at the target tokens (None with ``kl``).
            teacher_logits: ``[N, V]`` teacher logits at the same tokens (or None with ``teacher_topk``).
            student_hidden: Per-layer ``[B, T, d]`` student states (empty: no MSE term).
            teacher_hidden: Per-layer ``[B, T, d]`` teacher states.
            mask: ``[B, T]`` positions for the MSE; required when the MSE term is on.
            teacher_topk: ``(logprobs [N, k], indices [N, k])`` of the teacher at temperature τ.
            kl: Scalar τ²-scaled KL already computed (fused head path).
            target_weights: ``[N]`` token weights of the KL (as in the CE; default: the mean).
            token_weights: ``[B, T]`` position weights of the MSE (default: every masked position alike).

        Returns:
            ``{"loss", "ce", "kl", "mse"}`` scalar tensors; ``mse`` is 0 when skipped (beta == 0 or no hiddens).
        """
        if ce.dim() != 0:
            raise ValueError(f"ce must be a scalar tensor, got shape {tuple(ce.shape)}")
        if sum(x is not None for x in (teacher_logits, teacher_topk, kl)) != 1:
            raise ValueError("give the teacher as exactly one of teacher_logits, teacher_topk or a precomputed kl")
        if kl is not None:
            if kl.dim() != 0:
                raise ValueError(f"kl must be a scalar tensor, got shape {tuple(kl.shape)}")
        elif teacher_topk is not None:
            kl = topk_kl(student_logits, *teacher_topk, self.temperature, target_weights)
        else:
            kl = target_token_kl(student_logits, teacher_logits, self.temperature, target_weights)
        if self.beta > 0 and len(student_hidden) > 0:
            if mask is None:
                raise ValueError("mask is required for the hidden-state MSE (beta > 0 and hidden states given)")
            mse = hidden_state_mse(student_hidden, teacher_hidden, mask, token_weights)
        else:
            mse = torch.zeros((), device=kl.device)
        loss = ce.float() + self.lam * (self.kl_weight * kl + self.beta * mse)
        return {"loss": loss, "ce": ce, "kl": kl, "mse": mse}
