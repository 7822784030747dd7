"""Every setting reaches its destination (issue 11, item 2).

The walk changes each field of :class:`PipelineConfig` / :class:`LadderConfig` (and each part of each
:class:`Stage`) and checks that the change shows in what some run is built from: its resolved config
(the stage YAML with the pipeline's overrides: module, data module and Trainer arguments), or which runs
there are. Stage keys are left out of the
comparison: a field hashed into a key but used nowhere is exactly the defect this catches. A field
added without an entry here fails ``test_the_walk_covers_every_field``.
"""

from __future__ import annotations

import dataclasses

import pytest

from metaprompt import compose
from metaprompt.ladder import Ladder, LadderConfig
from metaprompt.modules import LoRA, MultitaskDistillation, TeacherPromptTuning
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage, accepted_arguments

BASE = dict(
    backbone="smollm2-135m", prompt_length=4, sources="gad,kqa_nli", targets="rqe", accelerator="cpu",
    teacher=Stage(3), distill=Stage(3), target=Stage(3), prompt_tuning=Stage(3), lora=Stage(3),
)  # fmt: skip

STAGE_FIELDS = ("teacher", "distill", "target", "prompt_tuning", "lora")
STAGE_CLASS = {"teacher": "TeacherPromptTuning", "distill": "MultitaskDistillation", "target": "TargetAdaptation"}
STAGE_CLASS |= {"prompt_tuning": "PromptTuning", "lora": "LoRA"}
STAGE_ARG = {"teacher": "optim", "distill": "rank", "target": "train", "prompt_tuning": "evaluation"}
STAGE_ARG |= {"lora": "r"}
STAGE_VALUE = {"optim": {"warmup_steps": 5}, "rank": 3, "train": "shared", "evaluation": {"log_predictions": 3}}
STAGE_VALUE |= {"r": 2}

PIPELINE_CHANGES = {
    "output_dir": "elsewhere",
    "backbone": "tiny-llama",
    "prompt_length": 7,
    "sources": "gad",
    "targets": "head_qa",
    "data": {"batch_size": 3},
    "max_new_tokens": {"qa": 5},
    "systems": ["LoRA"],
    "accelerator": "auto",
    "precision": "bf16-mixed",
    "strategy": "ddp",
    "wandb": None,  # where logs go, not what runs compute (tests/test_wandb.py)
    "checkpoint_every": None,  # how often a run is checkpointed, not what it computes (tests/test_pipeline_resume.py)
    **{name: None for name in STAGE_FIELDS},  # walked part by part in test_each_stage_part_reaches_its_runs
}
LADDER_CHANGES = {
    "shots": {4: [0, 1]},
    "steps": {4: 5},
    "ablations": {"rank 3": {"rank": 3}},
    "ablation_shots": 8,
    "ablation_seeds": [0, 1],
    "max_minutes": None,  # when to stop, not what a run is: tests/test_ladder.py (resumes after max_minutes=0)
    "rungs": None,  # which rungs run now: tests/test_ladder.py (the sources-then-targets chunks)
}


def plan(config, tmp_path, monkeypatch) -> list[dict]:
    """What every run of ``config`` would be built from (its resolved config), without building or running it."""
    runs: list[dict] = []

    def record(self, run):
        resolved = compose.plain(self.resolve(run))
        trainer = {k: v for k, v in resolved["trainer"].items() if k not in ("logger", "callbacks")}
        runs.append(
            dict(name=run.name, module=resolved["model"]["class_path"].rsplit(".", 1)[-1], trainer=trainer,
                 module_kwargs=resolved["model"]["init_args"], data=resolved["data"], test=run.test)
        )  # fmt: skip
        return {}

    monkeypatch.setattr(Pipeline, "execute", record)
    monkeypatch.setattr(Pipeline, "_write", lambda self, results: None)
    config = dataclasses.replace(config, output_dir=str(tmp_path / config.output_dir))
    if isinstance(config, LadderConfig):
        ladder = Ladder(config)
        for run in ladder.plan():
            record(ladder, run)
    else:
        Pipeline(config).run()
    return runs


def test_the_walk_covers_every_field():
    assert set(PIPELINE_CHANGES) == {f.name for f in dataclasses.fields(PipelineConfig)}
    assert set(PIPELINE_CHANGES) | set(LADDER_CHANGES) == {f.name for f in dataclasses.fields(LadderConfig)}
    assert {f.name for f in dataclasses.fields(Stage)} == {"max_steps", "model", "data"}


@pytest.mark.parametrize("field", [f for f, v in PIPELINE_CHANGES.items() if v is not None])
@pytest.mark.parametrize("kind", [PipelineConfig, LadderConfig])
def test_each_field_changes_what_runs_are_built_from(field, kind, data_root, tmp_path, monkeypatch):
    base = kind(output_dir="run", **BASE, **({"shots": {4: [0]}, "steps": {4: 2}} if kind is LadderConfig else {}))
    before = plan(base, tmp_path, monkeypatch)
    after = plan(dataclasses.replace(base, **{field: PIPELINE_CHANGES[field]}), tmp_path, monkeypatch)
    assert before != after, f"{kind.__name__}.{field} changed no run"


@pytest.mark.parametrize("field", [f for f, v in LADDER_CHANGES.items() if v is not None])
def test_each_ladder_field_changes_what_runs_are_built_from(field, data_root, tmp_path, monkeypatch):
    base = LadderConfig(
        output_dir="run", **BASE, shots={4: [0]}, steps={4: 2, 8: 2}, ablations={"rank 2": {"rank": 2}}, ablation_shots=4
    )  # fmt: skip
    before = plan(base, tmp_path, monkeypatch)
    after = plan(dataclasses.replace(base, **{field: LADDER_CHANGES[field]}), tmp_path, monkeypatch)
    assert before != after, f"LadderConfig.{field} changed no run"


@pytest.mark.parametrize("name", STAGE_FIELDS)
@pytest.mark.parametrize("kind", [PipelineConfig, LadderConfig])
def test_each_stage_part_reaches_its_runs(name, kind, data_root, tmp_path, monkeypatch):
    """A stage's max_steps, model and data reach exactly its own runs' Trainer, module and data module."""
    base = kind(output_dir="run", **BASE)
    if kind is LadderConfig:  # the adapted stages' steps come from `steps` at each k (equal steps across systems)
        base = dataclasses.replace(base, shots={4: [0]}, steps={4: 2})
    arg = STAGE_ARG[name]
    changes = {
        "max_steps": Stage(9),
        "model": Stage(3, {arg: STAGE_VALUE[arg]}),
        "data": Stage(3, data={"eval_batch_size": 5}),
    }
    if kind is LadderConfig and name in ("target", "prompt_tuning", "lora"):
        del changes["max_steps"]  # the ladder's `steps` sets them (walked above)
    before = plan(base, tmp_path, monkeypatch)
    for part, stage in changes.items():
        after = plan(dataclasses.replace(base, **{name: stage}), tmp_path, monkeypatch)
        changed = [a for b, a in zip(before, after, strict=True) if a != b]
        assert changed, f"{name}.{part} changed no run"
        reached = {STAGE_CLASS[name]}
        if kind is PipelineConfig and name == "target" and part == "data":
            reached.add("BackboneOnly")  # the pipeline scores the zero-shot rows on the target stage's data
        assert {r["module"] for r in changed} == reached, f"{name}.{part} reached other stages"
        for run in changed:
            if part == "max_steps":
                assert run["trainer"]["max_steps"] == 9
            elif part == "model":
                value, got = STAGE_VALUE[arg], run["module_kwargs"][arg]
                assert {k: got[k] for k in value} == value if isinstance(value, dict) else got == value
            else:
                assert run["data"]["eval_batch_size"] == 5


@pytest.mark.parametrize(
    ("field", "stage", "match"),
    [
        ("teacher", Stage(1, {"rank": 4}), r"teacher.model: TeacherPromptTuning takes no \['rank'\]"),
        ("lora", Stage(1, {"prompt_init": "vocab"}), r"lora.model: LoRA takes no \['prompt_init'\]"),
        ("distill", Stage(1, data={"k_shots": 4}), r"distill.data: MultitaskDataModule takes no \['k_shots'\]"),
        ("target", Stage(1, {"backbone": "tiny-llama"}), r"target.model: \['backbone'\] are set by the pipeline"),
        ("teacher", Stage(1, data={"tasks": "rqe"}), r"teacher.data: \['tasks'\] are set by the pipeline"),
        (
            "teacher",
            Stage(1, {"optim": {"learning_rate": 1}}),
            r"teacher.model.optim: no setting\(s\) \['learning_rate'\]",
        ),
        ("distill", Stage(1, {"optim": {"schedule": "step"}}), r"distill.model.optim.schedule must be one of"),
        (
            "lora",
            Stage(1, {"evaluation": {"max_new_tokens": {"qa": 3}}}),
            r"lora.model: \['evaluation.max_new_tokens'\] are set",
        ),
    ],
)
def test_a_setting_a_stage_does_not_take_is_rejected_before_anything_runs(field, stage, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        Pipeline(PipelineConfig(output_dir=str(tmp_path), **{field: stage}))
    with pytest.raises(ValueError, match=r"data.data: MultitaskDataModule takes no \['batchsize'\]"):
        Pipeline(PipelineConfig(output_dir=str(tmp_path), data={"batchsize": 2}))
    with pytest.raises(ValueError, match=r"ablations\['r'\].model: MultitaskDistillation takes no \['r'\]"):
        Ladder(LadderConfig(output_dir=str(tmp_path), ablations={"r": {"r": 4}}))


def test_accepted_arguments_follow_kwargs_down_the_bases():
    teacher, distill, lora = (accepted_arguments(c) for c in (TeacherPromptTuning, MultitaskDistillation, LoRA))
    assert {"prompt_init", "optim", "evaluation"} <= teacher and "rank" not in teacher
    assert {"rank", "lam", "teacher_adapter", "optim", "factor_lr"} <= distill
    assert {"r", "alpha", "optim"} <= lora and "prompt_init" not in lora
