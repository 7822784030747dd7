"""The ladder and the learning-rate sweep end to end on the tiny backbone and real (small) data."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from metaprompt.evaluation.examples import read_predictions
from metaprompt.ladder import Ladder, LadderConfig
from metaprompt.pipeline import Stage

pytestmark = pytest.mark.slow


def tiny_config(out, root, **kw) -> LadderConfig:
    return LadderConfig(
        output_dir=str(out),
        backbone="tiny-llama",
        prompt_length=2,
        sources="gad,kqa_nli",
        targets="rqe",
        accelerator="cpu",
        max_new_tokens={"re": 4, "nli": 2},
        data={"max_length": 96, "min_prompt_tokens": 16, "batch_size": 2, "max_eval_per_task": 4, "root": str(root)},
        teacher=Stage(2, {"optim": {"lr": 0.01}}),
        distill=Stage(2, {"optim": {"lr": 0.01}}),
        target=Stage(0, {"optim": {"lr": 0.01}}),
        prompt_tuning=Stage(0, {"optim": {"lr": 0.01}}),
        lora=Stage(0, {"optim": {"lr": 1e-3}}),
        shots={4: [0, 1]},
        steps={4: 2},
        ablations={"no distillation": {"lam": 0.0}},
        ablation_shots=4,
        ablation_seeds=[0],
        **kw,
    )


def test_ladder_runs_every_rung_writes_tables_and_resumes(tmp_path, data_root, capsys):
    # a chunk of zero minutes still finishes the run it is in, then stops: resumable
    assert Ladder(tiny_config(tmp_path, data_root, max_minutes=0.0)).run() == {"complete": False}
    assert (tmp_path / "results.md").read_text().startswith("# Sanity ladder (PARTIAL")
    cfg = tiny_config(tmp_path, data_root)
    assert Ladder(cfg).run() == {"complete": True}
    records = [json.loads(p.read_text())["result"] for p in (tmp_path / "done").glob("*.json")]
    timed = [r for r in records if "train_seconds" in r and "eval_seconds" in r]  # trained and tested runs
    assert timed and all(r["train_seconds"] + r["eval_seconds"] <= r["seconds"] + 0.15 for r in timed)  # 0.1 s rounding
    assert any("eval_seconds" in r and "train_seconds" not in r for r in records)  # zero-shot: eval only
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    systems = {(r["role"], r["task"], r["system"], r["k"], r["seed"]) for r in rows}
    assert ("source", "gad", "teacher", "0", "0") in systems and ("source", "kqa_nli", "student", "0", "0") in systems
    for system in ("backbone zero-shot", "metaprompt zero-shot"):
        assert ("target", "rqe", system, "0", "0") in systems
    for system in ("metaprompt adapted", "prompt tuning", "LoRA"):
        assert {("target", "rqe", system, "4", s) for s in ("0", "1")} <= systems
    assert ("target", "rqe", "metaprompt adapted no-distillation", "4", "0") in systems
    for r in rows:
        assert float(r["ci_low"]) <= float(r["score"]) <= float(r["ci_high"]) and int(r["n_test"]) > 0
    md = (tmp_path / "results.md").read_text()
    assert "teacher − zero-shot" in md and "### rqe" in md and "− prompt tuning" in md
    assert "best constant" in md and "best constant answer" in md
    ablations = md.split("## Ablations (rung e)")[1]  # each variant against the full metaprompt, seed by seed
    assert (
        "| rqe | 4 | no-distillation | 1 |" in ablations
        and "| rqe | 4 | random init (= prompt tuning) | 2 |" in ablations
    )
    assert f"Compute behind these tables: {len(records)} runs" in md and "CPU cores" in md
    run = tmp_path / "targets/rqe/LoRA/k4-s0"  # predictions kept compressed, without the prompt text
    assert not (run / "predictions.jsonl").exists()
    packed = (run / "predictions.jsonl.gz").read_bytes()
    rows = read_predictions(run)
    assert len(rows) == 4 and all("input" not in r and r["task"] == "rqe" for r in rows)
    capsys.readouterr()
    Ladder(cfg).run()  # a rerun finds every record: nothing trains again
    assert "done in" not in capsys.readouterr().out
    assert (run / "predictions.jsonl.gz").read_bytes() == packed  # and no committed file changes
    # new teacher settings: teacher, student and every metaprompt run are stale until rerun, so the report
    # leaves them out (the zero-shot backbone and the baselines do not depend on the teacher)
    changed = dataclasses.replace(cfg, teacher=Stage(2, {"optim": {"lr": 0.02}}), max_minutes=0.0)
    assert Ladder(changed).run() == {"complete": False}
    after = {(r["role"], r["system"]) for r in csv.DictReader((tmp_path / "results.csv").open())}
    assert ("source", "backbone zero-shot") in after and ("target", "LoRA") in after
    assert not {s for _, s in after} & {"teacher", "student", "metaprompt zero-shot", "metaprompt adapted"}
    assert not any(s.startswith("metaprompt") for _, s in after)
    md = (tmp_path / "results.md").read_text()
    assert "Left out: " in md and "(sources not scored yet)" in md
    # current: the sources' and rqe's zero-shot backbone, prompt tuning and LoRA at 2 seeds; stale compute not counted
    assert "Compute behind these tables: 6 runs" in md


def test_ladder_rejects_a_k_without_steps(tmp_path, data_root):
    with pytest.raises(ValueError, match=r"no entry for k = \[16\]"):
        Ladder(dataclasses.replace(tiny_config(tmp_path, data_root), shots={16: [0]}))


def test_a_bad_stage_setting_fails_before_any_run_naming_its_run(tmp_path, data_root):
    # the two batch regroupings conflict; found when the plan is checked, before the sources' zero-shot run
    bad = dataclasses.replace(
        tiny_config(tmp_path, data_root), teacher=Stage(2, {"optim": {"lr": 0.01}}, {"length_bucketing": True})
    )
    with pytest.raises(ValueError, match=r"run 'teacher' cannot be set up: tasks_per_batch and length_bucketing"):
        Ladder(bad).run()
    assert not (tmp_path / "done").exists() and not (tmp_path / "sources").exists()


def test_the_committed_ladder_config_parses_and_validates():
    from pathlib import Path

    from metaprompt.__main__ import parse_ladder_config

    yaml = Path(__file__).resolve().parents[1] / "lightning_configs" / "ladder.yaml"
    config, _ = parse_ladder_config(["-c", str(yaml), "--pipeline.max_minutes", "30"])
    assert config.max_minutes == 30 and config.shots == {16: [0, 1, 2], 64: [0]}
    assert isinstance(config.teacher, Stage) and config.data["max_eval_per_task"] == {"ranked": 200, "generated": 100}
    Ladder(config)  # steps cover every k


def test_sweep_resumes_and_keeps_the_rows_of_stages_swept_before(tmp_path, data_root, capsys):
    from metaprompt.sweep import GRIDS, Sweep

    cfg = tiny_config(tmp_path, data_root)
    chosen = Sweep(cfg, max_val=4, sweep_targets=1, max_steps=2).run(("teacher",))
    assert chosen["teacher"] in GRIDS["teacher"]
    Sweep(cfg, max_val=4, sweep_targets=1, max_steps=2).run(("prompt_tuning",))  # a later, separate sweep
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").open()))
    assert [r["stage"] for r in rows] == ["teacher"] * 3 + ["prompt_tuning"] * 3  # the teacher's rows stay
    md = (tmp_path / "sweep" / "sweep.md").read_text()
    assert md.count("| yes |") == 2  # one choice per stage, the earlier stage's too
    capsys.readouterr()
    Sweep(cfg, max_val=4, sweep_targets=1, max_steps=2).run(("teacher", "prompt_tuning"))
    assert "[sweep]" not in capsys.readouterr().out  # every point recorded: nothing trains again


NOT_TRAINED_INERT = {"optim", "factor_lr", "k_shot"}
"""Settings with no effect on a run that trains nothing (a zero-shot row): the k-shot training sample and the
optimizer's. The ladder's zero-shot rows ran with the module's and data module's defaults for them; composed
from their stage YAMLs now, they take the YAML's."""


def test_every_recorded_ladder_run_resolves_as_it_ran():
    """Each of the ladder's committed runs (its ``config.yaml``, written by the code that ran it: what the
    pipeline passed, the rest being defaults) resolves to what ``lightning_configs/ladder.yaml`` composes
    for it from the stage YAMLs now: the 98 runs' records stay valid, and a stage-YAML edit that would
    change them fails here."""
    from pathlib import Path

    import yaml
    from jsonargparse._util import import_object

    from metaprompt import compose
    from metaprompt.__main__ import parse_ladder_config

    root = Path(__file__).resolve().parents[1]
    config, _ = parse_ladder_config(["-c", str(root / "lightning_configs" / "ladder.yaml")])
    config = dataclasses.replace(config, output_dir=str(root / config.output_dir))
    ladder = Ladder(config)
    runs = ladder.plan()
    assert len(runs) == 98
    for run in runs:
        text = (run.folder / "config.yaml").read_text()
        recorded = yaml.safe_load(text)
        if "ValidationAsTest" in text:  # the sources' data module then: the validation split served as test
            recorded["data"]["test_split"] = "validation"
        was = compose.plain(compose.parser().parse_object(recorded))
        now = compose.plain(ladder.resolve(run))
        trained = was["trainer"]["max_steps"] > 1 or now["trainer"]["max_steps"] > 0
        assert import_object(was["model"]["class_path"]) is import_object(now["model"]["class_path"]), run.name
        for part, a, b in (
            ("model", was["model"]["init_args"], now["model"]["init_args"]),
            ("data", was["data"], now["data"]),
        ):
            differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
            if not trained:
                differ -= NOT_TRAINED_INERT
            for location in ("output_dir", "teacher_adapter", "metaprompt_adapter"):  # absolute here, relative then
                if location in differ and Path(str(b[location])) == root / str(a[location]):
                    differ.discard(location)
            assert not differ, f"{run.name}: {part} {sorted(differ)}: ran with {[a.get(k) for k in sorted(differ)]}"
        assert was["seed_everything"] == now["seed_everything"], run.name
        assert (was["trainer"]["accelerator"], was["trainer"]["precision"]) == (
            now["trainer"]["accelerator"],
            now["trainer"]["precision"],
        ), run.name
        assert was["trainer"]["max_steps"] == max(now["trainer"]["max_steps"], 1), run.name


def test_the_committed_ladder_records_are_current():
    """Every committed ladder run's record matches its key today (settings, data, upstream adapters): the
    report's tables show current results only. A change to a key's recipe, a stage YAML, a verbalizer or a
    reader that would silently rerun (or orphan) the 5.8 h of runs fails here instead."""
    from pathlib import Path

    from metaprompt.__main__ import parse_ladder_config

    root = Path(__file__).resolve().parents[1]
    config, _ = parse_ladder_config(["-c", str(root / "lightning_configs" / "ladder.yaml")])
    ladder = Ladder(dataclasses.replace(config, output_dir=str(root / config.output_dir)))
    stale = [run.name for run in ladder.plan() if not ladder.record_status(run)[3]]
    assert not stale, f"{len(stale)} stale ladder records, e.g. {stale[:3]}"


def test_an_ablation_sets_group_fields_and_keeps_the_stage_s_others(tmp_path, data_root):
    config = dataclasses.replace(tiny_config(tmp_path, data_root), ablations={"warm": {"optim": {"warmup_steps": 3}}})
    ladder = Ladder(config)
    assert ladder.distill_stage("warm").model["optim"] == {"lr": 0.01, "warmup_steps": 3}
