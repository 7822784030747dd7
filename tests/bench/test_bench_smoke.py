"""``make bench-smoke``: the whole benchmark, on the tiny backbone, writes every result key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "p1_train_vs_peft",
    "p2_step_over_forward",
    "p3_distill_over_pt",
    "p4_mixed_over_single",
    "p4_mixed_vs_peft_lora",
    "p5_target_bytes",
    "p1_real_batches_vs_peft",
    "p7_ranked_over_generate",
    "p8_decode_vs_peft_prompt_tuning",
    "p8_decode_fraction_of_bound",
    "p9_second_start_over_first",
    "eval_metaprompt_over_backbone",
    "peak_rss_mb",
)


@pytest.mark.slow
def test_bench_smoke_writes_all_results(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny matmuls; the numbers are not the point here
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    for key in KEYS:
        assert key in results, key
    ratios = [results[k] for k in KEYS[:5]] + [results["p1_train_vs_peft_64"], results["p3_online_teacher_over_pt"]]
    assert all(isinstance(r, float) and r > 0 for r in ratios)
    # p5 does not depend on timing: LLaMA-3.1-8B's d = 4096, l = 100, r = 1 in bf16 is (100 + 4096) * 2 bytes
    assert results["p5_target_bytes"] == 8392
    assert results["sizes"]["lora_r8_qv"]["llama-3.1-8b"]["params"] == 3_407_872
    assert set(results["peak_rss_mb"]) == {"ours", "peft"} and all(v > 0 for v in results["peak_rss_mb"].values())
    assert results["padding_fraction"]["bucketed"] < results["padding_fraction"]["plain"]
    assert set(results["targets"]) == set(KEYS[:-1])
    assert all(isinstance(results[k], float) and results[k] > 0 for k in KEYS[6:-1])
    assert set(results["real_batches"]["distinct_tasks_per_batch"]["grouped"]) == {1}
    assert set(results["eval_speed"]["eval_cost"]["seconds"]) == {"backbone", "metaprompt", "prompt_tuning", "lora"}
    assert results["startup"]["fit"]["first"] > 0 and results["startup"]["test"]["second"] > 0
    assert "p1_train_vs_peft" in run.stdout  # the printed table
    assert set(results["timings_s"]["training"]["ablations_step_s"]) == {
        "defaults",
        "no_shared_prefix",
        "full_logits",
        "no_fused_loss",
        "activation_checkpointing",
        "eager_attention",
        "bf16_autocast",
    }
    report = (tmp_path / "results.md").read_text()  # the markdown the README's Performance section copies
    assert "| `p2_step_over_forward` |" in report and "| no_fused_loss |" in report and "Machine:" in report
    assert "| `p8_decode_fraction_of_bound` |" in report and "| `metaprompt fit` |" in report


@pytest.mark.slow
def test_serving_bench_smoke_times_the_three_orders(tmp_path, data_root):
    out = tmp_path / "serving.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.serving", "--smoke", "--root", str(data_root), "--out", str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["median_seconds"]) == {"mixed", "grouped", "mixed_no_window"}
    assert all(len(v) == 2 and min(v) > 0 for v in result["seconds"].values())
    assert result["rows"] == 20 and result["window"] == 8 * result["batch_size"]
    assert result["met"] == (result["mixed_over_grouped_throughput"] >= 0.9)
