"""``metaprompt reproduce``: the shipped smoke preset end to end on the tiny backbone and real (small) data."""

from __future__ import annotations

import csv
import re
import shutil

import pytest
from safetensors.torch import load_file

from metaprompt.__main__ import main, parse_ladder_config
from metaprompt.backbones.presets import PRESETS
from metaprompt.configs import CONFIG_DIR
from metaprompt.evaluation.examples import read_predictions
from metaprompt.pipeline import Pipeline
from metaprompt.reproduce import PLUS_SHARED, ReproduceConfig, Reproduction

pytestmark = pytest.mark.slow

SMOKE = "lightning_configs/reproduce/smoke.yaml"


def smoke(out, root, *extra):
    return ["reproduce", "-c", SMOKE, "--pipeline.output_dir", str(out), "--pipeline.data.root", str(root), *extra]


def test_the_smoke_preset_runs_every_system_and_k_then_only_reports(tmp_path, data_root, capsys, monkeypatch):
    assert main(smoke(tmp_path, data_root, "--time-budget", "0")) == 3  # no time: nothing starts, rerun
    assert "time is up before sources/backbone zero-shot" in capsys.readouterr().out
    assert (tmp_path / "results.md").read_text().startswith("# Reproduction (PARTIAL")
    # a chunk: every run "takes" 2 of the budget's 5 minutes, so 3 runs start (at 0, 2, 4) and the 4th does not
    execute = Pipeline.execute

    def two_minutes(self, run):
        result = execute(self, run)
        self.started -= 120
        return result

    with monkeypatch.context() as patch:
        patch.setattr(Pipeline, "execute", two_minutes)
        assert main(smoke(tmp_path, data_root, "--time-budget", "5")) == 3
    out = capsys.readouterr().out
    chunk = [line.split(": done in")[0] for line in out.splitlines() if ": done in" in line]
    assert chunk == ["[pipeline] sources/backbone zero-shot", "[pipeline] teacher", "[pipeline] distill"], chunk
    assert "time is up before " in out and "rerun to continue" in out
    assert main(smoke(tmp_path, data_root)) == 0  # the rerun continues after the chunk's last finished run
    out = capsys.readouterr().out
    for name in ("sources/backbone zero-shot", "teacher", "distill"):
        assert f"[pipeline] {name}: up to date, skipped" in out, name
    assert out.count(": done in") == 31 - 3
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    targets = {(r["task"], r["system"], r["k"], r["seed"]) for r in rows if r["role"] == "target"}
    systems = ("metaprompt adapted", PLUS_SHARED, "prompt tuning", "LoRA")
    for task in ("rqe", "head_qa"):
        assert {(task, "backbone zero-shot", "0", "0"), (task, "metaprompt zero-shot", "0", "0")} <= targets
        for system in systems:
            assert {(task, system, "4", "0"), (task, system, "4", "1"), (task, system, "all", "0")} <= targets
    assert len(targets) == 2 * (2 + 4 * 3)
    for r in rows:  # what each row measured, with its interval and size, and what it cost, from the run's record
        assert 0 <= float(r["ci_low"]) <= float(r["score"]) <= float(r["ci_high"]) <= 1 and int(r["n_test"]) > 0
        assert (
            int(r["trainable_params"]) > 0
            and 0 < float(r["trainable_pct"]) < 100
            or r["system"] == "backbone zero-shot"
        )
        assert (r["task_type"], r["metric"]) == {"rqe": ("nli", "accuracy"), "head_qa": ("qa", "accuracy"),
                                                 "gad": ("re", "f1"), "kqa_nli": ("nli", "accuracy")}[r["task"]]  # fmt: skip
        assert r["eval_seconds"] != ""  # every row was scored (tenths of a second: may round to 0.0)
        trained = r["k"] != "0" or r["system"] in ("teacher", "student")
        assert (float(r["train_seconds"] or 0) > 0) == trained and (int(r["adapter_bytes"] or 0) > 0) == trained
    lora = next(r for r in rows if r["system"] == "LoRA")
    assert int(lora["adapter_bytes"]) > int(next(r for r in rows if r["system"] == PLUS_SHARED)["adapter_bytes"])
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("# Reproduction (complete)") and f"| {PLUS_SHARED} | all | 1 |" in md
    assert "### k = 4" in md and "### k = all" in md and "| **average (2 targets)** |" in md
    assert f"- {PLUS_SHARED} − LoRA: " in md
    resources = md.split("## Resources per stage")[1].split("\n## ")[0]  # every stage measured, none missing
    for stage in ("teachers", "distillation (metaprompt)", "targets: LoRA", f"targets: {PLUS_SHARED}"):
        assert f"| {stage} | " in resources, stage
    assert "not recorded" not in resources and " runs)" not in resources  # no "(n of N runs)"
    for row in resources.splitlines():  # each stage's energy, a number of Wh (estimated on CPU)
        if row.startswith("| targets: ") or row.startswith("| teachers |"):
            assert re.search(r"\| [\d,]+\.\d+ \(est\.\) \|$", row), row
    for folder in {r.folder for r in Reproduction(parse_ladder_config(smoke(tmp_path, data_root)[1:],
                                                                      cls=ReproduceConfig)[0]).plan()}:  # fmt: skip
        assert read_predictions(folder), folder  # every run's per-example predictions, kept compressed
        assert (folder / "predictions.jsonl.gz").is_file() and not (folder / "predictions.jsonl").exists(), folder
    assert "One-time cost of the metaprompt (teachers + distillation):" in resources
    for name in ("scores_by_target", "k_shot", "score_vs_params"):  # the figures, as PNG files
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
    # + shared prompt trains P* (and writes it); factors only leaves P* in the metaprompt's adapter
    run = tmp_path / "targets" / "rqe"
    plus = load_file(run / "metaprompt_adapted_plus_shared" / "k4-s0" / "adapter" / "adapter.safetensors")
    factors = load_file(run / "metaprompt_adapted" / "k4-s0" / "adapter" / "adapter.safetensors")
    meta = load_file(tmp_path / "distill" / "adapter" / "adapter.safetensors")
    assert "shared_prompt" not in factors and not plus["shared_prompt"].equal(meta["shared_prompt"])
    # k = "all" capped at all_cap examples per task
    assert "k_shot: 8" in (run / "LoRA" / "kall-s0" / "config.yaml").read_text()
    capsys.readouterr()
    assert main(smoke(tmp_path, data_root)) == 0  # finished: only reports
    out = capsys.readouterr().out
    assert "done in" not in out and out.count("up to date, skipped") == 31
    # your own targets against this distillation: its source runs copied to a new folder stay current (a
    # record's key ignores where it lives), so only the user-declared target's runs run
    mine = tmp_path.parent / "mine"
    for part in ("teacher", "distill", "sources"):
        shutil.copytree(tmp_path / part, mine / part)
    (mine / "done").mkdir()
    for record in ("teacher", "distill", "sources__backbone zero-shot"):
        shutil.copy(tmp_path / "done" / f"{record}.json", mine / "done")
    rows = ["premise,hypothesis,label"] + [
        f"Fever of 3{i}C.,The patient is {'febrile' if i % 2 else 'cold'}.,{'entailment' if i % 2 else 'contradiction'}"
        for i in range(12)
    ]  # fmt: skip
    (mine / "pairs.csv").write_text("\n".join(rows) + "\n")
    (mine / "targets.yaml").write_text(
        "tasks:\n  - {name: my_pairs, task_type: nli, role: target, format: csv, "
        f"data_files: {{train: {mine / 'pairs.csv'}, test: {mine / 'pairs.csv'}}}, labels: [entailment, contradiction]}}\n"
    )
    argv = ["reproduce", "-c", SMOKE, "--pipeline.output_dir", str(mine), "--pipeline.data.root", str(data_root),
            "--pipeline.targets", str(mine / "targets.yaml")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "teacher: up to date, skipped" in out and "distill: up to date, skipped" in out
    assert "my_pairs/LoRA/k4-s0: done in" in out and "rqe/" not in out
    rows = list(csv.DictReader((mine / "results.csv").open()))
    assert {r["system"] for r in rows if r["task"] == "my_pairs"} == {"backbone zero-shot", "metaprompt zero-shot",
                                                                       *systems}  # fmt: skip


def test_reproduce_needs_a_preset_and_rejects_a_bad_k(tmp_path, capsys):
    assert main(["reproduce"]) == 2
    err = capsys.readouterr().err
    assert "shipped: " in err and "smoke" in err.split("shipped: ")[1]
    config, _ = parse_ladder_config(["-c", SMOKE, "--time-budget", "7"], cls=ReproduceConfig)
    assert config.max_minutes == 7 and config.shots == {4: [0, 1], "all": [0]}
    config.shots = {"most": [0]}
    with pytest.raises(ValueError, match=r"shots keys must be positive ints or 'all', got \['most'\]"):
        Reproduction(config)


@pytest.mark.parametrize("preset", sorted(p.name for p in (CONFIG_DIR / "reproduce").glob("*.yaml")))
def test_every_shipped_preset_plans_and_configures_every_run(preset, tmp_path, data_root, capsys):
    # each run's config resolved and its data module built: a bad setting in any stage fails here, not hours in
    argv = ["-c", str(CONFIG_DIR / "reproduce" / preset), "--pipeline.output_dir", str(tmp_path / "out"),
            "--pipeline.data.root", str(data_root)]  # fmt: skip
    config, _ = parse_ladder_config(argv, cls=ReproduceConfig)
    if PRESETS[config.backbone].source.count("/") == 1:  # a hub backbone (offline here): every other setting
        config.backbone = "smollm2-135m"  # as shipped, tokenised with the embedded tokenizer
    r = Reproduction(config)
    to_run = r.check_plan()
    assert to_run == len(r.plan()) > 0
    assert f"{to_run} runs planned, 0 recorded and current, {to_run} to run" in capsys.readouterr().out
