"""Checkpoints hold the adapter only, and resuming from one continues the run exactly.

Every step sees the same fixed batch: Lightning does not mark the epoch of a checkpoint taken at
``max_steps`` as finished, so a resumed run restarts that epoch's (non-stateful) loader; with one batch
the data order cannot differ from an uninterrupted run. A warm-up longer than N makes the learning rate
depend on the step, so a scheduler or step counter that restarted on resume shows in the final prompts.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from metaprompt.data.collate import CausalLMCollator
from metaprompt.modules import TeacherPromptTuning

N, EXTRA = 3, 3
TASKS = ["a", "b"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matmuls: threads only add contention


def fixed_batches():
    g = torch.Generator().manual_seed(0)
    batch = CausalLMCollator(pad_token_id=2)(
        [
            {
                "uid": str(i),
                "task_id": i % 2,
                "prompt_ids": torch.randint(3, 5000, (6 + i,), generator=g).tolist(),
                "target_ids": torch.randint(3, 5000, (3,), generator=g).tolist(),
            }
            for i in range(4)
        ]
    )
    return DataLoader([batch] * N, batch_size=None)


def model():
    return TeacherPromptTuning(
        backbone="tiny-llama", task_names=TASKS, prompt_length=4, optim={"lr": 0.05, "warmup_steps": 8}, seed=0
    )


def trainer(max_steps, root, callbacks=(), checkpointing=False):
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        enable_checkpointing=checkpointing,
        default_root_dir=root,
    )


class StartState(L.Callback):
    """What the trainer holds when training (re)starts: step, optimizer moments, learning rate."""

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        state = optimizer.state[optimizer.param_groups[0]["params"][0]]
        self.global_step = trainer.global_step
        self.exp_avg = state["exp_avg"].clone() if "exp_avg" in state else None
        self.lr = optimizer.param_groups[0]["lr"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    checkpoint = ModelCheckpoint(dirpath=folder, save_last=True)
    module = model()
    trainer(N, folder, [checkpoint], checkpointing=True).fit(module, train_dataloaders=fixed_batches())
    return module, folder / "last.ckpt"


def test_checkpoint_holds_only_the_trainable_prompts(first_run):
    module, last = first_run
    assert last.is_file()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert list(saved["state_dict"]) == ["prompts.prompts"]
    assert torch.equal(saved["state_dict"]["prompts.prompts"], module.prompts.prompts.detach())
    assert saved["global_step"] == N
    backbone_bytes = sum(p.numel() * p.element_size() for p in module.backbone.parameters())
    assert last.stat().st_size < 100_000 < backbone_bytes // 10  # kilobytes, not the 12 MB backbone


def test_resume_continues_the_run_exactly(first_run, tmp_path):
    _, last = first_run
    saved = torch.load(last, map_location="cpu", weights_only=False)

    resumed, start = model(), StartState()
    trainer(N + EXTRA, tmp_path, [start]).fit(resumed, train_dataloaders=fixed_batches(), ckpt_path=str(last))
    assert start.global_step == N
    assert start.exp_avg is not None, "optimizer state was not restored"
    assert torch.equal(start.exp_avg, saved["optimizer_states"][0]["state"][0]["exp_avg"])
    assert start.lr == pytest.approx(0.05 * (N + 1) / 9)  # the warm-up carried on from step N
    assert resumed.trainer.global_step == N + EXTRA

    straight = model()
    trainer(N + EXTRA, tmp_path).fit(straight, train_dataloaders=fixed_batches())
    torch.testing.assert_close(resumed.prompts.prompts, straight.prompts.prompts, atol=1e-6, rtol=0)
    # and the extra steps did move the prompts past the checkpoint
    assert not torch.allclose(resumed.prompts.prompts, saved["state_dict"]["prompts.prompts"], atol=1e-6)


def test_load_from_checkpoint_restores_the_trained_prompts(first_run):
    module, last = first_run
    loaded = TeacherPromptTuning.load_from_checkpoint(last)
    assert torch.equal(loaded.prompts.prompts, module.prompts.prompts.detach())
    fresh = model()
    fresh.configure_model()
    assert not torch.equal(fresh.prompts.prompts, loaded.prompts.prompts)
