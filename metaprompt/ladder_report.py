"""The ladder's tables: ``results.csv`` (one row per task x system x k x seed) and ``results.md`` (the rungs).

Scores come from each run's ``metrics.json`` (point estimate and 95% percentile bootstrap interval);
every comparison of two systems on a task is a *paired* bootstrap of the difference on the same test
examples (``metaprompt.evaluation.bootstrap.paired_bootstrap``, joined by uid), seed-matched where both
systems were trained (seed s of one vs seed s of the other).
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from metaprompt.evaluation.bootstrap import FAMILY_METRICS, paired_bootstrap, stats_family
from metaprompt.evaluation.constant import best_constant
from metaprompt.evaluation.evaluator import PRIMARY_METRIC, PRIMARY_OVERRIDES, QA_KINDS
from metaprompt.evaluation.examples import read_predictions

SYSTEM_ORDER = ("backbone zero-shot", "metaprompt zero-shot", "metaprompt adapted", "prompt tuning", "LoRA")
FOLDER_SYSTEMS = {"metaprompt_adapted_plus_shared": "metaprompt adapted + shared prompt"}
"""Systems whose folder name is not the name with spaces as underscores (not ablations of the metaprompt)."""
COLUMNS = (
    "role", "task", "task_type", "system", "k", "seed", "metric", "score", "ci_low", "ci_high", "n_test", "scoring",
    "trainable_params", "trainable_pct", "adapter_bytes", "train_seconds", "eval_seconds",
)  # fmt: skip
"""results.csv: a run's record gives its cost columns (blank where it has none, e.g. no adapter written)."""


def k_order(k: int | str) -> tuple[int, int | str]:
    """Sort key of a k: the numbers in order, then ``"all"``."""
    return (0, k) if isinstance(k, int) else (1, str(k))


def primary(task: str, row: dict) -> str:
    """The metric behind ``<task>/score`` for one example's kind, the rule of ``TaskEvaluator.primary_metric``:
    the task's override where the kind's metric computes it (read off the row's statistics), else the
    kind's default."""
    override = PRIMARY_OVERRIDES.get(task)
    return override if override in FAMILY_METRICS[stats_family(row["stats"])] else PRIMARY_METRIC[row["kind"]]


def primaries(task: str, rows: list[dict]) -> dict[str, str]:
    """Kind -> primary metric for a task's rows (the ``primary`` argument of the bootstrap functions)."""
    return {row["kind"]: primary(task, row) for row in rows}


class Run:
    """One evaluated run: its per-task scores and per-example rows."""

    def __init__(self, role: str, system: str, k: int | str, seed: int, folder: Path, record: Path | None = None):
        self.role, self.system, self.k, self.seed, self.folder = role, system, k, seed, folder
        self.metrics = json.loads((folder / "metrics.json").read_text())
        self.record = json.loads(record.read_text())["result"] if record is not None and record.is_file() else {}
        self._rows: list[dict] | None = None

    def rows(self, task: str) -> list[dict]:
        if self._rows is None:
            self._rows = read_predictions(self.folder)
        return [r for r in self._rows if r["task"] == task]

    def tasks(self) -> list[str]:
        return sorted(key[: -len("/score")] for key in self.metrics if key.endswith("/score") and key != "macro/score")

    def csv_rows(self) -> list[dict]:
        out = []
        m, rec = self.metrics, self.record
        fraction = m.get("trainable_fraction", rec.get("trainable_fraction"))
        for task in self.tasks():
            rows = self.rows(task)
            kinds = primaries(task, rows)
            out.append(
                {
                    "role": self.role, "task": task, "system": self.system, "k": self.k, "seed": self.seed,
                    "task_type": "+".join(sorted({"qa" if kind in QA_KINDS else kind for kind in kinds})),
                    "metric": "+".join(sorted(set(kinds.values()))),
                    "score": m[f"{task}/score"], "ci_low": m.get(f"{task}/ci_low"), "ci_high": m.get(f"{task}/ci_high"),
                    "n_test": m.get(f"{task}/n_test"), "scoring": m.get(f"{task}/scoring"),
                    "trainable_params": m.get("trainable_params", rec.get("trainable_params")),
                    "trainable_pct": None if fraction is None else round(100 * fraction, 6),
                    "adapter_bytes": rec.get("adapter_bytes"), "train_seconds": rec.get("train_seconds"),
                    "eval_seconds": rec.get("eval_seconds"),
                }
            )  # fmt: skip
        return out


def collect(out: Path, current: dict[Path, Path] | None = None) -> tuple[list[Run], int]:
    """Every finished run under a ladder folder, and how many stale ones were left out.

    Args:
        out: The ladder's output folder.
        current: Resolved folders whose record matches the present config, each with its record
            (``Ladder.current_folders``); a finished folder outside it is stale (an earlier config, or its
            upstream stage reran) and is not reported. None: every finished folder (no cost columns).
    """
    found = []
    for role, system, folder in (
        ("source", "backbone zero-shot", out / "sources" / "backbone_zero-shot"),
        ("source", "teacher", out / "teacher"),
        ("source", "student", out / "distill"),
    ):
        if (folder / "metrics.json").is_file():
            found.append((role, system, 0, 0, folder))
    for metrics in sorted((out / "targets").glob("*/*/k*-s*/metrics.json")):
        folder = metrics.parent
        k, seed = folder.name[1:].split("-s")
        system = FOLDER_SYSTEMS.get(folder.parent.name, folder.parent.name.replace("_", " "))
        found.append(("target", system, int(k) if k.isdigit() else k, int(seed), folder))
    kept = [f for f in found if current is None or f[-1].resolve() in current]
    records = current or {}
    return [Run(*f, records.get(f[-1].resolve())) for f in kept], len(found) - len(kept)


def paired(a: Run, b: Run, task: str) -> tuple[float, float, float]:
    """``score(a) - score(b)`` on ``task`` with its paired 95% bootstrap interval."""
    rows_a, rows_b = a.rows(task), b.rows(task)
    iv = paired_bootstrap(rows_a, rows_b, primaries(task, rows_a))
    return iv.estimate, iv.low, iv.high


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(score, low, high) -> str:
    return f"{_pct(score)} [{_pct(low)}, {_pct(high)}]"


def _diff(d: tuple[float, float, float]) -> str:
    return f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"


def constant(run: Run, task: str) -> str:
    """The best constant answer's score on the run's examples and the answer ("-" where none applies)."""
    rows = run.rows(task)
    best = best_constant(rows, primaries(task, rows))
    return "-" if best is None else f"{_pct(best[1])} ({best[0]})"


def _score(run: Run, task: str) -> str:
    m = run.metrics
    return _ci(m[f"{task}/score"], m.get(f"{task}/ci_low"), m.get(f"{task}/ci_high"))


def source_tables(runs: list[Run]) -> list[str]:
    """Rungs (a) and (b): teacher and student vs the zero-shot backbone on each source's validation split."""
    by = {r.system: r for r in runs if r.role == "source"}
    if not {"backbone zero-shot", "teacher"} <= by.keys():
        return ["(sources not scored yet)", ""]
    zs, teacher, student = by["backbone zero-shot"], by["teacher"], by.get("student")
    lines = [
        "| source | scoring | n | best constant | backbone zero-shot | teacher | teacher − zero-shot | student "
        "| student − zero-shot | kept |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gains_t, gains_s, beat = [], [], []
    for task in teacher.tasks():
        dt = paired(teacher, zs, task)
        gains_t.append(dt[0])
        if dt[1] > 0:  # the teacher's paired interval lies above 0: a gain the student can keep
            beat.append(task)
        row = [task, str(teacher.metrics.get(f"{task}/scoring")), str(teacher.metrics.get(f"{task}/n_test"))]
        row += [constant(zs, task), _score(zs, task), _score(teacher, task), _diff(dt)]
        if student is not None:
            ds = paired(student, zs, task)
            gains_s.append(ds[0])
            kept = f"{100 * ds[0] / dt[0]:.0f}%" if task in beat else "-"  # a share of no gain means nothing
            row += [_score(student, task), _diff(ds), kept]
        else:
            row += ["-", "-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    tasks = teacher.tasks()
    lines.append(f"Teachers beating zero-shot (paired 95% interval above 0): {len(beat)}/{len(tasks)}"
                 f"{' (' + ', '.join(beat) + ')' if beat else ''}; mean teacher gain over all sources "
                 f"{100 * statistics.fmean(gains_t):+.1f} points.")  # fmt: skip
    lines += _empty_answers([r for r in (teacher, student) if r is not None], tasks)
    if gains_s and beat:
        on = [i for i, t in enumerate(tasks) if t in beat]
        mean_t, mean_s = (statistics.fmean(g[i] for i in on) for g in (gains_t, gains_s))
        lines.append(f"Student, on those {len(on)} sources: mean gain {100 * mean_s:+.1f} of the teachers' "
                     f"{100 * mean_t:+.1f} points = {100 * mean_s / mean_t:.0f}% kept (target: >= 80%); over all "
                     f"sources {100 * statistics.fmean(gains_s):+.1f}.")  # fmt: skip
    return lines + [""]


def _empty_answers(runs: list[Run], tasks: list[str]) -> list[str]:
    """How often each run answered a generated entity or relation source with nothing (an empty list): the student's
    usual failure when its distillation is too short (it learns "none" before the spans)."""
    spans = [  # generated answers only: a ranked yes/no relation source's "no" is a choice, not an empty answer
        t
        for t in tasks
        if (rows := runs[0].rows(t)) and rows[0]["kind"] in ("ner", "re") and rows[0].get("scoring") == "generated"
    ]
    if not spans:
        return []
    counts = []
    for task in spans:
        empty = [sum(not r["prediction"] for r in run.rows(task)) for run in runs]
        counts.append(f"{task} {' → '.join(map(str, empty))}/{len(runs[0].rows(task))}")
    return [f"Empty answers on the entity/relation sources ({' → '.join(r.system for r in runs)}): "
            f"{', '.join(counts)}."]  # fmt: skip


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def target_tables(runs: list[Run]) -> list[str]:
    """Rungs (c)-(e) per target: systems by k (mean ± sd over seeds) and paired differences."""
    lines: list[str] = []
    targets = sorted({t for r in runs if r.role == "target" for t in r.tasks()})
    for task in targets:
        mine = [r for r in runs if r.role == "target" and task in r.tasks()]
        get = {(r.system, r.k, r.seed): r for r in mine}
        lines += [f"### {task}", ""]
        zs, mzs = get.get(("backbone zero-shot", 0, 0)), get.get(("metaprompt zero-shot", 0, 0))
        if zs and mzs:
            lines.append(f"(c) zero-shot: backbone {_score(zs, task)}, metaprompt {_score(mzs, task)}; "
                         f"metaprompt − backbone {_diff(paired(mzs, zs, task))}; best constant answer "
                         f"{constant(zs, task)}.")  # fmt: skip
            lines.append("")
        lines += ["| system | k | seeds | score (mean ± sd) | per seed [95% CI] | − prompt tuning | − LoRA |",
                  "|---|---:|---:|---:|---|---|---|"]  # fmt: skip
        systems = sorted({(r.system, r.k) for r in mine if r.k != 0}, key=lambda s: (k_order(s[1]), s[0]))
        for system, k in systems:
            seeds = sorted(r.seed for r in mine if (r.system, r.k) == (system, k))
            scores = [get[(system, k, s)].metrics[f"{task}/score"] for s in seeds]
            per_seed = "; ".join(_score(get[(system, k, s)], task) for s in seeds)
            diffs = []
            for other in ("prompt tuning", "LoRA"):
                pairs = [(get[(system, k, s)], get.get((other, k, s))) for s in seeds]
                pairs = [(a, b) for a, b in pairs if b is not None]
                if system == other or not pairs or system in ("prompt tuning", "LoRA"):
                    diffs.append("")
                else:
                    diffs.append("; ".join(_diff(paired(a, b, task)) for a, b in pairs))
            lines.append(
                f"| {system} | {k} | {len(seeds)} | {_mean_sd(scores)} | {per_seed} | {diffs[0]} | {diffs[1]} |"
            )
        lines.append("")
    return lines


def ablation_tables(runs: list[Run]) -> list[str]:
    """Rung (e): each ablated student's adapted runs (and prompt tuning: the target prompt from a random
    init instead of P*) against the full metaprompt, seed by seed, at the k the ablations ran with."""
    full = "metaprompt adapted"
    extra = set(FOLDER_SYSTEMS.values())
    ablated = sorted(
        {r.system for r in runs if r.role == "target" and r.system.startswith(full + " ") and r.system not in extra}
    )
    if not ablated:
        return ["(no ablation runs: the config sets no `ablations`, or they have not run yet)", ""]
    ks = sorted({r.k for r in runs if r.system in ablated}, key=k_order)
    lines = [
        "| target | k | variant | seeds | score (mean ± sd) | full metaprompt (mean ± sd) | variant − full, per seed [paired 95% CI] |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    targets = sorted({t for r in runs if r.role == "target" for t in r.tasks()})
    for task in targets:
        get = {(r.system, r.k, r.seed): r for r in runs if r.role == "target" and task in r.tasks()}
        for k in ks:
            for variant in [*ablated, "prompt tuning"]:
                seeds = sorted(s for (system, kk, s) in get if system == variant and kk == k)
                pairs = [(get[(variant, k, s)], get[(full, k, s)]) for s in seeds if (full, k, s) in get]
                if not pairs:
                    continue
                score = _mean_sd([a.metrics[f"{task}/score"] for a, _ in pairs])
                base = _mean_sd([b.metrics[f"{task}/score"] for _, b in pairs])
                diffs = "; ".join(_diff(paired(a, b, task)) for a, b in pairs)
                name = "random init (= prompt tuning)" if variant == "prompt tuning" else variant[len(full) + 1 :]
                lines.append(f"| {task} | {k} | {name} | {len(pairs)} | {score} | {base} | {diffs} |")
    return lines + [""]


def machine() -> str:
    """This machine in words: CPU model and cores, memory, GPU if any (where the report is written)."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):  # not every platform has these sysconf names
        memory = ""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} CPU cores ({model}){memory}{gpu}"


def compute_lines(out: Path, current: dict[Path, Path] | None = None) -> list[str]:
    """What the tables cost: the summed wall time of the runs recorded under ``out/done`` (those in
    ``current`` when given, and the learning-rate sweep's)."""
    paths = sorted((out / "done").glob("*.json"))
    records = None if current is None else set(current.values())
    keep = [p for p in paths if records is None or p.stem.startswith("sweep__") or p.resolve() in records]
    records = {p.stem: json.loads(p.read_text())["result"] for p in keep}

    def hours(names: list[str], key: str = "seconds") -> float:
        return sum(records[n].get(key, 0.0) for n in names) / 3600

    sweep = [n for n in records if n.startswith("sweep__")]
    ladder = [n for n in records if n not in sweep]
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"Written {today} on {machine()}. Compute behind these tables: {len(ladder)} runs, "
        f"{hours(ladder):.1f} h wall time ({hours(ladder, 'train_seconds'):.1f} h training, "
        f"{hours(ladder, 'eval_seconds'):.1f} h scoring, where recorded), run in resumable chunks; the "
        f"learning-rate sweep: {len(sweep)} runs, {hours(sweep):.1f} h.",
        "",
    ]


def write_report(
    out: Path,
    complete: bool,
    current: dict[Path, Path] | None = None,
    title: str = "Sanity ladder",
    summary: Callable[[list[Run]], list[str]] | None = None,
) -> None:
    """Write ``results.csv`` and ``results.md`` (headed ``title``, ``summary(runs)``'s lines first) from
    whatever has finished under ``out`` (only the ``current`` folders, when given: see :func:`collect`)."""
    runs, stale = collect(out, current)
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerows(run.csv_rows())
    status = "complete" if complete else "PARTIAL: rerun the same command to continue"
    lines = [
        f"# {title} ({status})",
        "",
        "Scores x100 with 95% percentile bootstrap intervals (1,000 resamples of the test examples); differences",
        "are paired bootstraps on the same examples, seed-matched for trained systems.",
        "",
        *compute_lines(out, current),
        *(
            [
                f"Left out: {stale} finished runs whose record no longer matches the config or an upstream "
                "stage that has rerun since (they rerun when the ladder reaches them).",
                "",
            ]
            if stale
            else []
        ),
        *(summary(runs) if summary else []),
        "## Sources: teachers and student vs the zero-shot backbone (validation split)",
        "",
        *source_tables(runs),
        "## Targets",
        "",
        *target_tables(runs),
        "## Ablations (rung e): each variant vs the full metaprompt, seed-matched",
        "",
        *ablation_tables(runs),
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
