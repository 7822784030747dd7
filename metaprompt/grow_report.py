"""``<run>/grow/results.md``: what growing a metaprompt did to the old tasks, how much of the new tasks'
teacher gain it kept, and what it cost next to (re)training (see metaprompt/grow.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from metaprompt.evaluation.bootstrap import paired_mean_bootstrap
from metaprompt.ladder_report import Run, _diff, _score, machine, paired, primaries

if TYPE_CHECKING:
    from metaprompt.grow import Grower


def _run(grower: Grower, role: str, folder: Path) -> Run | None:
    record = grower.out / "done" / f"{role.replace('/', '__')}.json"
    return Run("source", role, 0, 0, folder, record) if (folder / "metrics.json").is_file() else None


def _mean_diff(a: Run, b: Run, tasks: list[str]) -> str:
    iv = paired_mean_bootstrap([([(a.rows(t), b.rows(t))], primaries(t, a.rows(t))) for t in tasks])
    return _diff((iv.estimate, iv.low, iv.high))


def _seconds(result: dict | None) -> float:
    return float((result or {}).get("seconds") or 0.0)


def _base_seconds(base: Path, name: str) -> float:
    record = base / "done" / f"{name}.json"
    return _seconds(json.loads(record.read_text())["result"]) if record.is_file() else 0.0


def write_report(grower: Grower, results: dict[str, dict]) -> Path:
    """Write ``grow/results.md`` from the finished runs' predictions; returns its path."""
    out, cfg = grower.out, grower.config
    runs = {role: _run(grower, run.name, run.folder) for role, run in grower.runs().items()}
    runs["original"] = _run(grower, "original", grower.original_folder())
    old, new = grower.old_names, grower.new_names
    lines = [
        "# Growing the metaprompt",
        "",
        f"Base run `{grower.base}` ({len(old)} sources) grown by {', '.join(new)}; scores x100 on the sources' "
        "validation split with 95% bootstrap intervals, differences paired on the same examples. "
        f"Written on {machine()}.",
        "",
    ]
    unchanged = grower.old_prompts_unchanged()
    lines += [
        "## The old tasks",
        "",
        f"Grown (new factors only): P* and the {len(old)} old tasks' U, V are "
        + ("**bit-identical** to the base metaprompt's (checked), so their prompts and scores are unchanged."
           if unchanged else "NOT identical to the base metaprompt's (unexpected: see grow/metaprompt)."),
        "",
    ]  # fmt: skip
    systems = [(r, runs.get(r)) for r in ("refined", "scratch") if runs.get(r)]
    if runs.get("original") and systems:
        lines += ["| task | original | " + " | ".join(f"{r} | {r} − original" for r, _ in systems) + " |"]
        lines.append("|---|---:|" + "---:|---|" * len(systems))
        for task in old:
            cells = [_score(runs["original"], task)]
            for _, run in systems:
                cells += [_score(run, task), _diff(paired(run, runs["original"], task))]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines.append("")
        for role, run in systems:
            worst = max(abs(paired(run, runs["original"], t)[0]) for t in old)
            lines.append(
                f"- {role} − original, mean over the {len(old)} old tasks: {_mean_diff(run, runs['original'], old)} "
                f"(stratified paired 95% CI); largest single-task change {100 * worst:.1f} points (target: <= 1)."
            )
        lines.append("")
    zero, teacher = runs.get("new zero-shot"), runs.get("teacher")
    systems = [(r, runs.get(r)) for r in ("grown", "refined", "scratch") if runs.get(r)]
    if zero and teacher and systems:
        lines += [
            "## The new tasks",
            "",
            "| task | zero-shot | teacher | " + " | ".join(f"{r} | kept" for r, _ in systems) + " |",
        ]
        lines.append("|---|---:|---:|" + "---:|---:|" * len(systems))
        for task in new:
            gain = paired(teacher, zero, task)
            cells = [_score(zero, task), _score(teacher, task)]
            for _, run in systems:
                got = paired(run, zero, task)
                cells += [_score(run, task), f"{100 * got[0] / gain[0]:.0f}%" if gain[0] > 0 else "-"]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "kept = (student − zero-shot) / (teacher − zero-shot) (target: >= 90%); teacher − zero-shot: "
            + "; ".join(f"{t} {_diff(paired(teacher, zero, t))}" for t in new)
            + ".",
            "",
        ]
        lines += [
            f"- {role} − teacher: " + "; ".join(f"{t} {_diff(paired(run, teacher, t))}" for t in new) + "."
            for role, run in systems
        ] + [""]
    grow_s = sum(_seconds(results.get(r)) for r in ("teacher", "factors", "grown"))
    base_s = _base_seconds(grower.base, "teacher") + _base_seconds(grower.base, "distill")
    lines += [
        "## Cost",
        "",
        "| what | wall time, min |",
        "|---|---:|",
        f"| growing: new teacher(s) + new factors (training and scoring the new tasks) | {grow_s / 60:.1f} |",
    ]
    if "refined" in results:
        refined_s = _seconds(results["refined"])
        lines.append(
            f"| the refinement (teacher cache, training, scoring all {len(old) + len(new)} tasks) | {refined_s / 60:.1f} |"
        )
    lines += [f"| the base run's teachers + distillation ({len(old)} sources, as recorded) | {base_s / 60:.1f} |"]
    if "scratch" in results:
        scratch_s = _seconds(results.get("teacher")) + _seconds(results["scratch"])
        lines.append(
            f"| from scratch: new teacher(s) + distillation on all {len(old) + len(new)} tasks | {scratch_s / 60:.1f} |"
        )
    lines += ["", f"Settings: factors {cfg.factors.max_steps} steps; refinement {cfg.refine.max_steps} steps.", ""]
    path = out / "results.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"[grow] wrote {path}", flush=True)
    return path
