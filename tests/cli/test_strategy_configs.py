"""Every strategy and precision fragment composes with every stage config through LightningCLI (on CPU:
DeepSpeed strategies are constructed and configured here, only their ``fit`` needs CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, ModelParallelStrategy

from metaprompt.cli import cli_main
from metaprompt.scale import FSDP2Strategy, params_are_sharded, zero_stage

CONFIGS = Path(__file__).resolve().parents[2] / "lightning_configs"
STAGES = ["teacher", "distill", "target", "prompt_tuning", "lora"]
STRATEGIES = sorted((CONFIGS / "strategies").glob("*.yaml"))
EXPECTED = {
    "ddp": (DDPStrategy, None),
    "deepspeed_zero2": (DeepSpeedStrategy, 2),
    "deepspeed_zero3": (DeepSpeedStrategy, 3),
    "deepspeed_zero3_offload": (DeepSpeedStrategy, 3),
    "fsdp2": (FSDP2Strategy, None),
}


def _cli(data_root, *configs):
    args = [a for c in configs for a in ("-c", str(c))]
    return cli_main([*args, "--data.root", str(data_root)], run=False)


def test_every_strategy_has_a_config():
    assert {p.stem for p in STRATEGIES} == set(EXPECTED)
    assert (CONFIGS / "precision" / "bf16.yaml").is_file()


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda p: p.stem)
def test_strategy_composes_with_the_teacher_stage_and_bf16(strategy, data_root):
    cli = _cli(data_root, CONFIGS / "teacher.yaml", strategy, CONFIGS / "precision" / "bf16.yaml")
    cls, stage = EXPECTED[strategy.stem]
    assert isinstance(cli.trainer.strategy, cls)
    assert zero_stage(cli.trainer.strategy) == stage
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.model.hparams.backbone == cli.datamodule.hparams.backbone  # the stage config is intact
    if isinstance(cli.trainer.strategy, DeepSpeedStrategy):
        config = cli.trainer.strategy.config
        assert cli.trainer.strategy.exclude_frozen_parameters is True  # adapter-only checkpoints
        offload = strategy.stem.endswith("offload")
        assert ("offload_param" in config["zero_optimization"]) == offload
        assert "offload_optimizer" not in config["zero_optimization"]
    if isinstance(cli.trainer.strategy, ModelParallelStrategy):
        assert cli.trainer.strategy._tensor_parallel_size == 1


@pytest.mark.parametrize("stage", STAGES)
def test_zero3_composes_with_every_stage(stage, data_root):
    cli = _cli(data_root, CONFIGS / f"{stage}.yaml", CONFIGS / "strategies" / "deepspeed_zero3.yaml")
    assert zero_stage(cli.trainer.strategy) == 3
    assert cli.model.hparams.backbone == cli.datamodule.hparams.backbone


def _ranks(strategy, n: int):
    strategy.cluster_environment = LightningEnvironment()
    strategy.cluster_environment.set_world_size(n)
    return strategy


def test_generation_is_synced_exactly_when_parameters_are_sharded_over_several_ranks():
    assert params_are_sharded(_ranks(DeepSpeedStrategy(stage=3), 2))
    assert params_are_sharded(_ranks(FSDP2Strategy(), 2))
    assert not params_are_sharded(_ranks(DeepSpeedStrategy(stage=2), 2))  # whole weights on every rank
    assert not params_are_sharded(_ranks(DDPStrategy(), 2))
    assert not params_are_sharded(_ranks(DeepSpeedStrategy(stage=3), 1))  # nobody to wait for
