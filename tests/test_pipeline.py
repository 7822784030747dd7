"""The pipeline builds each run from its stage YAML, keys its record on what it computes, and reruns when
the data or an upstream stage changes."""

from __future__ import annotations

import re

from metaprompt import compose
from metaprompt.modules import LoRA, TeacherPromptTuning
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage


def test_pipeline_and_stage_settings_reach_the_module_over_the_stage_yaml(tmp_path):
    config = PipelineConfig(
        output_dir=str(tmp_path), backbone="tiny-llama", max_new_tokens={"nli": 3}, prompt_length=7,
        teacher=Stage(1, model={"optim": {"lr": 0.05}, "fast_paths": {"fused_loss": False}}),
    )  # fmt: skip
    pipe = Pipeline(config)
    teacher = compose.instantiate(pipe.resolve(pipe.runs_for_sources()[0]))
    module = teacher.model
    assert isinstance(module, TeacherPromptTuning) and module.evaluation.max_new_tokens == {"nli": 3}
    assert module.hparams.prompt_length == 7 and module.optim.lr == 0.05
    assert not module.fast_paths.fused_loss
    assert module.optim.warmup_steps == 500 and teacher.datamodule.hparams.tasks_per_batch == 1  # teacher.yaml's
    assert teacher.trainer.max_steps == 1 and teacher.trainer.limit_val_batches == 0
    lora = compose.instantiate(pipe.resolve(pipe.runs_for_target("rqe")["LoRA"])).model
    assert isinstance(lora, LoRA) and lora.evaluation.max_new_tokens == {"nli": 3}
    assert lora.optim.weight_decay == 0.0 and lora.optim.lr == 2e-4 and lora.hparams.r == 8  # lora.yaml's


def test_stage_records_key_on_the_data_they_saw(tmp_path, data_root, capsys):
    """Editing a data file (or a verbalizer) reruns a stage instead of skipping it as up to date."""
    from metaprompt.modules import BackboneOnly

    rows = ["premise,hypothesis,label"] + [f"Fever of 3{i}C.,The patient is febrile.,entailment" for i in range(6)]
    data_file = tmp_path / "pairs.csv"
    data_file.write_text("\n".join(rows) + "\n")
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "tasks:\n  - {name: pairs, task_type: nli, role: target, format: csv, "
        f"data_files: {{test: {data_file}}}, labels: [entailment, contradiction]}}\n"
    )
    config = PipelineConfig(output_dir=str(tmp_path / "out"), backbone="tiny-llama", data={"root": data_root})

    def run() -> str:
        pipe = Pipeline(config)
        pipe.execute(pipe.make_run("pairs/zero-shot", "zero_shot", tmp_path / "z", Stage(0), str(tasks)))
        return capsys.readouterr().out

    assert "done in" in run() and "up to date" in run()
    from metaprompt.cli import cli_main  # the run's resolved config reruns it through LightningCLI

    cli = cli_main(["-c", str(tmp_path / "z" / "config.yaml")], run=False)  # run=False: no subcommand
    assert type(cli.model) is BackboneOnly and cli.model.hparams.backbone == "tiny-llama"
    assert cli.model.hparams.task_names == ["pairs"] and cli.datamodule.hparams.root == str(data_root)
    data_file.write_text(data_file.read_text().replace("febrile", "feverish"))  # every row, the tested one too
    assert "done in" in run()  # same settings, other data: not skipped


def test_record_key_follows_the_upstream_adapter_and_the_run_that_wrote_it(tmp_path, data_root):
    """A run reading another run's adapter reruns when that adapter changes, and as soon as the run that
    writes it is changed (before it has rerun)."""
    config = PipelineConfig(
        output_dir=str(tmp_path), backbone="tiny-llama", sources="gad", targets="rqe",
        data={"root": str(data_root), "max_eval_per_task": 4}, teacher=Stage(3),
    )  # fmt: skip

    def keys(cfg) -> tuple[str, str]:
        pipe = Pipeline(cfg)
        teacher, distill = pipe.runs_for_sources()
        return pipe.record_status(teacher)[1], pipe.record_status(distill)[1]

    _, missing = keys(config)
    adapter = tmp_path / "teacher" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter.safetensors").write_bytes(b"one")
    _, first = keys(config)
    assert first != missing and keys(config)[1] == first
    (adapter / "adapter.safetensors").write_bytes(b"two")
    assert keys(config)[1] != first
    again = keys(config)[1]
    teacher_before, _ = keys(config)
    changed = PipelineConfig(**{**config.__dict__, "teacher": Stage(4)})
    teacher_after, distill_after = keys(changed)
    assert teacher_after != teacher_before and distill_after != again  # same adapter file, other teacher run


def test_run_keys_ignore_where_a_run_writes(tmp_path, data_root):
    """Two output folders, same settings and data: the same key (a moved results folder stays current)."""

    def key(out):
        pipe = Pipeline(
            PipelineConfig(output_dir=str(out), backbone="tiny-llama", targets="rqe", data={"root": str(data_root)})
        )
        return pipe.record_status(pipe.runs_for_target("rqe")["LoRA"])[1]

    assert key(tmp_path / "a") == key(tmp_path / "b")


def test_pipeline_runs_a_user_declared_target_end_to_end(tmp_path, data_root, capsys):
    """A task-set YAML of the user's own targets (relative file, not in the manifest) goes through every stage,
    and editing that file reruns the runs that read it."""
    import pytest

    pytest.importorskip("lightning")
    folder = tmp_path / "mydata"
    folder.mkdir()
    rows = ["premise,hypothesis,label"] + [
        f"Temperature {37 + i % 3}.{i}C.,The patient is {'febrile' if i % 3 else 'afebrile'}.,"
        f"{'entailment' if i % 3 else 'contradiction'}" for i in range(12)
    ]  # fmt: skip
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    (folder / "targets.yaml").write_text(
        "tasks:\n  - {name: my_pairs, task_type: nli, role: target, format: csv, data_files: {train: pairs.csv}}\n"
    )
    config = PipelineConfig(
        output_dir=str(tmp_path / "out"), backbone="tiny-llama", prompt_length=2, sources="gad",
        targets=str(folder / "targets.yaml"), accelerator="cpu", systems=["backbone zero-shot", "metaprompt adapted"],
        data={"root": str(data_root), "max_length": 96, "min_prompt_tokens": 16, "batch_size": 2, "max_eval_per_task": 4},
        teacher=Stage(1), distill=Stage(1), target=Stage(1),
    )  # fmt: skip
    results = Pipeline(config).run()
    assert set(results) == {"my_pairs"} and set(results["my_pairs"]) == {"backbone zero-shot", "metaprompt adapted"}
    assert all(0 <= r["my_pairs/accuracy"] <= 1 for r in results["my_pairs"].values())
    assert (tmp_path / "out" / "targets" / "my_pairs" / "metaprompt_adapted" / "adapter").is_dir()
    out = capsys.readouterr().out  # every training stage says its steps (not a TTY here: lines, not bars)
    for stage in ("teacher", "distill", "my_pairs/metaprompt adapted"):
        assert re.search(rf"\[pipeline\] {stage}: step 1/1 loss \d+\.\d+ \(\d+ s\)", out), stage
    Pipeline(config).run()
    assert capsys.readouterr().out.count("up to date, skipped") == 4
    (folder / "pairs.csv").write_text((folder / "pairs.csv").read_text().replace("afebrile", "not febrile"))
    Pipeline(config).run()
    out = capsys.readouterr().out
    assert "my_pairs/backbone zero-shot: done in" in out and "my_pairs/metaprompt adapted: done in" in out
    assert "teacher: up to date, skipped" in out  # the sources did not change
