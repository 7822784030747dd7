"""How every stage optimizes: ``OptimArgs`` (one documented dataclass, the module's ``optim`` argument) and
``TaskAdamW``, AdamW whose per-task parameter rows move only on steps that trained that task.

``OptimArgs`` is what a YAML's ``model.init_args.optim`` holds (``--model.init_args.optim.lr 0.03`` on the
command line); ``build_optimizer`` and ``build_schedule`` turn it into the optimizer and the per-step
schedule that ``PromptModule.configure_optimizers`` returns. The optimizer is AdamW by design (prompt
tuning with AdamW: ATTEMPT, MPT): ``TaskAdamW`` where task rows are visible, ``torch.optim.AdamW`` (the
same maths) under ZeRO/FSDP2. LightningCLI's generic ``--optimizer``/``--lr_scheduler`` groups are off
(``MetapromptCLI``): they would replace the per-task row rule and the stages' parameter groups.

Teacher prompts ``[K, l, d]`` and task factors ``[K, l, r]`` / ``[K, d, r]`` hold all K tasks in one
tensor. With a plain AdamW, a step whose batch lacks task j still moves task j's rows (the momentum of
earlier steps and the weight decay keep acting), so with 21 tasks and a batch of 8 most updates of a
task are stale, and "one independent teacher per task" is not what gets trained. Here a row (index on
dim 0) of a parameter in a group marked ``task_indexed`` is updated only when its gradient is non-zero,
i.e. when the batch (on any rank, after the all-reduce) had a row of that task, and each row keeps its
own step count for the bias correction: exactly an AdamW per task, stepping when its task is seen.
Equivalent to per-task parameters under PyTorch's ``grad is None`` skip, without splitting tensors
(adapter files, checkpoints and sharding keep their layout). A row whose gradient is exactly zero for
another reason is also skipped, which is AdamW's own behaviour for an all-zero gradient up to momentum.

Limits: the row rule needs the parameter whole on the process (single device or DDP). Under DeepSpeed
ZeRO (flattened fp32 partitions) and FSDP2 (DTensor shards), rows are not visible, and the step is the
plain AdamW update (same maths as ``torch.optim.AdamW``); ``PromptModule`` warns when that happens.
PyTorch's ``SparseAdam`` would need sparse gradients (not supported by DDP over NCCL or by FSDP2) and
has no weight decay, so it does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metaprompt.groups import ArgGroup

SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class OptimArgs(ArgGroup):
    """AdamW and its learning-rate schedule (a stage module's ``optim`` argument).

    Attributes:
        lr: Peak learning rate of the trainable parameters (per stage: see its YAML).
        weight_decay: Decoupled weight decay (1e-5: ATTEMPT, Asai et al. 2022).
        betas: Adam's (β1, β2).
        eps: Adam's ε.
        warmup_steps: Linear warm-up over this many steps: the factor at step s is ``min(1, (s + 1) /
            (warmup_steps + 1))``.
        schedule: After warm-up: ``constant`` (ATTEMPT, MPT), or ``linear`` / ``cosine`` decay to 0 at the
            trainer's last step (``trainer.max_steps``).
    """

    name = "optim"

    lr: float = 0.3
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: str = "constant"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr < 0 or self.eps < 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError(f"optim: lr, eps, weight_decay and warmup_steps must be >= 0, got {self}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))


def build_optimizer(groups: list[dict], args: OptimArgs, task_rows: bool) -> torch.optim.Optimizer:
    """AdamW over ``groups`` (a group may set its own ``lr``): ``TaskAdamW`` when ``task_rows`` (the
    per-task row rule), else ``torch.optim.AdamW`` without the ``task_indexed`` marks (ZeRO, FSDP2)."""
    kw = dict(lr=args.lr, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay)
    if task_rows:
        return TaskAdamW(groups, **kw)
    return torch.optim.AdamW([{k: v for k, v in g.items() if k != "task_indexed"} for g in groups], **kw)


def schedule_factor(args: OptimArgs, total_steps: int | None):
    """The multiplier of the learning rate at each step (``LambdaLR``'s function of the step index)."""
    warmup = args.warmup_steps
    if args.schedule != "constant" and not (total_steps and total_steps > warmup):
        raise ValueError(
            f"optim.schedule={args.schedule!r} decays to 0 at the last step: set trainer.max_steps above "
            f"warmup_steps ({warmup}), got {total_steps}"
        )

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / (warmup + 1))
        if args.schedule == "constant" or step < warmup:
            return ramp
        done = min(1.0, (step - warmup) / (total_steps - warmup))
        return 1.0 - done if args.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


def build_schedule(optimizer: torch.optim.Optimizer, args: OptimArgs, total_steps: int | None) -> dict:
    """Lightning's ``lr_scheduler`` entry: :func:`schedule_factor` applied every optimizer step."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(args, total_steps))
    return {"scheduler": scheduler, "interval": "step"}


def _rows_visible(p: torch.Tensor) -> bool:
    return p.dim() >= 2 and type(p) in (torch.Tensor, torch.nn.Parameter)


class TaskAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, as ``torch.optim.AdamW``) with per-task rows.

    Args:
        params: Parameters or groups; a group with ``task_indexed=True`` holds tensors whose dim 0 is the
            task (``[K, ...]``), updated row by row (see module docstring).
        lr, betas, eps, weight_decay: As in ``torch.optim.AdamW``.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"TaskAdamW: invalid lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, task_indexed=False)
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                by_row = group["task_indexed"] and _rows_visible(p)
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    # per-row step counts for task rows (a row's own bias correction), else one count
                    state["step"] = torch.zeros(p.shape[0] if by_row else (), dtype=torch.float32)
                if by_row:
                    rows = p.grad.flatten(1).ne(0).any(1).nonzero().squeeze(1)
                    if rows.numel():
                        self._update(p, p.grad, state, rows, group, beta1, beta2)
                else:
                    self._update(p, p.grad, state, None, group, beta1, beta2)
        return loss

    @staticmethod
    def _update(p, grad, state, rows, group, beta1, beta2) -> None:
        """One AdamW update of ``p`` (or of its ``rows``), the same operations as ``torch.optim.AdamW``."""
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if rows is None:
            state["step"] += 1
            step = float(state["step"])
            p.mul_(1 - lr * wd)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
            return
        rows_cpu = rows.cpu()
        state["step"][rows_cpu] += 1
        shape = (-1,) + (1,) * (p.dim() - 1)
        step = state["step"][rows_cpu].to(device=p.device, dtype=p.dtype).view(shape)
        g, m, v, w = grad[rows], exp_avg[rows], exp_avg_sq[rows], p[rows]
        w.mul_(1 - lr * wd)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (v.sqrt() / (1 - beta2**step).sqrt()).add_(eps)
        w.addcdiv_(m, denom * (1 - beta1**step), value=-lr)
        exp_avg[rows], exp_avg_sq[rows], p[rows] = m, v, w
