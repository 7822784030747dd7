"""Weights & Biases in the pipeline: one W&B run per pipeline run, all in the pipeline's group, with its
metrics, prediction table and adapter artifact (offline here: what `wandb sync` would upload)."""

from __future__ import annotations

import pytest

from metaprompt.pipeline import Pipeline, PipelineConfig, Stage

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_each_run_is_its_own_wandb_run_in_the_pipelines_group(tmp_path, data_root, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the pipeline's own default, not the Makefile's
    data = {"root": data_root, "max_eval_per_task": 4, "eval_batch_size": 2, "max_length": 96,
            "min_prompt_tokens": 16, "batch_size": 2}  # fmt: skip
    out = tmp_path / "my-reproduction"
    config = PipelineConfig(output_dir=str(out), backbone="tiny-llama", prompt_length=2, data=data, wandb={})
    pipe = Pipeline(config)
    trained = pipe.make_run(
        "rqe/prompt tuning/k4-s0", "prompt_tuning", out / "pt", Stage(2), ["rqe"], data={"k_shot": 4}
    )
    pipe.execute(trained)
    pipe.execute(pipe.make_run("rqe/backbone zero-shot", "zero_shot", out / "z", Stage(0), ["rqe"]))
    runs = sorted((out / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2  # not one W&B run growing across the pipeline
    first, second = (path.read_bytes() for path in runs)
    for logged in (first, second):
        assert b"my-reproduction" in logged and b"test/macro/score" in logged and b"test/rqe/ci_low" in logged
    assert b"rqe/prompt tuning/k4-s0" in first and b"test/predictions" in first  # its name, its table
    assert b"adapter.safetensors" in first and b"adapter.safetensors" not in second  # the trained adapter
    assert b"resolved" in first and b"max_steps" in first  # the resolved config, the trainer's settings too
    assert (out / "pt" / "logs").is_dir() and (out / "z" / "logs").is_dir()  # CSV logs always


def test_wandb_is_offline_unless_asked_and_an_opt_out_stays_out(tmp_path, monkeypatch):
    from metaprompt.errors import SettingsError

    def wandb_args(**settings):
        pipe = Pipeline(PipelineConfig(output_dir=str(tmp_path / "g"), backbone="tiny-llama", wandb=settings))
        return pipe.loggers("rqe/LoRA", tmp_path / "run")[1]["init_args"]

    for env, expected in ((None, {"offline": True}), ("offline", {"offline": True}), ("online", {"offline": False}),
                          ("disabled", {"mode": "disabled"})):  # fmt: skip
        if env is None:
            monkeypatch.delenv("WANDB_MODE", raising=False)
        else:
            monkeypatch.setenv("WANDB_MODE", env)
        args = wandb_args()
        assert {k: args[k] for k in expected} == expected and args["group"] == "g", env
    assert wandb_args(mode="online")["mode"] == "online" and "offline" not in wandb_args(mode="online")
    monkeypatch.delenv("WANDB_MODE")
    with pytest.raises(SettingsError, match="log_model needs an online W&B run"):
        wandb_args(log_model=True)
