"""DecomposedPrompt: equal to PEFT's MultitaskPromptEmbedding, the two inits, target init, out-of-place forward."""

from __future__ import annotations

import pytest
import torch
from peft import MultitaskPromptTuningConfig
from peft.tuners.multitask_prompt_tuning import MultitaskPromptEmbedding
from torch.overrides import TorchFunctionMode

from metaprompt.prompts import DecomposedPrompt

K, L, D, R = 4, 6, 16, 3
IN_PLACE_DUNDERS = {"__imul__", "__iadd__", "__isub__", "__itruediv__", "__setitem__"}


def randomized(module: DecomposedPrompt, seed=0) -> DecomposedPrompt:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return module


def peft_twin(module: DecomposedPrompt) -> MultitaskPromptEmbedding:
    """PEFT's module holding the same P*, U and Vᵀ."""
    num_tasks, length, rank = module.task_cols.shape
    config = MultitaskPromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=length,
        token_dim=module.shared_prompt.shape[1],
        num_tasks=num_tasks,
        num_ranks=rank,
        num_transformer_submodules=1,
        prompt_tuning_init="RANDOM",
    )
    twin = MultitaskPromptEmbedding(config, torch.nn.Embedding(10, module.shared_prompt.shape[1]))
    with torch.no_grad():
        twin.embedding.weight.copy_(module.shared_prompt)
        twin.prefix_task_cols.copy_(module.task_cols)
        twin.prefix_task_rows.copy_(module.task_rows.transpose(1, 2))
    return twin


class InPlaceRecorder(TorchFunctionMode):
    """Records in-place tensor ops (``mul_``, ``*=`` ...) called while active."""

    def __init__(self):
        super().__init__()
        self.in_place = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in IN_PLACE_DUNDERS or (name.endswith("_") and not name.startswith("_")):
            self.in_place.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("rank", [1, R])
def test_equals_peft_multitask_prompt_embedding(rank):
    module = randomized(DecomposedPrompt(K, L, D, rank))
    twin = peft_twin(module)
    task_ids = torch.tensor([2, 0, 3, 2, 1, 0])
    indices = torch.arange(L).expand(len(task_ids), L)
    expected = twin(indices, task_ids)
    out = module(task_ids)
    assert out.shape == (6, L, D)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out[0], out[1])  # mixed task ids give different prompts
    for row, task in enumerate(task_ids.tolist()):  # and the formula itself, row by row
        manual = module.shared_prompt * (module.task_cols[task] @ module.task_rows[task].T)
        torch.testing.assert_close(out[row], manual)


def test_task_matrix_is_u_times_v_transposed():
    module = randomized(DecomposedPrompt(K, L, D, R))
    task_ids = torch.tensor([3, 1])
    matrix = module.task_matrix(task_ids)
    assert matrix.shape == (2, L, D)
    torch.testing.assert_close(matrix[0], module.task_cols[3] @ module.task_rows[3].T)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_identity_init_makes_every_task_prompt_the_shared_prompt(rank):
    module = DecomposedPrompt(K, L, D, rank)
    with torch.no_grad():
        module.shared_prompt.copy_(torch.randn(L, D))
    out = module(torch.arange(K))
    for task in range(K):
        assert torch.equal(out[task], module.shared_prompt)
    if rank > 1:  # the extra columns of U differ (symmetry broken), those of V start at zero
        assert not torch.equal(module.task_cols[0, :, 1], module.task_cols[0, :, 0])
        assert torch.count_nonzero(module.task_rows[..., 1:]) == 0


def test_ones_init_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="rank 1"):
        DecomposedPrompt(K, L, D, 2, factor_init="ones")


def _train_to_rank2_target(factor_init_fn, steps: int = 400) -> torch.Tensor:
    """Fit one task's U Vᵀ (P* = 1) to a rank-2 matrix; returns the singular values of the result."""
    g = torch.Generator().manual_seed(0)
    length, dim = 12, 16
    goal = torch.ones(length, dim) + torch.randn(length, 1, generator=g) @ torch.randn(1, dim, generator=g)
    module = DecomposedPrompt(1, length, dim, rank=2)
    factor_init_fn(module)
    with torch.no_grad():
        module.shared_prompt.fill_(1.0)
    opt = torch.optim.Adam(module.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss = (module(torch.tensor([0]))[0] - goal).pow(2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3 or factor_init_fn is _all_ones
    return torch.linalg.svdvals(module.task_matrix(torch.tensor([0]))[0].detach())


def _all_ones(module: DecomposedPrompt) -> None:
    """The former default: every column of U = 1, of V = 1/r (identical columns, identical gradients)."""
    with torch.no_grad():
        module.task_cols.fill_(1.0)
        module.task_rows.fill_(1.0 / module.rank)


def test_rank2_factors_reach_numerical_rank_2_from_the_identity_init():
    s = _train_to_rank2_target(lambda m: m.reset_factors("identity"))
    assert s[1] / s[0] > 0.05  # the goal's second singular value is a real fraction of the first
    # the former all-ones init never leaves rank 1 (this is the defect the identity init fixes)
    s_ones = _train_to_rank2_target(_all_ones)
    assert s_ones[1] / s_ones[0] < 1e-4


def test_normal_init_is_peft_scale_and_seeded():
    module = DecomposedPrompt(K, 32, 64, 2, factor_init="normal")
    for p in (module.task_cols, module.task_rows):
        assert p.std().item() == pytest.approx(0.02, rel=0.2)
    again = DecomposedPrompt(K, 32, 64, 2, factor_init="normal")
    assert torch.equal(again.task_rows, module.task_rows)
    with pytest.raises(ValueError, match="factor_init"):
        DecomposedPrompt(K, L, D, factor_init="zeros")
    with pytest.raises(ValueError, match="positive sizes"):
        DecomposedPrompt(K, L, D, rank=0)


def test_init_from_mean_is_the_mean_task_matrix_truncated_by_svd():
    g = torch.Generator().manual_seed(1)
    shared = torch.randn(L, D, generator=g)
    cols, rows = torch.randn(5, L, R, generator=g), torch.randn(5, D, R, generator=g)
    mean = torch.einsum("klr,kdr->ld", cols, rows) / 5
    target = DecomposedPrompt(2, L, D, R)
    target.init_from_mean(shared, cols, rows)
    assert torch.equal(target.shared_prompt, shared)
    u, s, vh = torch.linalg.svd(mean)
    best = (u[:, :R] * s[:R]) @ vh[:R]  # Eckart-Young: the best rank-R approximation
    for task in range(2):
        torch.testing.assert_close(target.task_matrix(torch.tensor([task]))[0], best, atol=1e-5, rtol=1e-5)
    # averaging U and V separately (PEFT's rule) is a different, worse matrix: factors have a free scale
    separate = cols.mean(0) @ rows.mean(0).T
    assert (separate - mean).norm() > (best - mean).norm()
    # the parameters own their memory: training one target's factors cannot move the other's
    with torch.no_grad():
        target.task_cols[0].add_(1.0)
    assert not torch.equal(target.task_cols[1], target.task_cols[0])


def test_init_from_mean_of_identical_rank1_sources_is_exact():
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(L, 1, generator=g), torch.randn(D, 1, generator=g)
    # the same task matrix written with different per-task scales and signs
    cols = torch.stack([u * 2.0, -u, u / 4])
    rows = torch.stack([v / 2.0, -v, v * 4])
    target = DecomposedPrompt(1, L, D, 1)
    target.init_from_mean(torch.ones(L, D), cols, rows)
    torch.testing.assert_close(target.task_matrix(torch.tensor([0]))[0], u @ v.T, atol=1e-5, rtol=1e-5)


def test_forward_is_out_of_place_and_trains_every_factor():
    module = randomized(DecomposedPrompt(K, L, D, R))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    recorder = InPlaceRecorder()
    with recorder:
        out = module(torch.tensor([0, 2, 2]))
    assert recorder.in_place == [], f"in-place ops on the prompt path: {recorder.in_place}"
    out.pow(2).sum().backward()
    for name, p in module.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed by forward/backward"
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
    assert module.task_cols.grad[1].abs().sum() == 0  # task 1 was not in the batch


def test_in_place_recorder_catches_peft_multiplying_in_place():
    # guards the test above against a recorder that sees nothing
    twin = peft_twin(randomized(DecomposedPrompt(K, L, D, R)))
    recorder = InPlaceRecorder()
    with recorder:
        twin(torch.arange(L).expand(2, L), torch.tensor([0, 1]))
    assert recorder.in_place


def test_dtype_cast_at_use():
    module = randomized(DecomposedPrompt(K, L, D, R))
    out = module(torch.tensor([1]), dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and module.shared_prompt.dtype == torch.float32
