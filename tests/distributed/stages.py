"""What the distributed runs train: the data, each stage's module, and the single-process reference.

Shared by ``worker.py`` (2 ranks) and ``test_strategies.py`` (the reference replay), so both build
exactly the same modules.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from metaprompt.data import MultitaskDataModule
from metaprompt.modules import LoRA, MultitaskDistillation, TargetAdaptation, TeacherPromptTuning

STEPS, EXTRA = 2, 2  # steps before the checkpoint, and after resuming from it
# gad (re) and rqe (nli) validation rows go to ranks 0 and 1: their budgets differ, so generation lengths do.
MAX_NEW_TOKENS = {"ner": 4, "re": 6, "qa": 4, "nli": 2, "summarization": 4}
DATA = dict(
    tasks="gad,rqe",
    backbone="tiny-llama",  # tokenizer only: both tiny backbones use SmolLM2's
    max_length=96,
    min_prompt_tokens=32,
    batch_size=2,
    eval_batch_size=1,
    k_shot=8,
    max_eval_per_task=1,
)
# label_scoring="generated": these runs check that ranks decode in lock-step, so rqe (NLI) must be decoded too.
COMMON = dict(
    prompt_length=4,
    optim={"lr": 0.01},
    evaluation={"max_new_tokens": MAX_NEW_TOKENS, "log_predictions": 2, "label_scoring": "generated"},
    seed=0,
)


def data_module(root: str, cache_dir: str) -> MultitaskDataModule:
    return MultitaskDataModule(root=root, cache_dir=cache_dir, **DATA)


def stage_module(stage: str, backbone: str, task_names: list[str], upstream: dict[str, str]) -> L.LightningModule:
    """The module of one stage; ``upstream`` maps earlier stages to their adapter folders."""
    kw = dict(COMMON, backbone=backbone, task_names=task_names)
    if stage == "teacher":
        return TeacherPromptTuning(**kw)
    if stage == "distill":
        return MultitaskDistillation(teacher_adapter=upstream["teacher"], factor_lr=0.005, **kw)
    if stage == "target":
        return TargetAdaptation(metaprompt_adapter=upstream["distill"], **kw)
    if stage == "lora":
        return LoRA(r=2, alpha=4, dropout=0.0, **{**kw, "prompt_length": 0})
    raise ValueError(f"unknown stage {stage!r}")


def reference_adapter(
    stage: str,
    backbone: str,
    task_names: list[str],
    upstream: dict[str, str],
    rank_batches: list[list[dict]],
    out: Path,
    isolate_task_updates: bool = True,
) -> Path:
    """Replay the ranks' batches in one process and export the adapter.

    Step t of the 2-rank run averaged the gradients of rank 0's and rank 1's t-th batches; here those
    two batches are consecutive micro-batches of one optimizer step (``accumulate_grad_batches=2``,
    Lightning divides each loss by 2), which is the same gradient.
    """
    steps = len(rank_batches[0])
    if any(len(b) != steps for b in rank_batches):
        raise ValueError(f"ranks trained on different numbers of batches: {[len(b) for b in rank_batches]}")
    replay = [batches[t] for t in range(steps) for batches in rank_batches]
    module = stage_module(stage, backbone, task_names, upstream)
    # ZeRO and FSDP2 hide the task rows from TaskAdamW (metaprompt.optim): replay their plain-AdamW update
    module.isolate_task_updates = isolate_task_updates
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        accumulate_grad_batches=len(rank_batches),
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=DataLoader(replay, batch_size=None))
    assert trainer.global_step == steps
    module.export_adapter(str(out))
    return out


def load_batches(folder: Path, world_size: int = 2) -> list[list[dict]]:
    return [torch.load(folder / f"batches_rank{r}.pt", weights_only=True) for r in range(world_size)]
