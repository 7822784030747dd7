"""What a user got wrong is one line and exit 2 in every command, before anything trains: a setting of the
pipeline's last stage, bad records in a user-declared target, bad data in `test`, a NaN teacher given to a
distillation; a split left empty is said."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from metaprompt.__main__ import main
from metaprompt.adapters import AdapterConfig, save_adapter
from metaprompt.configs import CONFIG_DIR
from metaprompt.errors import AdapterError
from tests.cli.test_data_check import fit_argv

pytestmark = pytest.mark.usefixtures("one_thread")
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "custom"
NO_VALIDATION = ["--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0"]


def last_line(capsys) -> str:
    """The last stderr line (earlier tests' closed log streams may add noise above it)."""
    return capsys.readouterr().err.strip().splitlines()[-1]


def pipeline_yaml(tmp_path, data_root, targets: str = "rqe", **stages) -> Path:
    doc = {"pipeline": {
        "output_dir": str(tmp_path / "out"), "backbone": "tiny-llama", "prompt_length": 2, "sources": "gad",
        "targets": targets, "accelerator": "cpu", "systems": ["backbone zero-shot", "LoRA"],
        "data": {"root": str(data_root), "max_length": 96, "min_prompt_tokens": 16, "batch_size": 2,
                 "max_eval_per_task": 2},
        "teacher": {"max_steps": 1}, "distill": {"max_steps": 1}, **stages,
    }}  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_bad_setting_of_the_last_stage_is_one_line_before_any_run(tmp_path, data_root, capsys):
    config = pipeline_yaml(tmp_path, data_root, lora={"max_steps": 1, "model": {"r": "eight"}})
    assert main(["pipeline", "-c", str(config)]) == 2
    assert last_line(capsys).startswith("metaprompt pipeline: rqe/LoRA (lora stage): model.r: Expected a <class 'int'>")
    assert not (tmp_path / "out" / "teacher").exists()  # nothing ran


def test_bad_records_in_a_user_target_stop_the_pipeline_before_the_teachers_train(tmp_path, data_root, capsys):
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "tasks:\n  - {name: mine, task_type: ner, role: target, format: jsonl, "
        f"data_files: {{train: {FIX / 'ner_text_offsets.jsonl'}}}, columns: {{text: note, entities: spans}}}}\n"
    )
    assert main(["pipeline", "-c", str(pipeline_yaml(tmp_path, data_root, targets=str(targets)))]) == 2
    line = last_line(capsys)
    assert (
        line.startswith("metaprompt pipeline: data error: ") and "ner_text_offsets.jsonl: line 1: entity text" in line
    )
    assert not (tmp_path / "out" / "teacher").exists()


def test_bad_data_during_test_is_one_line_and_exit_2(tmp_path, capsys):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "tasks:\n  - {name: mine, task_type: ner, role: target, format: jsonl, "
        f"data_files: {{test: {FIX / 'bad_offsets.jsonl'}}}}}\n"
    )
    argv = ["test", *fit_argv(tasks, tmp_path)[1:]]
    assert main(argv) == 2
    line = last_line(capsys)
    assert line.startswith("metaprompt test: data error: ") and "bad_offsets.jsonl: line " in line


def test_a_nan_teacher_given_to_a_distillation_is_one_line_naming_its_file(tmp_path, data_root, capsys):
    teacher = tmp_path / "teacher"
    fit = [*fit_argv("[rqe, gad]", teacher), "--data.root", str(data_root), "--data.max_length", "96",
           "--data.min_prompt_tokens", "16", "--model.init_args.prompt_length", "2", *NO_VALIDATION]  # fmt: skip
    assert main(fit) == 0
    tensors = load_file(str(teacher / "adapter" / "adapter.safetensors"))
    tensors["prompts"][0, 0, 0] = float("nan")
    save_file(tensors, str(teacher / "adapter" / "adapter.safetensors"), metadata={"format": "pt"})
    distill = ["fit", "-c", str(CONFIG_DIR / "distill.yaml"), "-c", str(CONFIG_DIR / "backbones" / "tiny-llama.yaml"),
               "--model.init_args.teacher_adapter", str(teacher / "adapter"), "--data.tasks", "[rqe, gad]",
               "--data.root", str(data_root), "--data.max_length", "96", "--data.min_prompt_tokens", "16",
               "--model.init_args.prompt_length", "2", "--trainer.max_steps", "1",
               "--trainer.default_root_dir", str(tmp_path / "distill"), *NO_VALIDATION]  # fmt: skip
    assert main(distill) == 2
    line = last_line(capsys)
    assert line.startswith(
        f"metaprompt fit: {teacher / 'adapter' / 'adapter.safetensors'}: non-finite values (NaN/inf) in prompts (1 of "
    )
    assert not (tmp_path / "distill" / "adapter").exists()


def test_saving_a_non_finite_adapter_names_the_folder(tmp_path):
    config = AdapterConfig(kind="teacher", backbone="tiny-llama", hidden_size=8, prompt_length=4, rank=0,
                           task_names=["a"])  # fmt: skip
    with pytest.raises(AdapterError, match=rf"^{tmp_path / 'a'}: refusing to save the adapter: non-finite values"):
        save_adapter(tmp_path / "a", {"prompts": torch.full((1, 4, 8), float("inf"))}, config)
    assert not (tmp_path / "a").exists()


def test_a_split_left_empty_is_said_when_a_run_reads_it(tmp_path, capsys):
    from metaprompt.data import MultitaskDataModule

    decl = {
        "name": "tiny",
        "task_type": "ner",
        "data_files": {"train": str(FIX / "notes_ner.jsonl")},
        "columns": {"text": "note", "entities": "spans"},
    }
    dm = MultitaskDataModule(tasks=[decl], backbone="tiny-llama", max_length=96, min_prompt_tokens=16)
    with pytest.warns(UserWarning, match=r"\[metaprompt\] tiny: no validation records \(train 4, validation 0, "
                                         r"test 1\): nothing of this task is trained, validated or scored on it"):  # fmt: skip
        dm.setup("fit")
    zero_shot = MultitaskDataModule(tasks=[decl], backbone="tiny-llama", max_length=96, min_prompt_tokens=16, k_shot=0)
    with warnings.catch_warnings():  # a zero-shot run serves no training rows by design: nothing to say of train
        warnings.filterwarnings("error", message=r".*no train")
        zero_shot.setup("test")


def test_bad_records_in_a_reproductions_user_target_are_one_line_before_any_run(tmp_path, data_root, capsys):
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "tasks:\n  - {name: mine, task_type: ner, role: target, format: jsonl, "
        f"data_files: {{train: {FIX / 'ner_text_offsets.jsonl'}}}, columns: {{text: note, entities: spans}}}}\n"
    )
    argv = ["reproduce", "-c", "lightning_configs/reproduce/smoke.yaml", "--pipeline.output_dir", str(tmp_path / "out"),
            "--pipeline.data.root", str(data_root), "--pipeline.targets", str(targets)]  # fmt: skip
    assert main(argv) == 2
    line = last_line(capsys)
    assert (
        line.startswith("metaprompt reproduce: data error: ") and "ner_text_offsets.jsonl: line 1: entity text" in line
    )
    assert not (tmp_path / "out" / "teacher").exists()


def test_a_mistyped_adapter_folder_is_one_line(tmp_path, data_root, capsys):
    argv = ["fit", "-c", str(CONFIG_DIR / "distill.yaml"), "-c", str(CONFIG_DIR / "backbones" / "tiny-llama.yaml"),
            "--model.init_args.teacher_adapter", str(tmp_path / "no_such_teacher"), "--data.tasks", "[rqe]",
            "--data.root", str(data_root), "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert last_line(capsys) == (
        f"metaprompt fit: {tmp_path / 'no_such_teacher' / 'adapter.json'}: not found (expected a folder written by save_adapter)"
    )
