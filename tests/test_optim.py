"""TaskAdamW: a task's rows move only on steps that trained the task; otherwise exactly AdamW. OptimArgs: the
validated optimizer/schedule settings every stage takes, and the schedule they build."""

from __future__ import annotations

import pytest
import torch

from metaprompt.optim import OptimArgs, TaskAdamW, build_optimizer, build_schedule, schedule_factor


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


def test_optim_args_come_from_dicts_and_reject_unknown_keys_and_bad_values():
    assert OptimArgs.of({"lr": 0.1}) == OptimArgs(lr=0.1) and OptimArgs.of(None) == OptimArgs()
    assert OptimArgs.of({"lr": 0.1}, weight_decay=0.0) == OptimArgs(lr=0.1, weight_decay=0.0)  # a module's defaults
    assert OptimArgs(betas=[0.8, 0.9]).to_dict()["betas"] == [0.8, 0.9]
    with pytest.raises(ValueError, match=r"optim: no setting\(s\) \['learning_rate'\]; it has \['betas'"):
        OptimArgs.of({"learning_rate": 0.1})
    for bad, match in (
        ({"schedule": "step"}, "schedule must be one of"),
        ({"lr": -1.0}, "must be >= 0"),
        ({"warmup_steps": -2}, "must be >= 0"),
        ({"betas": (0.9, 1.0)}, r"betas must be two numbers in \[0, 1\)"),
        ({"betas": (0.9,)}, "betas must be two numbers"),
    ):
        with pytest.raises(ValueError, match=match):
            OptimArgs(**bad)


def test_warmup_ramps_linearly_then_stays_constant():
    factor = schedule_factor(OptimArgs(warmup_steps=3), None)
    assert [factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert schedule_factor(OptimArgs(), None)(0) == 1.0  # no warm-up: the full rate from the first step


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_reaches_zero_at_the_last_step(schedule):
    factor = schedule_factor(OptimArgs(warmup_steps=2, schedule=schedule), 10)
    values = [factor(s) for s in range(11)]
    assert values[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and values[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[2:], values[3:]))  # monotone after warm-up
    mid = factor(6)  # halfway through the decay
    assert mid == pytest.approx(0.5)
    with pytest.raises(ValueError, match="set trainer.max_steps above warmup_steps"):
        schedule_factor(OptimArgs(warmup_steps=5, schedule=schedule), 5)


def test_the_built_optimizer_and_schedule_apply_the_args():
    p = torch.nn.Parameter(torch.zeros(3, 2))
    args = OptimArgs(lr=0.2, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6, warmup_steps=1)
    groups = [{"params": [p], "task_indexed": True}]
    opt = build_optimizer(groups, args, task_rows=True)
    assert isinstance(opt, TaskAdamW) and opt.param_groups[0]["task_indexed"]
    plain = build_optimizer(groups, args, task_rows=False)
    assert type(plain) is torch.optim.AdamW and "task_indexed" not in plain.param_groups[0]
    assert plain.defaults["betas"] == (0.8, 0.9) and plain.defaults["eps"] == 1e-6
    entry = build_schedule(opt, args, None)
    assert entry["interval"] == "step" and opt.param_groups[0]["lr"] == pytest.approx(0.1)  # warm-up step 0: 1/2
