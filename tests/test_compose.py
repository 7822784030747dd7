"""A run is its stage YAML plus overrides, resolved by the CLI's parser (metaprompt/compose.py): the pipeline's
stages resolve to exactly what ``metaprompt fit -c lightning_configs/<stage>.yaml -c <overrides>`` resolves."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import yaml

from metaprompt import compose
from metaprompt.__main__ import main
from metaprompt.grow import GrowConfig, Grower
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage

FIT_ONLY = ("ckpt_path", "weights_only")  # arguments of the fit subcommand itself (its checkpoint), not of the run


def fit_print_config(capsys, *configs: str) -> dict:
    """What ``metaprompt fit -c A -c B ... --print_config`` resolves (the command a user types)."""
    capsys.readouterr()
    args = ["fit", *[x for c in configs for x in ("-c", c)], "--print_config"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    return {k: v for k, v in printed.items() if k not in FIT_ONLY}


def pipeline_runs(tmp_path, data_root) -> dict[str, object]:
    config = PipelineConfig(
        output_dir=str(tmp_path / "out"), backbone="tiny-llama", prompt_length=5, sources="gad,kqa_nli",
        targets="rqe", accelerator="cpu", max_new_tokens={"nli": 3},
        data={"root": str(data_root), "batch_size": 2, "max_eval_per_task": {"ranked": 4}},
        teacher=Stage(3, {"optim": {"lr": 0.05}}), distill=Stage(None, {"rank": 2}, {"k_shot": 8}),
        target=Stage(2, data={"k_shot": 4}), lora=Stage(2, {"r": 2}),
    )  # fmt: skip
    pipe = Pipeline(config)
    runs = {run.stage: run for run in pipe.runs_for_sources()}
    targets = pipe.runs_for_target("rqe")
    runs |= {"target": targets["metaprompt adapted"], "zero_shot": targets["backbone zero-shot"]}
    runs |= {"prompt_tuning": targets["prompt tuning"], "lora": targets["LoRA"]}
    grow = GrowConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(PipelineConfig)}, new_tasks="rqe")
    runs["grow"] = Grower(grow).runs()["factors"]  # metaprompt grow's stage
    assert set(runs) == set(compose.STAGE_FILES)  # every stage YAML is used by the pipeline
    return pipe, runs


@pytest.mark.parametrize("stage", sorted(compose.STAGE_FILES))
def test_each_pipeline_stage_resolves_like_metaprompt_fit_with_the_same_overrides(stage, tmp_path, data_root, capsys):
    pipe, runs = pipeline_runs(tmp_path, data_root)
    run = runs[stage]
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(run.overrides))
    resolved = compose.plain(pipe.resolve(run))
    assert resolved == fit_print_config(capsys, f"lightning_configs/{compose.STAGE_FILES[stage]}", str(overrides))
    # and the config the run writes beside its adapter is that same config
    written = tmp_path / "written.yaml"
    written.write_text(compose.dump(pipe.resolve(run)))
    assert fit_print_config(capsys, str(written)) == resolved


def test_the_stage_yaml_fills_what_the_pipeline_does_not_set(tmp_path, data_root):
    pipe, runs = pipeline_runs(tmp_path, data_root)
    teacher = compose.plain(pipe.resolve(runs["teacher"]))
    stage_yaml = compose.stage_config("teacher")
    assert (
        teacher["model"]["init_args"]["optim"]["warmup_steps"]
        == stage_yaml["model"]["init_args"]["optim"]["warmup_steps"]
    )
    assert teacher["data"]["tasks_per_batch"] == stage_yaml["data"]["tasks_per_batch"]
    assert teacher["model"]["init_args"]["optim"]["lr"] == 0.05 and teacher["trainer"]["max_steps"] == 3  # overrides
    distill = compose.plain(pipe.resolve(runs["distill"]))
    assert distill["trainer"]["max_steps"] == compose.stage_config("distill")["trainer"]["max_steps"]  # max_steps None
    assert distill["model"]["init_args"]["rank"] == 2 and distill["data"]["k_shot"] == 8
    callbacks = [c["class_path"] for c in teacher["trainer"]["callbacks"]]
    assert callbacks == ["metaprompt.callbacks.AdapterExport", "metaprompt.callbacks.StepPrinter"]


def test_merge_merges_mappings_and_replaces_everything_else():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    out = compose.merge(base, {"a": {"c": [3]}, "e": None}, {"a": {"b": 2}})
    assert out == {"a": {"b": 2, "c": [3]}, "d": 1, "e": None}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs unchanged


def test_bad_stage_and_bad_values_are_named():
    with pytest.raises(ValueError, match="unknown stage 'teachr'.*'teacher'"):
        compose.resolve("teachr")
    with pytest.raises(argparse.ArgumentError, match="batch_size"):
        compose.resolve("teacher", {"data": {"batch_size": "eight"}})
    with pytest.raises(argparse.ArgumentError, match="no_such_argument"):
        compose.resolve("teacher", {"model": {"init_args": {"no_such_argument": 1}}})


def test_building_the_parser_seeds_nothing():
    import torch

    compose.parser.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    compose.parser()
    assert torch.equal(torch.rand(1), expected)
