"""Reruns of one config train one adapter: a fit seeds the global RNGs (LoRA's dropout draws from them) from
the module's ``seed``, whatever used them before; checkpoints carry the RNG states, loadable ``weights_only``."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from metaprompt import compose
from metaprompt.modules.rng import rng_states, set_rng_states
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage

pytestmark = pytest.mark.usefixtures("one_thread")


def lora_adapter(tmp_path, data_root, seed: int, noise: int) -> dict[str, torch.Tensor]:
    """The LoRA stage's trained tensors after ``noise`` draws from the global RNG between build and fit."""
    pipe = Pipeline(PipelineConfig(
        output_dir=str(tmp_path), backbone="tiny-llama", data={"root": str(data_root), "batch_size": 4, "max_length": 128},
    ))  # fmt: skip
    folder = tmp_path / f"s{seed}-n{noise}"
    run = pipe.make_run("rqe/LoRA", "lora", folder, Stage(4, data={"k_shot": 8}), "rqe", seed=seed)
    built = compose.instantiate(pipe.resolve(run))
    torch.rand(noise), np.random.rand(noise), [random.random() for _ in range(noise)]  # another stage, a test...
    built.trainer.fit(built.model, datamodule=built.datamodule)
    return {n: p.detach().clone() for n, p in built.model.named_parameters() if p.requires_grad}


def test_two_fits_of_one_lora_config_give_one_adapter(tmp_path, data_root):
    first, second = lora_adapter(tmp_path, data_root, 0, 0), lora_adapter(tmp_path, data_root, 0, 7)
    assert first.keys() == second.keys() and first
    for name in first:
        assert torch.equal(first[name], second[name]), name
    other = lora_adapter(tmp_path, data_root, 1, 0)  # the seed does decide (init and dropout masks)
    assert any(not torch.equal(first[n], other[n]) for n in first)


def test_rng_states_round_trip_through_a_weights_only_checkpoint():
    states = rng_states()
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    buffer = io.BytesIO()
    torch.save({"rng": states}, buffer)
    buffer.seek(0)
    set_rng_states(torch.load(buffer, weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1]) and drawn[2] == again[2]
