"""The shipped configs are package data: found by name from any directory, and by an installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metaprompt.configs import CONFIG_DIR, config_path, list_main, resolve_config_args, shipped_configs

ROOT = Path(__file__).resolve().parents[1]


def test_the_checkout_folder_is_the_shipped_one():
    assert (ROOT / "lightning_configs").resolve() == CONFIG_DIR
    assert {"teacher.yaml", "distill.yaml", "tasks/clinical21.yaml", "backbones/llama-3.1-8b.yaml"} <= set(
        shipped_configs()
    )


@pytest.mark.parametrize("name", ["teacher", "teacher.yaml", "lightning_configs/teacher.yaml", "./teacher.yaml"])
def test_a_config_is_found_by_any_spelling_of_its_name(name):
    assert config_path(name) == CONFIG_DIR / "teacher.yaml"


def test_names_outside_the_shipped_folder_or_unknown_are_not_configs():
    assert config_path("../__init__.py") is None
    assert config_path("../../pyproject.toml") is None
    assert config_path("no_such_stage") is None


def test_config_args_resolve_to_shipped_files_and_leave_the_rest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no lightning_configs/ here
    own = tmp_path / "mine.yaml"
    own.write_text("{}\n")
    argv = ["fit", "-c", "lightning_configs/teacher.yaml", "--config=backbones/llama-3.1-8b", "-c", str(own)]
    argv += ["-c", "missing.yaml", "--model.backbone", "teacher"]
    assert resolve_config_args(argv) == [
        "fit",
        "-c",
        str(CONFIG_DIR / "teacher.yaml"),
        f"--config={CONFIG_DIR / 'backbones' / 'llama-3.1-8b.yaml'}",
        "-c",
        str(own),  # a user's file wins even if it shared a shipped name
        "-c",
        "missing.yaml",  # left for the parser to report
        "--model.backbone",
        "teacher",  # not a -c value
    ]


def test_a_local_file_wins_over_the_shipped_config_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lightning_configs").mkdir()
    (tmp_path / "lightning_configs" / "teacher.yaml").write_text("{}\n")
    assert resolve_config_args(["-c", "lightning_configs/teacher.yaml"]) == ["-c", "lightning_configs/teacher.yaml"]


def test_configs_command_lists_them(capsys):
    assert list_main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"# {CONFIG_DIR}" and "lightning_configs/teacher.yaml" in out


@pytest.mark.slow
def test_an_installed_package_runs_outside_the_checkout(tmp_path, data_root):
    """``pip install .`` (no deps: they are this venv's) into a fresh folder; from a directory with no
    checkout, ``data stats`` and a 1-step ``fit -c lightning_configs/teacher.yaml`` on the tiny backbone work."""
    site, cwd, src = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "src"
    cwd.mkdir()
    # build from a clean copy of what the sdist holds: a checkout's stale build/ would leak into the wheel
    shutil.copytree(ROOT / "metaprompt", src / "metaprompt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*pip, str(src)], check=True, capture_output=True, timeout=300)
    assert (site / "metaprompt" / "lightning_configs" / "tasks" / "clinical21.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site), "METAPROMPT_DATA": str(data_root)}

    def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "metaprompt", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import metaprompt; print(metaprompt.__file__)"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    stats = run("data", "stats")  # ~35 s of CPU: every dataset read, tokenised and round-tripped
    assert stats.returncode == 0, stats.stderr[-3000:]
    assert "datasets: 31" in stats.stdout
    fit = run(
        "fit", "-c", "lightning_configs/teacher.yaml", "--model.backbone", "tiny-llama", "--model.prompt_length", "4",
        "--data.tasks", "gad", "--data.max_length", "128", "--data.batch_size", "2", "--trainer.max_steps", "1",
        "--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert (tmp_path / "run" / "adapter" / "adapter.safetensors").is_file()
