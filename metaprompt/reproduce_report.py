"""The reproduction's headline tables (results.md, before the ladder's per-rung tables).

Per k: targets x systems, each cell the mean over seeds of the target's score (x100) with a 95% bootstrap
interval (``mean_bootstrap``: the target's test examples resampled, the same draw for all seeds), and the
average over targets with a stratified interval (each target's examples resampled on their own); then each metaprompt system minus LoRA and minus prompt tuning, averaged over targets, with
a stratified paired bootstrap interval (``paired_mean_bootstrap``: each target's examples resampled on
their own, seeds matched), the comparison the paper reports (+1.5-1.7 over LoRA, +6.1-6.6 over PT).
"""

from __future__ import annotations

from collections import defaultdict

from metaprompt.evaluation.bootstrap import mean_bootstrap, paired_mean_bootstrap
from metaprompt.ladder_report import Run, _diff, k_order, primaries

ZERO_SHOT = ("backbone zero-shot", "metaprompt zero-shot")
ADAPTED = ("metaprompt adapted", "metaprompt adapted + shared prompt", "prompt tuning", "LoRA")
BASELINES = ("LoRA", "prompt tuning")


def _cell(runs: list[Run], tasks: list[str]) -> str:
    """The mean over ``tasks`` of each one's score averaged over its seeds (x100) [95% CI]; "-" without runs."""
    if not runs:
        return "-"
    by_task = [([r.rows(t) for r in runs if t in r.tasks()], t) for t in tasks]
    iv = mean_bootstrap([(rows, primaries(t, rows[0])) for rows, t in by_task])
    return f"{100 * iv.estimate:.1f} [{100 * iv.low:.1f}, {100 * iv.high:.1f}]"


def comparison_lines(runs: list[Run]) -> list[str]:
    """The headline tables of the target runs in ``runs`` (see module docstring); [] without any."""
    targets = [r for r in runs if r.role == "target"]
    if not targets:
        return []
    tasks = sorted({t for r in targets for t in r.tasks()})
    get = {(r.system, r.k, r.seed, t): r for r in targets for t in r.tasks()}
    by_cell = defaultdict(list)  # (system, k, task) -> the seeds' runs
    for (system, k, _, task), r in get.items():
        by_cell[(system, k, task)].append(r)
    lines = ["## The comparison (targets; mean over seeds, x100, 95% bootstrap intervals)", ""]
    for k in sorted({r.k for r in targets if r.k != 0}, key=k_order):
        systems = [s for s in (*ZERO_SHOT, *ADAPTED) if any(key[0] == s for key in get)]
        lines += [f"### k = {k}", "", "| target | " + " | ".join(systems) + " |", "|---|" + "---:|" * len(systems)]
        columns: dict[str, list[Run]] = {s: [] for s in systems}
        complete = []
        for task in tasks:
            cells = [by_cell.get((system, 0 if system in ZERO_SHOT else k, task), []) for system in systems]
            if all(cells):
                complete.append(task)
                for system, runs_ in zip(systems, cells):
                    columns[system] += runs_
            lines.append(f"| {task} | " + " | ".join(_cell(c, [task]) for c in cells) + " |")
        average = [_cell(columns[s], complete) if complete else "-" for s in systems]
        lines += [f"| **average ({len(complete)} targets)** | " + " | ".join(average) + " |", ""]
        for system in ("metaprompt adapted", "metaprompt adapted + shared prompt"):
            for other in BASELINES:
                per_task = []
                for task in tasks:
                    seeds = sorted(s for (sys_, kk, s, t) in get if (sys_, kk, t) == (system, k, task))
                    pairs = [
                        (get[(system, k, s, task)], get[(other, k, s, task)])
                        for s in seeds
                        if (other, k, s, task) in get
                    ]
                    if pairs:
                        rows = [(a.rows(task), b.rows(task)) for a, b in pairs]
                        per_task.append((rows, primaries(task, rows[0][0])))
                if per_task:
                    iv = paired_mean_bootstrap(per_task)
                    lines.append(f"- {system} − {other}: {_diff((iv.estimate, iv.low, iv.high))} "
                                 f"(mean over {len(per_task)} targets, seed-matched, stratified paired 95% CI)")  # fmt: skip
        lines.append("")
    return lines
