"""The pipeline's settings reach the modules they configure (no setting is hashed but unused)."""

from __future__ import annotations

from pathlib import Path

from metaprompt.modules import LoRA, TeacherPromptTuning
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage


def test_max_new_tokens_and_stage_settings_reach_the_module(tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path), backbone="tiny-llama", max_new_tokens={"nli": 3})
    pipe = Pipeline(config)
    stage = Stage(1, model={"learning_rate": 0.05, "fast_paths": {"fused_loss": False}})
    kw = pipe.module_kwargs(["rqe"], Path(tmp_path), {"prompt_length": 7}, stage)
    module = TeacherPromptTuning(**kw)
    assert module.hparams.max_new_tokens == {"nli": 3}
    assert module.hparams.prompt_length == 7 and module.hparams.learning_rate == 0.05
    assert not module.fast_paths.fused_loss
    lora = LoRA(**pipe.module_kwargs(["rqe"], Path(tmp_path), {}, Stage(1)))
    assert lora.hparams.max_new_tokens == {"nli": 3}
