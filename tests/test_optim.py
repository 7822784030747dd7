"""TaskAdamW: a task's rows move only on steps that trained the task; otherwise exactly AdamW."""

from __future__ import annotations

import pytest
import torch

from metaprompt.optim import TaskAdamW


def _grad_for(param: torch.Tensor, tasks: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    grad = torch.zeros_like(param)
    for t in tasks:
        grad[t] = torch.randn(param.shape[1:], generator=g)
    return grad


def test_a_step_without_task_j_leaves_its_rows_bit_identical():
    prompts = torch.nn.Parameter(torch.randn(3, 4, 5))
    opt = TaskAdamW([{"params": [prompts], "task_indexed": True}], lr=0.1, weight_decay=0.01)
    for step, tasks in enumerate([[0, 1, 2], [0, 1], [1]]):  # task 2 then 0 drop out, with momentum
        before = prompts.detach().clone()
        prompts.grad = _grad_for(prompts, tasks, step)
        opt.step()
        for t in range(3):
            moved = not torch.equal(prompts[t], before[t])
            assert moved == (t in tasks), f"step {step}: task {t} moved={moved}"
    assert opt.state[prompts]["step"].tolist() == [2, 3, 1]


def test_each_row_is_the_adamw_of_its_own_steps():
    """Row t after its n steps equals torch's AdamW run on that row's gradients alone."""
    torch.manual_seed(0)
    init = torch.randn(2, 3)
    prompts = torch.nn.Parameter(init.clone())
    ref = [torch.nn.Parameter(init[t].clone()) for t in range(2)]
    opt = TaskAdamW([{"params": [prompts], "task_indexed": True}], lr=0.05, weight_decay=0.1)
    refs = [torch.optim.AdamW([r], lr=0.05, weight_decay=0.1) for r in ref]
    for step, tasks in enumerate([[0], [0, 1], [1], [0, 1], [0]]):
        grad = _grad_for(prompts, tasks, step)
        prompts.grad = grad
        opt.step()
        for t in tasks:
            ref[t].grad = grad[t].clone()
            refs[t].step()
    for t in range(2):
        torch.testing.assert_close(prompts[t], ref[t], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("task_indexed", [False, True])
def test_dense_gradients_match_torch_adamw(task_indexed):
    torch.manual_seed(1)
    ours, theirs = torch.nn.Parameter(torch.randn(4, 6)), torch.nn.Parameter(torch.zeros(4, 6))
    theirs.data.copy_(ours.data)
    opt = TaskAdamW([{"params": [ours], "task_indexed": task_indexed}], lr=0.01, weight_decay=1e-2)
    ref = torch.optim.AdamW([theirs], lr=0.01, weight_decay=1e-2)
    for _ in range(5):
        grad = torch.randn(4, 6)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="invalid"):
        TaskAdamW([torch.nn.Parameter(torch.zeros(1))], lr=-1)
