"""Cross-entropy of the target tokens straight from hidden states through the frozen LM head, in chunks.

A stage that needs only the loss (prompt tuning, target adaptation, validation loss) does not need the
``[N, V]`` logits. The usual path materialises them (fp32: 50 MB for 256 targets of SmolLM2's 49k
vocabulary, 131 MB on LLaMA 3's 128k), a same-sized log-softmax output saved for backward, and a
same-sized gradient in backward. Here the head runs over chunks of rows that stay small (~16 MB), and
because the head is frozen the gradient w.r.t. the hidden states, ``(softmax - onehot) / N @ W``, is
computed right there in the forward and kept (``[N, d]``); backward only scales it. The same FLOPs
(one head GEMM forward, one for the gradient), none of the large tensors. It is a memory fast path:
on the 2-core CPU (SmolLM2-135M, batch 8 x 128 tokens) peak RSS fell by ~100 MB while step time was
neutral to 5% slower (``make bench``, ablation ``no_fused_loss``); the saving grows with the vocabulary.

Equal to ``F.cross_entropy(head(h).float(), y)`` and its gradient up to float rounding (a test). Used
only where it is exact and safe: a plain ``nn.Linear`` head without bias whose weight is frozen and not
sharded (ZeRO-3/FSDP2 gather weights in module hooks, which this bypasses; the stages switch it off
then). Written here because no library offers a frozen-head fused linear cross-entropy for CPU and GPU
alike (Liger's and Apple's Cut Cross-Entropy are Triton/CUDA kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_BYTES = 16 * 2**20  # fp32 logits of one chunk


def fusable(head: torch.nn.Module) -> bool:
    """Whether ``head`` is a frozen, bias-free, unsharded ``nn.Linear`` (the fused loss is exact for it)."""
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return False
    weight = head.weight
    return not weight.requires_grad and weight.dim() == 2 and type(weight) in (torch.Tensor, torch.nn.Parameter)


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        n = hidden.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for start in range(0, n, chunk):
            h, y = hidden[start : start + chunk], labels[start : start + chunk]
            w = token_weights[start : start + chunk].float()
            logits = F.linear(h, weight).float()  # [c, V]; autocast, if on, applies as in the head
            lse = torch.logsumexp(logits, dim=-1)
            total += ((lse - logits.gather(1, y[:, None]).squeeze(1)) * w).sum()
            if grad is not None:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
                probs[torch.arange(y.shape[0], device=y.device), y] -= 1.0
                grad[start : start + chunk] = probs.mul_(w[:, None]).to(weight.dtype) @ weight
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None, None, None


def frozen_head_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of ``labels`` under ``hidden @ weight.T``, without materialising the logits.

    Args:
        hidden: ``[N, d]`` hidden states at the N positions that predict a target token (N >= 1).
        weight: ``[V, d]`` the frozen LM head's weight.
        labels: ``[N]`` target token ids.
        token_weights: ``[N]`` weights summing to 1 (default ``1/N`` each: the mean).

    Returns:
        Scalar fp32 loss ``sum_j w_j CE_j``; its gradient reaches ``hidden`` only.
    """
    chunk = max(1, CHUNK_BYTES // (4 * weight.shape[0]))
    if token_weights is None:
        token_weights = torch.full(labels.shape, 1.0 / max(labels.numel(), 1), device=hidden.device)
    return _FrozenHeadCrossEntropy.apply(hidden, weight, labels, token_weights.detach(), chunk)


class _FrozenHeadDistillation(torch.autograd.Function):
    """CE of the labels and τ²·KL(teacher ‖ student) at temperature τ, one pass over row chunks."""

    @staticmethod
    def forward(ctx, student, teacher, weight, labels, token_weights, temperature: float, chunk: int):
        ce = torch.zeros((), dtype=torch.float32, device=student.device)
        kl = torch.zeros((), dtype=torch.float32, device=student.device)
        need = ctx.needs_input_grad[0]
        grad_ce = torch.empty_like(student) if need else None
        grad_kl = torch.empty_like(student) if need else None
        t = float(temperature)
        for start in range(0, student.shape[0], chunk):
            stop = start + chunk
            y, w = labels[start:stop], token_weights[start:stop].float()
            z = F.linear(student[start:stop], weight).float()  # [c, V]
            zt = F.linear(teacher[start:stop], weight).float()
            lse = torch.logsumexp(z, dim=-1)
            ce += ((lse - z.gather(1, y[:, None]).squeeze(1)) * w).sum()
            log_p = F.log_softmax(z / t, dim=-1)
            log_q = F.log_softmax(zt / t, dim=-1)
            q = log_q.exp()
            # entries with q == 0 contribute 0 (as losses._kl_from_logprobs), never 0 * inf
            kl += (torch.where(q > 0, q * (log_q - log_p), 0.0).sum(-1) * w).sum()
            if need:
                # d(τ² KL)/dz = τ (softmax(z/τ) - q); dCE/dz = softmax(z) - onehot(y)
                g_kl = log_p.exp_().sub_(q).mul_(t * w[:, None])
                grad_kl[start:stop] = g_kl.to(weight.dtype) @ weight
                probs = z.sub_(lse[:, None]).exp_()
                probs[torch.arange(y.shape[0], device=y.device), y] -= 1.0
                grad_ce[start:stop] = probs.mul_(w[:, None]).to(weight.dtype) @ weight
        ctx.save_for_backward(grad_ce, grad_kl)
        return ce, kl * t * t

    @staticmethod
    def backward(ctx, grad_ce_out: torch.Tensor, grad_kl_out: torch.Tensor):
        grad_ce, grad_kl = ctx.saved_tensors
        grad = grad_ce * grad_ce_out.to(grad_ce.dtype) + grad_kl * grad_kl_out.to(grad_kl.dtype)
        return grad, None, None, None, None, None, None


def frozen_head_distillation(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's cross-entropy and the distillation KL, without materialising any ``[N, V]`` logits.

    The KL needs both sides' full distributions at every target token; from logits that is four
    ``[N, V]`` fp32 tensors (two logits, two log-softmaxes) plus their gradients, which is what took the
    24 GB machine down on a batch of long MedQuAD answers (~13k target tokens x 49k vocabulary). Here
    both sides go through the frozen head chunk by chunk, as :func:`frozen_head_cross_entropy` does, and
    the gradients w.r.t. the student's hidden states are formed on the spot (``[N, d]`` each).

    Args:
        student_hidden: ``[N, d]`` student final hidden states at the target-predicting positions.
        teacher_hidden: ``[N, d]`` the teacher's at the same positions (no gradient).
        weight: ``[V, d]`` the frozen LM head's weight (see :func:`fusable`).
        labels: ``[N]`` target token ids.
        token_weights: ``[N]`` weights summing to 1, shared by both terms.
        temperature: τ of the KL (both sides softened; the KL is scaled by τ²).

    Returns:
        ``(ce, kl)`` fp32 scalars equal to ``sum_j w_j CE_j`` and ``losses.target_token_kl`` on the
        logits, up to float rounding; gradients reach ``student_hidden`` only.
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student {tuple(student_hidden.shape)} and teacher {tuple(teacher_hidden.shape)} hidden states at the "
            "target tokens must have the same shape (same rows, same prompt length)"
        )
    chunk = max(1, CHUNK_BYTES // (4 * weight.shape[0]))
    return _FrozenHeadDistillation.apply(
        student_hidden, teacher_hidden.detach(), weight, labels, token_weights.detach(), temperature, chunk
    )
