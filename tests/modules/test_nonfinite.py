"""Non-finite numbers stop the run: a diverging fit fails naming its step and tasks and exports nothing;
adapters holding NaN/inf are refused on save and on load (file and tensor named)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from metaprompt.__main__ import main
from metaprompt.adapters import AdapterConfig, load_adapter, save_adapter
from metaprompt.configs import CONFIG_DIR
from metaprompt.modules import TeacherPromptTuning

pytestmark = pytest.mark.usefixtures("one_thread")


def fit_args(tmp_path, data_root, lr: str) -> list[str]:
    return [
        "fit", "-c", str(CONFIG_DIR / "teacher.yaml"), "-c", str(CONFIG_DIR / "backbones" / "tiny-llama.yaml"),
        "--data.root", str(data_root), "--data.tasks", "[rqe, gad]", "--data.max_length", "96",
        "--data.min_prompt_tokens", "32", "--data.batch_size", "2", "--model.init_args.prompt_length", "2",
        "--model.init_args.optim.lr", lr, "--model.init_args.optim.warmup_steps", "0",
        "--trainer.max_steps", "6", "--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
    ]  # fmt: skip


def last_error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_diverging_fit_stops_at_its_step_naming_the_tasks(tmp_path, data_root, capsys):
    # lr 1e30: the prompt reaches 1e30 after one update; its square overflows float32, so the backbone's norm
    # would silently zero it and the loss stay finite: caught on the parameter itself
    assert main(fit_args(tmp_path, data_root, "1e30")) == 1
    err = last_error_line(capsys)
    assert err.startswith("metaprompt fit: step 1: prompts.prompts reached 1e+30 after the update on a batch of ")
    assert err.split("batch of ")[1].split(":")[0] in ("rqe", "gad") and "training diverged" in err
    assert not (tmp_path / "adapter").exists()  # no diverged adapter left behind


def test_a_non_finite_loss_or_gradient_stops_the_fit(tmp_path, data_root, capsys, monkeypatch):
    compute = TeacherPromptTuning.compute_loss

    def nan_at_step_2(self, batch):
        losses = compute(self, batch)
        return {**losses, "loss": losses["loss"] * float("nan")} if self.global_step == 2 else losses

    monkeypatch.setattr(TeacherPromptTuning, "compute_loss", nan_at_step_2)
    assert main(fit_args(tmp_path, data_root, "0.01")) == 1
    assert last_error_line(capsys).startswith("metaprompt fit: step 2: the loss is nan on a batch of ")

    def nan_gradient(self, batch):  # a finite loss with a NaN gradient: d sqrt(x)/dx at 0 is inf, times 0
        losses = compute(self, batch)
        return {**losses, "loss": losses["loss"] + (self.prompts.prompts * 0).sqrt().sum()}

    monkeypatch.setattr(TeacherPromptTuning, "compute_loss", nan_gradient)
    assert main(fit_args(tmp_path, data_root, "0.01")) == 1
    assert last_error_line(capsys).startswith(
        "metaprompt fit: step 0: non-finite gradient of prompts.prompts on a batch"
    )
    assert not (tmp_path / "adapter").exists()


def test_adapters_with_nan_are_refused_on_save_and_on_load(tmp_path):
    config = AdapterConfig(kind="teacher", backbone="tiny-llama", hidden_size=8, prompt_length=4, rank=0,
                           task_names=["a", "b"])  # fmt: skip
    prompts = torch.randn(2, 4, 8)
    prompts[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values \(NaN/inf\) in prompts \(1 of 64\)"):
        save_adapter(tmp_path / "a", {"prompts": prompts}, config)
    folder = save_adapter(tmp_path / "b", {"prompts": torch.randn(2, 4, 8)}, config)  # then a NaN teacher on disk
    save_file({"prompts": prompts}, str(folder / "adapter.safetensors"), metadata={"format": "pt"})
    assert json.loads((folder / "adapter.json").read_text())["kind"] == "teacher"
    with pytest.raises(
        ValueError, match=rf"{folder / 'adapter.safetensors'}: non-finite values \(NaN/inf\) in prompts"
    ):
        load_adapter(folder)  # what a distillation from that teacher does first
