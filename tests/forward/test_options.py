"""FastPaths switches: validated config, carried by the stage modules into every forward."""

from __future__ import annotations

import pytest
import torch

from metaprompt.forward import FastPaths
from metaprompt.modules import MultitaskDistillation, TeacherPromptTuning


def test_from_config():
    assert FastPaths.from_config(None) == FastPaths()
    assert FastPaths.from_config({"shared_prefix": False}).shared_prefix is False
    assert FastPaths.from_config(FastPaths(bf16_autocast=True)).bf16_autocast is True
    assert FastPaths().as_dict() == {
        "shared_prefix": True,
        "reuse_prefix": True,
        "target_only_logits": True,
        "fused_loss": True,
        "activation_checkpointing": False,
        "drop_finished_rows": True,
        "bf16_autocast": False,
    }
    with pytest.raises(ValueError, match=r"unknown switch\(es\) \['shared_prefx'\]"):
        FastPaths.from_config({"shared_prefx": False})
    with pytest.raises(ValueError, match="shared_prefix must be true or false"):
        FastPaths.from_config({"shared_prefix": "no"})
    with pytest.raises(ValueError, match="mapping"):
        FastPaths.from_config(["shared_prefix"])


def test_stage_switches_reach_the_forward(monkeypatch):
    seen = []
    import metaprompt.modules.base as base

    real = base.prompted_forward

    def spy(*args, **kwargs):
        seen.append((kwargs["fast"], kwargs["task_ids"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "prompted_forward", spy)
    module = TeacherPromptTuning(
        backbone="tiny-llama", task_names=["a"], prompt_length=2, fast_paths={"shared_prefix": False}
    )
    assert module.fast_paths == FastPaths(shared_prefix=False) and module.hparams.fast_paths == {"shared_prefix": False}
    module.configure_model()
    batch = {
        "input_ids": torch.tensor([[5, 6, 7]]),
        "attention_mask": torch.ones(1, 3, dtype=torch.long),
        "labels": torch.tensor([[-100, 6, 7]]),
        "task_ids": torch.tensor([0]),
    }
    module.compute_loss(batch)
    assert seen[0][0] == FastPaths(shared_prefix=False) and torch.equal(seen[0][1], batch["task_ids"])


def test_distillation_rejects_a_bad_top_k():
    with pytest.raises(ValueError, match="teacher_cache_topk"):
        MultitaskDistillation(teacher_adapter="x", task_names=["a"], teacher_cache_topk=0)
