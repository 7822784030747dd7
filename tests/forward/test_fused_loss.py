"""The fused frozen-head cross-entropy equals logits + ``F.cross_entropy`` (loss and gradient), in
chunks, fp32 and bf16, and the prompted forward uses it only when the logits are not asked for; the
fused distillation (CE + KL) equals ``losses.target_token_kl`` on the logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metaprompt.backbones import load_backbone
from metaprompt.forward import fused_loss
from metaprompt.forward.fused_loss import frozen_head_cross_entropy, frozen_head_distillation, fusable
from metaprompt.forward.prompted import prompted_forward
from metaprompt.losses import target_token_kl


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000], ids=["row-by-row", "ragged-chunks", "one-chunk"])
def test_equals_cross_entropy_over_logits(monkeypatch, dtype, chunk_rows):
    vocab, d, n = 300, 16, 23
    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 4 * vocab * chunk_rows)
    g = torch.Generator().manual_seed(chunk_rows)
    weight = torch.randn(vocab, d, generator=g).to(dtype)
    labels = torch.randint(0, vocab, (n,), generator=g)
    hidden = torch.randn(n, d, generator=g).to(dtype).requires_grad_()
    ref = F.cross_entropy(F.linear(hidden, weight).float(), labels)
    (ref_grad,) = torch.autograd.grad(ref, hidden)
    loss = frozen_head_cross_entropy(hidden, weight, labels)
    (grad,) = torch.autograd.grad(3.0 * loss, hidden)  # the upstream gradient is applied
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-2, "rtol": 1e-2}
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref.float(), **tol)
    torch.testing.assert_close(grad, 3.0 * ref_grad, **tol)


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000], ids=["row-by-row", "ragged-chunks", "one-chunk"])
def test_distillation_equals_ce_and_kl_over_logits(monkeypatch, chunk_rows):
    vocab, d, n, tau = 300, 16, 23, 2.0
    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 4 * vocab * chunk_rows)
    g = torch.Generator().manual_seed(chunk_rows)
    weight = torch.randn(vocab, d, generator=g)
    labels = torch.randint(0, vocab, (n,), generator=g)
    token_weights = torch.rand(n, generator=g)
    token_weights /= token_weights.sum()  # per-task weights: not the plain mean
    teacher = torch.randn(n, d, generator=g)
    student = (teacher + 0.5 * torch.randn(n, d, generator=g)).requires_grad_()
    logits = F.linear(student, weight)
    ref_ce = (F.cross_entropy(logits, labels, reduction="none") * token_weights).sum()
    ref_kl = target_token_kl(logits, F.linear(teacher, weight), tau, token_weights)
    (ref_grad,) = torch.autograd.grad(ref_ce + 0.7 * ref_kl, student)
    ce, kl = frozen_head_distillation(student, teacher, weight, labels, token_weights, tau)
    (grad,) = torch.autograd.grad(ce + 0.7 * kl, student)  # each output's upstream gradient is applied
    torch.testing.assert_close(ce, ref_ce, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kl, ref_kl, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)
    same = teacher.clone().requires_grad_()  # student == teacher: KL 0 and no KL gradient
    _, kl0 = frozen_head_distillation(same, teacher, weight, labels, token_weights, tau)
    (grad0,) = torch.autograd.grad(kl0, same)
    assert kl0.item() == 0.0 and grad0.abs().max().item() < 1e-6
    with pytest.raises(ValueError, match="same shape"):
        frozen_head_distillation(student, teacher[:-1], weight, labels, token_weights, tau)


def test_fusable_only_for_a_frozen_plain_linear_head():
    head = torch.nn.Linear(8, 20, bias=False).requires_grad_(False)
    assert fusable(head)
    assert not fusable(torch.nn.Linear(8, 20, bias=False))  # a trainable head needs its weight gradient
    assert not fusable(torch.nn.Linear(8, 20).requires_grad_(False))  # bias
    assert not fusable(torch.nn.Embedding(20, 8))


def test_prompted_forward_fuses_only_without_logits():
    model, _ = load_backbone("tiny-llama")
    model.train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 5000, (3, 18), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :9] = -100
    prompt = torch.randn(2, 5, model.config.hidden_size, requires_grad=True)
    task_ids = torch.tensor([0, 1, 1])
    results = {}
    for need_logits in (True, False):
        prompt.grad = None
        out = prompted_forward(model, ids, mask, labels, prompt[task_ids], task_ids=task_ids, need_logits=need_logits)
        out.loss.backward()
        results[need_logits] = (out, prompt.grad.clone())
    (ref, ref_grad), (fused, grad) = results[True], results[False]
    assert ref.target_logits is not None and fused.target_logits is None
    torch.testing.assert_close(fused.loss, ref.loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(fused.target_labels, ref.target_labels)
    off = prompted_forward(
        model, ids, mask, labels, prompt[task_ids], task_ids=task_ids, need_logits=False, fast={"fused_loss": False}
    )
    assert off.target_logits is not None  # switched off: the usual logits path
