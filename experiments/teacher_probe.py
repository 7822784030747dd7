"""Teacher budget probe: how many steps, at which learning rate, a source's teacher needs to beat zero-shot.

    python experiments/teacher_probe.py --tasks gad,bc5cdr_chem --points 100:0.03,300:0.03,300:0.01 [--seeds 0,1]

Why: the ladder's teachers (one prompt per source, 400 steps of batch 4 shared by 6 sources) came out
very differently from two runs that differed only in other tasks' data (bc5cdr_chem 24.1 vs 0.0 F1,
evidence_inference 50.1 vs 20.5), and with yes/no answers the gad and pgr teachers fell below the
zero-shot backbone. Each point here is one *single-task* teacher with the ladder's settings otherwise
(``lightning_configs/ladder.yaml``: backbone, prompt length, data, the teacher's data overrides), trained
for ``steps`` steps of its own task only and scored on the ladder's fixed validation sample, so its score
compares directly with the ladder's zero-shot and teacher columns. Points are completion-recorded pipeline
runs under ``results/teacher_probe/`` (a rerun skips finished ones); ``results.csv`` / ``results.md``
list them with 95% bootstrap intervals.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from metaprompt.__main__ import parse_ladder_config
from metaprompt.compose import merge
from metaprompt.ladder import SOURCES_ON_VALIDATION, Ladder
from metaprompt.pipeline import Stage

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", required=True, help="comma-separated source tasks")
    parser.add_argument("--points", required=True, help="comma-separated steps:learning_rate pairs")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--config", default=str(ROOT / "lightning_configs" / "ladder.yaml"))
    parser.add_argument("--out", default=str(ROOT / "results" / "teacher_probe"))
    args = parser.parse_args()
    config, _ = parse_ladder_config(["-c", args.config, "--pipeline.output_dir", args.out])
    ladder = Ladder(config)
    out = Path(args.out)
    rows = []
    for task in args.tasks.split(","):
        for point in args.points.split(","):
            steps, lr = int(point.split(":")[0]), float(point.split(":")[1])
            for seed in (int(s) for s in args.seeds.split(",")):
                name = f"{task}/steps{steps}-lr{lr:g}-s{seed}"
                stage = Stage(steps, merge(config.teacher.model, {"optim": {"lr": lr}}), config.teacher.data)
                run = ladder.make_run(
                    name, "teacher", out / task / f"steps{steps}-lr{lr:g}-s{seed}", stage, task, seed=seed,
                    model={"prompt_length": config.prompt_length}, data=SOURCES_ON_VALIDATION,
                )  # fmt: skip
                result = ladder.execute(run)
                rows.append(
                    {
                        "task": task, "steps": steps, "learning_rate": lr, "seed": seed,
                        "score": result[f"{task}/score"], "ci_low": result.get(f"{task}/ci_low"),
                        "ci_high": result.get(f"{task}/ci_high"), "n_test": result.get(f"{task}/n_test"),
                        "train_seconds": result.get("train_seconds"),
                    }
                )  # fmt: skip
                write(out, rows)


def write(out: Path, new: list[dict]) -> None:
    """results.csv / results.md: earlier points kept, this run's points updated."""
    path = out / "results.csv"
    seen = {(r["task"], r["steps"], r["learning_rate"], r["seed"]): r for r in new}
    earlier = []
    if path.is_file():
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                ident = (r["task"], int(r["steps"]), float(r["learning_rate"]), int(r["seed"]))
                if ident not in seen:
                    earlier.append(r)
    rows = earlier + new
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(new[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| task | steps | lr | seed | score x100 [95% CI] | n | train s |", "|---|---:|---:|---:|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["task"], int(r["steps"]), -float(r["learning_rate"]), int(r["seed"]))):
        s, lo, hi = (100 * float(r[k]) for k in ("score", "ci_low", "ci_high"))
        lines.append(
            f"| {r['task']} | {r['steps']} | {float(r['learning_rate']):g} | {r['seed']} | {s:.1f} [{lo:.1f}, {hi:.1f}] "
            f"| {r['n_test']} | {r['train_seconds']} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(new[-1]), flush=True)


if __name__ == "__main__":
    main()
