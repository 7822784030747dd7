"""Every YAML under lightning_configs/ parses: stage configs (composed with each backbone/logger
fragment) through LightningCLI, task sets through resolve_tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from metaprompt.cli import cli_main
from metaprompt.tasks.taskset import resolve_tasks

CONFIGS = Path(__file__).resolve().parents[2] / "lightning_configs"
STAGES = sorted(
    p
    for p in CONFIGS.glob("*.yaml")
    if p.name not in ("demo.yaml", "ladder.yaml") and not p.name.startswith("pipeline")
)
FRAGMENTS = sorted((CONFIGS / "backbones").glob("*.yaml")) + sorted((CONFIGS / "loggers").glob("*.yaml"))
TASK_SETS = sorted((CONFIGS / "tasks").glob("*.yaml"))


def test_there_is_a_config_per_stage_and_baseline():
    assert {p.stem for p in STAGES} >= {"teacher", "distill", "target", "prompt_tuning", "lora"}


@pytest.mark.parametrize("config", STAGES, ids=lambda p: p.stem)
def test_stage_config_parses(config, data_root):
    cli = cli_main(["-c", str(config), "--data.root", str(data_root)], run=False)
    assert cli.model.task_names == cli.datamodule.task_names  # linked, never disagreeing
    assert cli.model.hparams.backbone == cli.datamodule.hparams.backbone


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fragments_compose_with_a_stage(fragment, data_root):
    cli = cli_main(["-c", str(CONFIGS / "teacher.yaml"), "-c", str(fragment), "--data.root", str(data_root)], run=False)
    if fragment.parent.name == "backbones":
        assert cli.model.hparams.backbone == fragment.stem == cli.datamodule.hparams.backbone


@pytest.mark.parametrize("task_set", TASK_SETS, ids=lambda p: p.stem)
def test_task_sets_resolve(task_set, data_root):
    assert resolve_tasks(str(task_set), data_root)
