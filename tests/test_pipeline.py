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
        Pipeline(config)._run("pairs/zero-shot", "k", BackboneOnly, {}, str(tasks), Stage(0), tmp_path / "z", True)
        return capsys.readouterr().out

    assert "done in" in run() and "up to date" in run()
    from metaprompt.cli import cli_main  # the run's resolved config reruns it through LightningCLI

    cli = cli_main(["-c", str(tmp_path / "z" / "config.yaml")], run=False)  # run=False: no subcommand
    assert type(cli.model) is BackboneOnly and cli.model.hparams.backbone == "tiny-llama"
    assert cli.model.hparams.task_names == ["pairs"] and cli.datamodule.hparams.root == str(data_root)
    data_file.write_text(data_file.read_text().replace("label\nFever of 30C.", "label\nFever of 40C."))
    assert "done in" in run()  # same settings, other data: not skipped


def test_record_key_follows_the_upstream_adapter_content(tmp_path, data_root):
    """A stage reading another stage's adapter reruns when that adapter changes, whatever its settings."""
    from metaprompt.data import MultitaskDataModule

    pipe = Pipeline(PipelineConfig(output_dir=str(tmp_path), backbone="tiny-llama"))
    data = MultitaskDataModule(tasks="rqe", root=data_root, backbone="tiny-llama", max_eval_per_task=4, k_shot=4)
    adapter = tmp_path / "distill" / "adapter"
    kw = {"metaprompt_adapter": str(adapter)}
    missing = pipe.record_key("k", data, kw)
    adapter.mkdir(parents=True)
    (adapter / "adapter.safetensors").write_bytes(b"one")
    first = pipe.record_key("k", data, kw)
    assert first != missing and pipe.record_key("k", data, kw) == first
    (adapter / "adapter.safetensors").write_bytes(b"two")
    assert pipe.record_key("k", data, kw) != first
    assert pipe.record_key("k", data, {}) == pipe.record_key("k", data, {"prompt_length": 3})  # no upstream
