"""Distillation losses: values against hand-computed references, masking, gradients, validation."""

from __future__ import annotations

import pytest
import torch

from metaprompt.losses import DistillationLoss, hidden_state_mse, target_token_kl, topk_kl


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 11, generator=generator)
    teacher = torch.randn(5, 11, generator=generator) * 3
    return student, teacher


def reference_kl(student, teacher, temperature):
    """KL(p_t || p_s) written out from the definition, in float64."""
    p_t = torch.softmax(teacher.double() / temperature, -1)
    p_s = torch.softmax(student.double() / temperature, -1)
    return temperature**2 * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()


# --- target_token_kl -------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
def test_target_token_kl_matches_definition(logits, temperature):
    student, teacher = logits
    got = target_token_kl(student, teacher, temperature)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() > 0
    torch.testing.assert_close(got.double(), reference_kl(student, teacher, temperature), rtol=1e-5, atol=1e-6)


def test_target_token_kl_is_exactly_zero_for_equal_logits(logits):
    student, _ = logits
    assert target_token_kl(student, student.clone(), 2.0).item() == 0.0


def test_target_token_kl_gradient_reaches_student_only(logits):
    student, teacher = (t.clone().requires_grad_(True) for t in logits)
    target_token_kl(student, teacher, 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_target_token_kl_bf16_inputs_are_computed_in_fp32(logits):
    student, teacher = (t.to(torch.bfloat16) for t in logits)
    got = target_token_kl(student, teacher, 1.0)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), reference_kl(student.float(), teacher.float(), 1.0), rtol=1e-5, atol=1e-6)


def test_target_token_kl_large_logits_are_stable():
    student = torch.tensor([[1000.0, 0.0, -1000.0]])
    teacher = torch.tensor([[0.0, 1000.0, -1000.0]])
    got = target_token_kl(student, teacher, 1.0)
    assert torch.isfinite(got) and got.item() == pytest.approx(1000.0, rel=1e-4)


def test_target_token_kl_ignores_vocab_entries_the_teacher_rules_out():
    student = torch.tensor([[0.3, 1.0, -2.0]])
    teacher = torch.tensor([[0.5, 1.5, float("-inf")]])
    got = target_token_kl(student, teacher)
    p_t = torch.softmax(teacher, -1)[0, :2]
    p_s = torch.softmax(student, -1)[0, :2]
    assert got.item() == pytest.approx((p_t * (p_t.log() - p_s.log())).sum().item(), rel=1e-5)


def test_target_token_kl_empty_batch_is_zero():
    assert target_token_kl(torch.zeros(0, 7), torch.zeros(0, 7)).item() == 0.0


def test_target_token_kl_validation(logits):
    student, teacher = logits
    with pytest.raises(ValueError, match="same shape"):
        target_token_kl(student, teacher[:, :5])
    with pytest.raises(ValueError, match=r"student_logits must be \[N, V\]"):
        target_token_kl(student[None], teacher[None])
    with pytest.raises(ValueError, match="temperature"):
        target_token_kl(student, teacher, 0.0)


# --- topk_kl ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_kl_with_full_vocab_equals_target_token_kl(logits, temperature):
    student, teacher = logits
    logprobs, indices = torch.log_softmax(teacher / temperature, -1).topk(teacher.shape[-1], dim=-1)
    got = topk_kl(student, logprobs, indices, temperature)
    torch.testing.assert_close(got, target_token_kl(student, teacher, temperature), rtol=1e-5, atol=1e-6)


def test_topk_kl_truncated_teacher_matches_k_plus_1_reference(logits):
    student, teacher = logits
    logprobs, indices = torch.log_softmax(teacher, -1).topk(3, dim=-1)
    got = topk_kl(student, logprobs, indices)
    q = logprobs.double().exp()
    q = torch.cat([q, 1 - q.sum(-1, keepdim=True)], -1)
    log_p_all = torch.log_softmax(student.double(), -1)
    p_top = log_p_all.gather(-1, indices).exp()
    p = torch.cat([p_top, 1 - p_top.sum(-1, keepdim=True)], -1)
    expected = (q * (q.log() - p.log())).sum(-1).mean()
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-6)
    # a lower bound of the full KL (merging outcomes never increases a divergence)
    assert 0 <= got.item() <= target_token_kl(student, teacher).item() + 1e-6


@pytest.mark.parametrize("k", [1, 3, 8, 11])
def test_topk_kl_is_zero_with_zero_gradient_when_student_equals_teacher(logits, k):
    _, teacher = logits
    for temperature in (1.0, 2.0):
        logprobs, indices = torch.log_softmax(teacher / temperature, -1).topk(k, dim=-1)
        student = teacher.clone().requires_grad_(True)
        loss = topk_kl(student, logprobs, indices, temperature)
        loss.backward()
        assert abs(loss.item()) < 1e-6
        assert student.grad.abs().max().item() < 1e-6


def test_topk_kl_does_not_reward_over_sharpening(logits):
    """The former renormalised form preferred a student with all its mass on the teacher's top k."""
    _, teacher = logits
    logprobs, indices = torch.log_softmax(teacher, -1).topk(2, dim=-1)
    sharpened = teacher.scatter_add(-1, indices, torch.full(indices.shape, 20.0))
    assert topk_kl(sharpened, logprobs, indices) > topk_kl(teacher, logprobs, indices) + 1e-3


def test_kl_weights_replace_the_mean(logits):
    student, teacher = logits
    n = student.shape[0]
    uniform = torch.full((n,), 1.0 / n)
    torch.testing.assert_close(target_token_kl(student, teacher, 2.0, uniform), target_token_kl(student, teacher, 2.0))
    first = torch.zeros(n)
    first[0] = 1.0
    torch.testing.assert_close(target_token_kl(student, teacher, 1.0, first), target_token_kl(student[:1], teacher[:1]))
    logprobs, indices = torch.log_softmax(teacher, -1).topk(3, dim=-1)
    torch.testing.assert_close(
        topk_kl(student, logprobs, indices, 1.0, first), topk_kl(student[:1], logprobs[:1], indices[:1])
    )
    with pytest.raises(ValueError, match="weights"):
        target_token_kl(student, teacher, 1.0, first[:-1])


def test_topk_kl_gradient_and_validation(logits):
    student, teacher = logits
    student = student.clone().requires_grad_(True)
    logprobs, indices = torch.log_softmax(teacher, -1).topk(4, dim=-1)
    topk_kl(student, logprobs, indices).backward()
    assert student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="int64"):
        topk_kl(student, logprobs, indices.int())
    with pytest.raises(ValueError, match=r"must both be \[N, k\]"):
        topk_kl(student, logprobs, indices[:, :2])
    with pytest.raises(ValueError, match="must lie in"):
        topk_kl(student, logprobs, indices + 100)


# --- hidden_state_mse ------------------------------------------------------------------------------


@pytest.fixture
def hiddens():
    generator = torch.Generator().manual_seed(1)
    student = [torch.randn(2, 4, 3, generator=generator) for _ in range(2)]
    teacher = [torch.randn(2, 4, 3, generator=generator) for _ in range(2)]
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    return student, teacher, mask


def test_hidden_state_mse_matches_definition(hiddens):
    student, teacher, mask = hiddens
    keep = mask.bool()
    expected = torch.stack([((s - t)[keep] ** 2).mean() for s, t in zip(student, teacher)]).mean()
    torch.testing.assert_close(hidden_state_mse(student, teacher, mask), expected)


def test_hidden_state_mse_zero_when_equal_and_masked_positions_do_not_count(hiddens):
    student, _, mask = hiddens
    assert hidden_state_mse(student, [s.clone() for s in student], mask).item() == 0.0
    teacher = [s.clone() for s in student]
    teacher[0][0, 3] = 1e6  # unmasked position: huge difference, no effect
    teacher[1][1, 3] = float("nan")
    assert hidden_state_mse(student, teacher, mask).item() == 0.0
    teacher[0][0, 0] += 2.0  # masked-in position: now it counts, 4 / (5 positions * 3 dims) / 2 layers
    assert hidden_state_mse(student, teacher, mask).item() == pytest.approx(4.0 * 3 / 15 / 2)


def test_hidden_state_mse_gradient_student_only_and_bf16(hiddens):
    student, teacher, mask = hiddens
    student = [s.to(torch.bfloat16).requires_grad_(True) for s in student]
    teacher = [t.clone().requires_grad_(True) for t in teacher]
    got = hidden_state_mse(student, teacher, mask)
    assert got.dtype == torch.float32
    got.backward()
    assert all(s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in teacher)


def test_hidden_state_mse_validation(hiddens):
    student, teacher, mask = hiddens
    with pytest.raises(ValueError, match="equal length"):
        hidden_state_mse(student, teacher[:1], mask)
    with pytest.raises(ValueError, match="equal length"):
        hidden_state_mse([], [], mask)
    with pytest.raises(ValueError, match="layer 0"):
        hidden_state_mse(student, teacher, mask[:, :3])


def test_hidden_state_mse_empty_mask_is_zero(hiddens):
    student, teacher, mask = hiddens
    assert hidden_state_mse(student, teacher, torch.zeros_like(mask)).item() == 0.0


# --- DistillationLoss ------------------------------------------------------------------------------


def test_distillation_loss_combines_terms(logits, hiddens):
    student, teacher = logits
    student_hidden, teacher_hidden, mask = hiddens
    ce = torch.tensor(1.25)
    loss_fn = DistillationLoss(lam=0.5, temperature=2.0, beta=3.0, kl_weight=2.0)
    out = loss_fn(ce, student, teacher, student_hidden, teacher_hidden, mask)
    kl = target_token_kl(student, teacher, 2.0)
    mse = hidden_state_mse(student_hidden, teacher_hidden, mask)
    assert set(out) == {"loss", "ce", "kl", "mse"}
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["mse"], mse)
    torch.testing.assert_close(out["loss"], ce + 0.5 * (2.0 * kl + 3.0 * mse))
    assert mse.item() > 0 and kl.item() > 0


def test_distillation_loss_skips_mse_without_hiddens_or_beta(logits, hiddens):
    student, teacher = logits
    student_hidden, teacher_hidden, mask = hiddens
    ce = torch.tensor(1.0)
    kl = target_token_kl(student, teacher, 2.0)
    for loss_fn, args in (
        (DistillationLoss(beta=0.0), (student_hidden, teacher_hidden, mask)),
        (DistillationLoss(beta=1.0), ([], [], None)),
    ):
        out = loss_fn(ce, student, teacher, *args)
        assert out["mse"].item() == 0.0
        torch.testing.assert_close(out["loss"], ce + kl)


def test_distillation_loss_gradients_flow_to_student(logits, hiddens):
    student, teacher = (t.clone().requires_grad_(True) for t in logits)
    student_hidden = [h.clone().requires_grad_(True) for h in hiddens[0]]
    out = DistillationLoss()(torch.tensor(0.0), student, teacher, student_hidden, hiddens[1], hiddens[2])
    out["loss"].backward()
    assert student.grad.abs().sum() > 0 and all(h.grad.abs().sum() > 0 for h in student_hidden)
    assert teacher.grad is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lam": -1.0}, "lam"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"beta": -0.1}, "beta"),
        ({"kl_weight": float("nan")}, "kl_weight"),
    ],
)
def test_distillation_loss_validates_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DistillationLoss(**kwargs)


def test_distillation_loss_requires_mask_for_mse_and_scalar_ce(logits, hiddens):
    student, teacher = logits
    with pytest.raises(ValueError, match="mask is required"):
        DistillationLoss()(torch.tensor(0.0), student, teacher, hiddens[0], hiddens[1], None)
    with pytest.raises(ValueError, match="ce must be a scalar"):
        DistillationLoss()(torch.zeros(2), student, teacher)


def test_distillation_loss_takes_a_precomputed_kl_or_exactly_one_teacher(logits, hiddens):
    student, teacher = logits
    ce, kl = torch.tensor(1.0), target_token_kl(student, teacher, 2.0)
    loss_fn = DistillationLoss(lam=0.5, beta=0.0, kl_weight=2.0)
    out = loss_fn(ce, None, kl=kl)  # the fused head path: the KL without logits
    torch.testing.assert_close(out["loss"], ce + 0.5 * 2.0 * kl)
    with pytest.raises(ValueError, match="exactly one"):
        loss_fn(ce, student, teacher, kl=kl)
    with pytest.raises(ValueError, match="exactly one"):
        loss_fn(ce, student)
    with pytest.raises(ValueError, match="kl must be a scalar"):
        loss_fn(ce, None, kl=torch.zeros(2))
