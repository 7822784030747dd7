"""The reproduction's headline tables from hand-made runs (known scores and differences)."""

from __future__ import annotations

import json
import re

import pytest

from metaprompt.evaluation.bootstrap import bootstrap_ci
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
    table = {row.split(" | ")[0].strip("| *"): row for row in text.splitlines() if row.startswith("| ")}
    cell = r"(\d+\.\d) \[(\d+\.\d), (\d+\.\d)\]"
    for name, expected in (
        ("t1", (25.0, 65.0, 50.0)),
        ("t2", (25.0, 65.0, 20.0)),
        ("average (2 targets)", (25.0, 65.0, 35.0)),
    ):
        cells = [tuple(map(float, c)) for c in re.findall(cell, table[name])]  # seeds 70/60 -> 65
        assert [c[0] for c in cells] == list(expected), name
        assert all(low <= est <= high and low < high for est, low, high in cells), name
    # a one-run cell is that run's own interval; the average's stratified one is narrower than a target's
    t1_zero = bootstrap_ci(runs[0].rows("t1"), {"nli": "accuracy"})
    assert re.findall(cell, table["t1"])[0] == tuple(
        f"{100 * v:.1f}" for v in (t1_zero.estimate, t1_zero.low, t1_zero.high)
    )
    width = lambda row: (lambda c: float(c[2]) - float(c[1]))(re.findall(cell, table[row])[1])  # noqa: E731
    assert width("average (2 targets)") < width("t1")
    # metaprompt - LoRA: t1 (+20, +10) -> +15, t2 (+50, +40) -> +45; mean over targets +30
    line = next(line for line in text.splitlines() if line.startswith("- metaprompt adapted − LoRA:"))
    estimate, low, high = (
        float(x) for x in line.split(": ")[1].split(" (")[0].replace("[", "").replace("]", "").replace(",", "").split()
    )
    assert estimate == pytest.approx(30.0) and 0 < low < 30 < high
    assert "prompt tuning" not in text  # no such runs: no column, no difference
    assert comparison_lines([r for r in runs if r.k == 0 and r.system == "x"]) == []


def test_the_sources_say_how_often_teacher_and_student_answered_nothing(tmp_path):
    from metaprompt.ladder_report import _empty_answers

    def ner_run(system, predictions, kind="ner", scoring="generated"):
        folder = tmp_path / system
        folder.mkdir()
        rows = [{"uid": f"s/{i}", "task": "bc5", "kind": kind, "scoring": scoring, "prediction": p,
                 "stats": {"tp": 0, "fp": len(p), "fn": 1}}
                for i, p in enumerate(predictions)]  # fmt: skip
        (folder / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        (folder / "metrics.json").write_text(json.dumps({"bc5/score": 0.0}))
        return Run("source", system, 0, 0, folder)

    teacher = ner_run("teacher", [[["aspirin", "Chemical"]], [], [["insulin", "Chemical"]]])
    student = ner_run("student", [[], [], [["insulin", "Chemical"]]])
    assert _empty_answers([teacher, student], ["bc5"]) == [
        "Empty answers on the entity/relation sources (teacher → student): bc5 1 → 2/3."
    ]
    assert _empty_answers([make_run(tmp_path, "rqe", "teacher", 0, 0, [1, 0])], ["rqe"]) == []  # labels: not asked
    ranked = ner_run("ranked", [[], [["GENE", "associated_with", "DISEASE"]]], kind="re", scoring="ranked")
    assert _empty_answers([ranked], ["bc5"]) == []  # a ranked yes/no pair's "no" is a choice, not an empty answer
