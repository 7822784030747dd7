"""Progress: step lines (no bars) when the output is not a terminal, progress bars when it is."""

from __future__ import annotations

import pytest

from metaprompt.__main__ import main
from metaprompt.configs import CONFIG_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


def fit(tmp_path, data_root):
    main([
        "fit", "-c", str(CONFIG_DIR / "teacher.yaml"), "-c", str(CONFIG_DIR / "backbones" / "tiny-llama.yaml"),
        "--data.root", str(data_root), "--data.tasks", "[rqe]", "--data.max_length", "96", "--data.min_prompt_tokens", "32",
        "--data.batch_size", "2", "--model.init_args.prompt_length", "2", "--trainer.max_steps", "3",
        "--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
    ])  # fmt: skip


def test_a_log_gets_step_lines_and_no_redrawn_bars(tmp_path, data_root, capfd, monkeypatch):
    monkeypatch.setenv("METAPROMPT_PROGRESS", "0")
    fit(tmp_path, data_root)
    out, err = capfd.readouterr()
    assert "[pipeline] fit: step 3/3 loss " in out
    assert "\r" not in out + err  # nothing redraws a line: no Lightning bar, no library bar


def test_a_terminal_gets_a_bar_instead(tmp_path, data_root, capfd, monkeypatch):
    monkeypatch.setenv("METAPROMPT_PROGRESS", "1")
    fit(tmp_path, data_root)
    out, err = capfd.readouterr()
    assert "[pipeline] fit: step" not in out and "Epoch 0" in out  # Lightning's own (Rich) bar instead


def test_a_pipeline_run_reports_its_scoring_in_lines(tmp_path, data_root, capfd, monkeypatch):
    from metaprompt.pipeline import Pipeline, PipelineConfig, Stage
    from metaprompt.progress import quiet_libraries

    monkeypatch.setenv("METAPROMPT_PROGRESS", "0")
    quiet_libraries()  # what `metaprompt ...` does first
    data = {"root": data_root, "max_eval_per_task": 6, "eval_batch_size": 2}
    pipe = Pipeline(PipelineConfig(output_dir=str(tmp_path), backbone="tiny-llama", data=data))
    pipe.execute(pipe.make_run("rqe/zero-shot", "zero_shot", tmp_path / "z", Stage(0), ["rqe"]))
    out, err = capfd.readouterr()
    assert "[pipeline] rqe/zero-shot: scored batch 3/3 (" in out and "\r" not in out + err
