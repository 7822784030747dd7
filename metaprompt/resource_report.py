"""The resource table of a reproduction (results.md): what each stage trained, stored and cost.

Per stage (the teachers, the distillation, and each target system over all its targets, k and seeds):
runs, trainable parameters and their share of the backbone, adapter bytes per task, summed training and
scoring hours, the peak memory of its largest run, and energy (NVML-measured on GPUs that count it,
else estimated from wall time: :func:`metaprompt.resources.estimate_energy_wh`). Then the question the
seed paper asks: the one-time cost of building the metaprompt (teachers + distillation) against what the
alternatives spend per target.
"""

from __future__ import annotations

import statistics

from metaprompt.ladder_report import SYSTEM_ORDER, Run
from metaprompt.reproduce import PLUS_SHARED
from metaprompt.resources import estimate_energy_wh

SOURCE_STAGES = {"teacher": "teachers", "student": "distillation (metaprompt)"}
ONE_TIME = ("teachers", "distillation (metaprompt)")


def _stages(runs: list[Run]) -> dict[str, list[Run]]:
    stages: dict[str, list[Run]] = {}
    for run in runs:
        if run.role == "source" and run.system in SOURCE_STAGES:
            stages.setdefault(SOURCE_STAGES[run.system], []).append(run)
    order = {s: i for i, s in enumerate((*SYSTEM_ORDER[:3], PLUS_SHARED, *SYSTEM_ORDER[3:]))}
    for run in sorted((r for r in runs if r.role == "target"), key=lambda r: order.get(r.system, len(order))):
        stages.setdefault(f"targets: {run.system}", []).append(run)
    return stages


def _field(run: Run, key: str):
    return run.metrics.get(key, run.record.get(key))


def _params(runs: list[Run]) -> str:
    counts = sorted({_field(r, "trainable_params") for r in runs} - {None})
    if not counts:
        return "-"
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,}"


def _pct(runs: list[Run]) -> str:
    fractions = [f for f in (_field(r, "trainable_fraction") for r in runs) if f is not None]
    return f"{100 * max(fractions):.4f}%" if fractions else "-"


def _bytes_per_task(runs: list[Run]) -> str:
    sizes = [r.record["adapter_bytes"] / max(1, len(r.tasks())) for r in runs if r.record.get("adapter_bytes")]
    if not sizes:
        return "-"
    size = statistics.median(sizes)
    return f"{size / 2**20:.2f} MiB" if size >= 2**20 else f"{size / 1024:.1f} KiB"


def _hours(runs: list[Run], key: str) -> float:
    return sum(r.record.get(key) or 0.0 for r in runs) / 3600


def _peak(runs: list[Run]) -> str:
    host = [r.record["peak_rss_mib"] for r in runs if r.record.get("peak_rss_mib") is not None]
    gpu = [r.record["peak_gpu_mib"] for r in runs if r.record.get("peak_gpu_mib") is not None]
    if not host:
        return "not recorded"
    text = f"{max(host) / 1024:.1f} GiB" + (f" (GPU {max(gpu) / 1024:.1f} GiB)" if gpu else "")
    return text + (f" ({len(host)} of {len(runs)} runs)" if len(host) < len(runs) else "")


def _energy(runs: list[Run]) -> tuple[float, str]:
    found = [estimate_energy_wh(r.record) for r in runs]
    known = [e for e in found if e is not None]
    if not known:
        return 0.0, "-"
    total = sum(wh for wh, _ in known)
    measured = all(m for _, m in known)
    note = "" if measured else " (est.)"
    return total, f"{total:,.1f}{note}" + (f" ({len(known)} of {len(runs)} runs)" if len(known) < len(runs) else "")


def resource_lines(runs: list[Run]) -> list[str]:
    """The resource table of ``runs`` and the one-time-cost comparison (see module docstring); [] without
    any recorded run."""
    stages = {name: group for name, group in _stages(runs).items() if any(r.record for r in group)}
    if not stages:
        return []
    lines = [
        "## Resources per stage",
        "",
        "| stage | runs | trainable params | % of backbone | adapter per task | training, h | scoring, h "
        "| peak memory | energy, Wh |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cost = {}
    for name, group in stages.items():
        wh, energy = _energy(group)
        cost[name] = (_hours(group, "seconds"), wh, len(group))
        lines.append(
            f"| {name} | {len(group)} | {_params(group)} | {_pct(group)} | {_bytes_per_task(group)} "
            f"| {_hours(group, 'train_seconds'):.2f} | {_hours(group, 'eval_seconds'):.2f} | {_peak(group)} | {energy} |"
        )
    lines += [
        "",
        "Energy: NVML's counter where a GPU has one, else an estimate (est.) from wall time at 3.5 W per busy CPU "
        "thread and 0.392 W per GB in use (Cloud Carbon Footprint coefficients; `metaprompt/resources.py`). "
        "Peak memory: the largest run's resident memory (its own high-water mark).",
        "",
    ]
    once = [cost[n] for n in ONE_TIME if n in cost]
    if once:
        hours, wh = sum(c[0] for c in once), sum(c[1] for c in once)
        lines.append(f"One-time cost of the metaprompt (teachers + distillation): {hours:.2f} h, {wh:,.1f} Wh.")
        per_target = []
        for system in ("metaprompt adapted", "prompt tuning", "LoRA"):
            if f"targets: {system}" in cost:
                h, _, n = cost[f"targets: {system}"]
                per_target.append(f"{system} {3600 * h / n:.0f} s")
        if per_target:
            lines.append("Then per adapted target run (training + scoring, mean): " + ", ".join(per_target) + ".")
        lines.append("")
    return lines
