"""A reproduction's figures, drawn from its ``results.csv`` (matplotlib, no display needed).

- ``scores_by_target.png``: per target, each system's score (mean over seeds) at the largest k, with the
  95% bootstrap interval (one seed) or the seeds' range as error bars;
- ``k_shot.png``: per target, score against k (zero-shot at 0, ``all`` last) for each system;
- ``score_vs_params.png``: mean score over targets against trainable parameters (log axis), per system and k.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from metaprompt.ladder_report import k_order


def _k(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def read_targets(results_csv: Path) -> list[dict]:
    """The target rows of a results.csv, with k as int (or ``"all"``) and numbers as floats."""
    rows = []
    with Path(results_csv).open(newline="") as f:
        for row in csv.DictReader(f):
            if row["role"] != "target":
                continue
            rows.append(
                {
                    **row, "k": _k(row["k"]), "score": float(row["score"]),
                    "ci_low": float(row["ci_low"]) if row["ci_low"] else None,
                    "ci_high": float(row["ci_high"]) if row["ci_high"] else None,
                    "trainable_params": int(row["trainable_params"]) if row.get("trainable_params") else 0,
                }
            )  # fmt: skip
    return rows


def write_plots(out: Path) -> list[Path]:
    """Draw the three figures of ``out/results.csv`` into ``out``; returns the files written ([] without
    target rows)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a node or in CI
    import matplotlib.pyplot as plt

    rows = read_targets(out / "results.csv")
    if not rows:
        return []
    tasks = sorted({r["task"] for r in rows})
    from metaprompt.reproduce_report import ADAPTED, ZERO_SHOT

    seen = list(dict.fromkeys(r["system"] for r in rows))
    systems = [s for s in (*ZERO_SHOT, *ADAPTED) if s in seen] + [s for s in seen if s not in (*ZERO_SHOT, *ADAPTED)]
    cell = defaultdict(list)  # (task, system, k) -> rows over seeds
    for r in rows:
        cell[(r["task"], r["system"], r["k"])].append(r)
    ks = sorted({r["k"] for r in rows if r["k"] != 0}, key=k_order)
    written = []

    # per target, each system at the largest k (zero-shot systems at k = 0)
    top = ks[-1] if ks else 0
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks)), 4))
    width = 0.8 / len(systems)
    for j, system in enumerate(systems):
        xs, ys, errs = [], [], [[], []]
        for i, task in enumerate(tasks):
            runs = cell.get((task, system, top)) or cell.get((task, system, 0))
            if not runs:
                continue
            scores = [100 * r["score"] for r in runs]
            mean = statistics.fmean(scores)
            if len(runs) == 1 and runs[0]["ci_low"] is not None:
                low, high = 100 * runs[0]["ci_low"], 100 * runs[0]["ci_high"]
            else:
                low, high = min(scores), max(scores)
            xs.append(i + (j - (len(systems) - 1) / 2) * width)
            ys.append(mean)
            errs[0].append(max(mean - low, 0))
            errs[1].append(max(high - mean, 0))
        ax.bar(xs, ys, width, yerr=errs, capsize=2, label=system)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_ylabel("score ×100")
    ax.set_title(f"Scores by target (k = {top}; zero-shot systems at k = 0)")
    ax.legend(fontsize=7, ncol=2)
    written.append(_save(plt, fig, out / "scores_by_target.png"))

    # k-shot curves
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), squeeze=False)
    order = [0, *ks]
    for ax, task in zip(axes[0], tasks):
        for system in systems:
            points = [(i, statistics.fmean(100 * r["score"] for r in cell[(task, system, k)]))
                      for i, k in enumerate(order) if cell.get((task, system, k))]  # fmt: skip
            if points:
                ax.plot(*zip(*points), marker="o", label=system)
        ax.set_xticks(range(len(order)), [str(k) for k in order])
        ax.set_xlabel("k (training examples per task)")
        ax.set_title(task)
    axes[0][0].set_ylabel("score ×100")
    axes[0][-1].legend(fontsize=7)
    written.append(_save(plt, fig, out / "k_shot.png"))

    # mean score over targets vs trainable parameters
    fig, ax = plt.subplots(figsize=(6, 4))
    for system in systems:
        for k in ks:  # trained runs only (a zero-shot row trains nothing)
            runs = [r for task in tasks for r in cell.get((task, system, k), [])]
            if runs and all(r["trainable_params"] > 0 for r in runs):
                params = statistics.fmean(r["trainable_params"] for r in runs)
                ax.scatter(params, statistics.fmean(100 * r["score"] for r in runs), label=f"{system}, k = {k}")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel("mean score over targets ×100")
    ax.set_title("Score vs trainable parameters")
    ax.legend(fontsize=6)
    written.append(_save(plt, fig, out / "score_vs_params.png"))
    return written


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)  # figures are not freed until closed (a long reproduction reports after every chunk)
    return path
