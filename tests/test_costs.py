"""The cost model (metaprompt/costs.py): unit costs from the committed bench results, plan estimates, and
the check of the estimate against what a results folder recorded."""

from __future__ import annotations

import json
import re

import pytest

from metaprompt import costs
from metaprompt.__main__ import main


def test_unit_costs_come_from_the_committed_bench_results():
    u = costs.UnitCosts.from_bench()
    assert u.backbone == "smollm2-135m" and u.lengths == (10, 100)
    values = [*u.grouped_token_s, *u.mixed_token_s, u.ranked_example_s, u.prefill_example_s, u.decode_step_s]
    assert all(v > 0 for v in values) and u.distill_over_step > 1 and u.decode_rows >= 1
    # a longer soft prompt costs more per token; linear between the bench's two lengths, held below them
    assert u.token_s(False, 100) > u.token_s(False, 10) == u.token_s(False, 2)
    mid = u.token_s(False, 55)
    assert mid == pytest.approx((u.token_s(False, 10) + u.token_s(False, 100)) / 2)


def test_bench_results_without_a_unit_cost_name_the_file_and_the_entry(tmp_path):
    out = json.loads(costs.BENCH_RESULTS.read_text())
    del out["eval_speed"]["decode"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(out))
    message = f"{path}: no unit cost 'decode' in these bench results (rerun `make bench`)"
    with pytest.raises(ValueError, match=re.escape(message)):
        costs.UnitCosts.from_bench(path)
    with pytest.raises(ValueError, match=r"missing.json: cannot read bench results"):
        costs.UnitCosts.from_bench(tmp_path / "missing.json")


def test_compare_sets_the_recorded_seconds_beside_the_estimate_of_the_same_runs(tmp_path):
    est = [
        costs.RunEstimate("teacher", "teacher", 10, 5, 100.0, 20.0),
        costs.RunEstimate("rqe/LoRA/k4-s0", "LoRA", 2, 4, 30.0, 10.0),
        costs.RunEstimate("rqe/LoRA/k4-s1", "LoRA", 2, 4, 30.0, 10.0),
    ]
    (tmp_path / "done").mkdir()
    record = {"result": {"seconds": 60.0, "train_seconds": 45.0, "eval_seconds": 15.0}}
    (tmp_path / "done" / "rqe__LoRA__k4-s0.json").write_text(json.dumps(record))
    rows = {r["stage"]: r for r in costs.compare(est, tmp_path)}
    assert rows["teacher"]["recorded_runs"] == 0 and rows["teacher"]["measured_over_estimate"] is None
    lora = rows["LoRA"]
    assert (lora["runs"], lora["steps"], lora["test_examples"], lora["estimate_s"]) == (2, 4, 8, 80.0)
    assert lora["recorded_runs"] == 1 and lora["measured_over_estimate"] == pytest.approx(60.0 / 40.0)
    table = costs.render(list(rows.values()), "t")
    assert "| LoRA | 2 | 4 | 8 | 0.02 | 1 | 1.50 |" in table and "| **total** | 3 | | | **0.06** | 1 | 1.50 |" in table


def test_stage_groups_of_run_names():
    assert costs.stage_group("teacher") == "teacher"
    assert costs.stage_group("sources/backbone zero-shot") == "sources/backbone zero-shot"
    assert costs.stage_group("rqe/metaprompt adapted/k16-s2") == "metaprompt adapted"


@pytest.mark.slow
def test_the_smoke_preset_estimate_runs_nothing(tmp_path, data_root, capsys):
    out = tmp_path / "smoke"
    argv = ["reproduce", "-c", "lightning_configs/reproduce/smoke.yaml", "--pipeline.output_dir", str(out),
            "--pipeline.data.root", str(data_root), "--estimate"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert not out.exists()  # nothing ran, nothing was written
    rows = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line]
    stages = {line.split(" | ")[0][2:] for line in rows}
    assert {"teacher", "distill", "LoRA", "metaprompt adapted", "**total**"} <= stages
    assert "| **total** | 31 |" in printed  # every run of the plan (as the smoke reproduction test counts)
    assert "measured on smollm2-135m, not tiny-llama" in printed
    bad = tmp_path / "bench.json"
    bad.write_text("{}")
    assert main([*argv, "--bench-results", str(bad)]) == 2
    assert f"{bad}: no unit cost" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cpu_estimate_agrees_with_what_the_cpu_reproduction_recorded(data_root):
    # the committed results/cpu records their seconds: the model is checked against them, stage by stage
    from metaprompt.__main__ import parse_ladder_config
    from metaprompt.reproduce import ReproduceConfig, Reproduction

    config, _ = parse_ladder_config(
        ["-c", "lightning_configs/reproduce/cpu.yaml", "--pipeline.data.root", str(data_root)], cls=ReproduceConfig
    )
    r = Reproduction(config)
    if not (r.out / "done").exists():
        pytest.skip(f"{r.out} holds no recorded runs")
    rows = costs.compare(costs.estimate_plan(r), r.out)
    assert sum(row["runs"] for row in rows) == 303
    total = sum(row["estimate_s"] for row in rows) / 3600
    assert 4 < total < 10  # the preset is sized to ~8 h on 2 cores
    for row in rows:
        if row["recorded_runs"]:
            assert 0.4 < row["measured_over_estimate"] < 2.5, row
