"""The pipeline checks every run's settings before the first one starts, resumes an interrupted run from its
checkpoint (only one written under the same record key), and skips a finished run only while the adapter
its record describes is still there, unchanged."""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from metaprompt.pipeline import Pipeline, PipelineConfig, Stage, adapter_digest

pytestmark = pytest.mark.usefixtures("one_thread")


def config(tmp_path, data_root, **kw) -> PipelineConfig:
    return PipelineConfig(
        output_dir=str(tmp_path), backbone="tiny-llama", prompt_length=2, sources="gad", targets="rqe",
        data={"root": str(data_root), "batch_size": 4, "max_length": 128, "max_eval_per_task": 2}, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"lora": Stage(2, model={"r": "eight"})}, "rqe/LoRA (lora stage): model.r: Expected a <class 'int'>"),
        ({"lora": Stage("x")}, "rqe/LoRA (lora stage): trainer.max_steps: Expected a <class 'int'>"),
        (
            {"prompt_tuning": Stage(2, model={"fast_paths": {"fused_los": False}})},
            "rqe/prompt tuning (prompt_tuning stage): fast_paths: unknown switch(es) ['fused_los']",
        ),
        (
            {"lora": Stage(2, model={"dropout": "high"})},
            "rqe/LoRA (lora stage): model.dropout: Expected a <class 'float'>",
        ),
    ],
)
def test_a_bad_setting_of_the_last_stage_fails_before_the_first_trains(tmp_path, data_root, settings, message):
    pipe = Pipeline(config(tmp_path, data_root, **settings))  # the keys are known: only a value is wrong
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        pipe.run()
    assert "\n" not in str(err.value)
    assert not (tmp_path / "teacher").exists()  # nothing ran


def test_a_bad_trainer_setting_fails_before_any_run(tmp_path, data_root):
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text("trainer:\n  devicez: 1\n")
    with pytest.raises(ValueError, match=r"^teacher \(teacher stage\): .*'devicez'$"):
        Pipeline(config(tmp_path / "out", data_root, strategy=str(strategy))).run()
    assert not (tmp_path / "out" / "teacher").exists()


class Crash(L.Callback):
    """Stops the fit with an error at ``step`` (after that step's checkpoint): an interrupted run."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("interrupted")


def lora_run(pipe: Pipeline):
    return dataclasses.replace(pipe.runs_for_target("rqe")["LoRA"], test=False)


@pytest.mark.parametrize("crash, resumed", [(3, 2), (6, 6)])
def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(
    tmp_path, data_root, capsys, monkeypatch, crash, resumed
):
    """16 rows, batches of 4, checkpoints every 2 steps; LoRA's dropout draws from the RNG. Interrupted at
    step 3 (mid-epoch), or after the last step's checkpoint but before the adapter's export (nothing is left
    to train then: the resumed fit exports the restored adapter)."""
    settings = {"lora": Stage(6, data={"k_shot": 16}), "checkpoint_every": 2}
    straight = Pipeline(config(tmp_path / "straight", data_root, **settings))
    straight.execute(lora_run(straight))

    pipe = Pipeline(config(tmp_path / "resumed", data_root, **settings))
    run = lora_run(pipe)
    original = Pipeline.resume_point

    def crashing(self, run, key, trainer):
        resume = original(self, run, key, trainer)
        trainer.callbacks.append(Crash(crash))
        return resume

    monkeypatch.setattr(Pipeline, "resume_point", crashing)
    with pytest.raises(RuntimeError, match="interrupted"):
        pipe.execute(run)
    monkeypatch.undo()
    checkpoints = run.folder / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == resumed
    assert not (run.folder / "adapter").exists()
    capsys.readouterr()

    pipe.execute(run)
    assert f"rqe/LoRA: resuming from its checkpoint at step {resumed}" in capsys.readouterr().out
    expected = load_file(tmp_path / "straight" / "targets" / "rqe" / "LoRA" / "adapter" / "adapter.safetensors")
    got = load_file(run.folder / "adapter" / "adapter.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-6, rtol=0, msg=name)
    assert not checkpoints.exists()  # finished: the record replaces them

    # the record holds the adapter's digest: skipped while it matches, rerun once the adapter changed
    record = tmp_path / "resumed" / "done" / "rqe__LoRA.json"
    assert f'"adapter_digest": "{adapter_digest(run.folder / "adapter")}"' in record.read_text()
    pipe.execute(run)
    assert "rqe/LoRA: up to date, skipped" in capsys.readouterr().out
    (run.folder / "adapter" / "adapter.safetensors").write_bytes(b"edited")
    pipe.execute(run)
    out = capsys.readouterr().out
    assert "rqe/LoRA: its record matches, but its adapter" in out and "is not the one recorded" in out
    assert "rqe/LoRA: done in" in out


def test_checkpoints_of_other_settings_are_not_resumed(tmp_path, data_root, capsys):
    pipe = Pipeline(config(tmp_path, data_root))
    run = lora_run(pipe)
    folder = run.folder / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"global_step": 4}, folder / "last.ckpt")
    (folder / "key").write_text("an-earlier-key\n")
    trainer = SimpleNamespace(callbacks=[])
    assert pipe.resume_point(run, "this-key", trainer) is None
    assert "its checkpoints are of other settings: starting over" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["key"] and (folder / "key").read_text() == "this-key\n"
    assert pipe.resume_point(run, "this-key", trainer) is None  # an attempt killed before its first checkpoint
    assert "starting over" not in capsys.readouterr().out and (folder / "key").is_file()
    torch.save({"global_step": 4}, folder / "last.ckpt")  # an attempt under this key
    assert pipe.resume_point(run, "this-key", trainer) == str(folder / "last.ckpt")
    assert [type(c).__name__ for c in trainer.callbacks] == ["ResumeCheckpoint"] * 3
    assert trainer.callbacks[0]._every_n_train_steps == 50 and trainer.callbacks[0].dirpath.endswith("checkpoints")
    off = Pipeline(config(tmp_path / "off", data_root, checkpoint_every=0))
    assert off.resume_point(lora_run(off), "k", SimpleNamespace(callbacks=[])) is None


def test_a_matching_record_needs_the_adapter_it_describes(tmp_path, data_root):
    pipe = Pipeline(config(tmp_path, data_root))
    teacher, lora = pipe.runs_for_sources()[0], pipe.runs_for_target("rqe")["LoRA"]
    for run in (teacher, lora):
        (run.folder / "adapter").mkdir(parents=True)
        (run.folder / "adapter" / "adapter.safetensors").write_bytes(b"trained")
    record = {"key": "k", "adapter_digest": adapter_digest(teacher.folder / "adapter"), "result": {"adapter_bytes": 7}}
    earlier = {"key": "k", "result": {"adapter_bytes": 7}}  # written before records held digests
    zero_shot = {"key": "k", "adapter_digest": None, "result": {}}
    for run in (teacher, lora):
        assert pipe.artifacts_changed(run, record) is None and pipe.artifacts_changed(run, earlier) is None
        (run.folder / "adapter" / "adapter.safetensors").write_bytes(b"another")
        assert "is not the one recorded" in pipe.artifacts_changed(run, record)
        assert pipe.artifacts_changed(run, earlier) is None  # no digest recorded: its presence is what is checked
        (run.folder / "adapter" / "adapter.safetensors").unlink()
        (run.folder / "adapter").rmdir()
        assert pipe.artifacts_changed(run, zero_shot) is None
    # a teacher's adapter is read by the distillation: without it the record is not enough
    assert pipe.artifacts_changed(teacher, record) == f"its adapter {teacher.folder / 'adapter'} is missing"
    assert pipe.artifacts_changed(teacher, earlier) == f"its adapter {teacher.folder / 'adapter'} is missing"
    # a LoRA record stands for its scores (results/ keeps no LoRA adapters)
    assert pipe.artifacts_changed(lora, record) is None and pipe.artifacts_changed(lora, earlier) is None
