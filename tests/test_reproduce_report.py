"""The reproduction's headline tables from hand-made runs (known scores and differences)."""

from __future__ import annotations

import json

import pytest

from metaprompt.ladder_report import Run
from metaprompt.reproduce_report import comparison_lines


def make_run(tmp_path, task, system, k, seed, correct):
    folder = tmp_path / task / system.replace(" ", "_") / f"k{k}-s{seed}"
    folder.mkdir(parents=True)
    rows = [{"uid": f"{task}/{i}", "task": task, "kind": "nli", "stats": {"gold": "a", "pred": "a" if c else "b",
             "correct": int(c)}} for i, c in enumerate(correct)]  # fmt: skip
    (folder / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (folder / "metrics.json").write_text(json.dumps({f"{task}/score": sum(correct) / len(correct)}))
    return Run("target", system, k, seed, folder)


def test_the_table_averages_seeds_then_targets_and_the_differences_pair_seeds(tmp_path):
    n = 20
    runs = []
    for task, lora_right in (("t1", 10), ("t2", 4)):
        runs.append(make_run(tmp_path, task, "backbone zero-shot", 0, 0, [1] * 5 + [0] * 15))
        for seed, meta_right in ((0, 14), (1, 12)):
            runs.append(
                make_run(tmp_path, task, "metaprompt adapted", 16, seed, [1] * meta_right + [0] * (n - meta_right))
            )
            runs.append(make_run(tmp_path, task, "LoRA", 16, seed, [1] * lora_right + [0] * (n - lora_right)))
    text = "\n".join(comparison_lines(runs))
    assert "| target | backbone zero-shot | metaprompt adapted | LoRA |" in text
    assert "| t1 | 25.0 | 65.0 | 50.0 |" in text and "| t2 | 25.0 | 65.0 | 20.0 |" in text  # seeds 70/60 -> 65
    assert "| **average (2 targets)** | 25.0 | 65.0 | 35.0 |" in text
    # metaprompt - LoRA: t1 (+20, +10) -> +15, t2 (+50, +40) -> +45; mean over targets +30
    line = next(line for line in text.splitlines() if line.startswith("- metaprompt adapted − LoRA:"))
    estimate, low, high = (
        float(x) for x in line.split(": ")[1].split(" (")[0].replace("[", "").replace("]", "").replace(",", "").split()
    )
    assert estimate == pytest.approx(30.0) and 0 < low < 30 < high
    assert "prompt tuning" not in text  # no such runs: no column, no difference
    assert comparison_lines([r for r in runs if r.k == 0 and r.system == "x"]) == []
