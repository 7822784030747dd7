"""Bench settings, synthetic batches, timing and memory helpers.

Everything is seeded: the same batch (random token ids of fixed lengths) goes to our modules and to
PEFT, so a ratio compares code paths, not data.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Settings:
    """Sizes of one bench run (the full one on SmolLM2, or the smoke one on the tiny backbone)."""

    backbone: str = "smollm2-135m"
    batch_size: int = 8
    tokens: int = 128  # input + target per row
    long_tokens: int = 512
    target_tokens: int = 32
    prompt_length: int = 100
    warmup: int = 1
    repeats: int = 5
    long_repeats: int = 3
    gen_tasks: int = 10
    gen_rows_per_task: int = 2
    gen_input_tokens: int = 96
    gen_new_tokens: int = 32
    rss_steps: int = 3
    eval_batch: int = 8  # bench.eval_speed: eval batches of the real test sample
    eval_examples: int = 16  # per task (a ranked and a generated task)
    eval_repeats: int = 3
    decode_tokens: int = 32  # tokens every generated row decodes (no end token can match)
    natural_budget: int = 128  # budget with the real end token (finished rows dropped vs kept)
    real_batches: int = 3  # bench.real_batches: training batches drawn by the teacher stage's sampler
    real_max_length: int = 512
    real_prompt_lengths: tuple[int, ...] = (10, 100)
    real_warmup: int = 0  # a real step is 5-25 s here; the first one of each path is not kept anyway
    real_repeats: int = 2
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


FULL = Settings()
SMOKE = Settings(
    backbone="tiny-llama",
    batch_size=4,
    tokens=32,
    long_tokens=64,
    target_tokens=8,
    prompt_length=8,
    repeats=2,
    long_repeats=2,
    gen_rows_per_task=1,
    gen_input_tokens=12,
    gen_new_tokens=4,
    rss_steps=1,
    eval_batch=4,
    eval_examples=4,
    eval_repeats=1,
    decode_tokens=4,
    natural_budget=8,
    real_batches=2,
    real_max_length=96,
    real_prompt_lengths=(4, 8),
    real_repeats=1,
)


def rows(settings: Settings, tokens: int, n: int, task_ids: list[int], vocab: int) -> list[dict]:
    """``n`` encoded rows (``prompt_ids``, ``target_ids``, ``task_id``) of exactly ``tokens`` tokens."""
    g = torch.Generator().manual_seed(settings.seed + tokens)
    ids = torch.randint(100, vocab - 1, (n, tokens), generator=g).tolist()
    cut = tokens - settings.target_tokens
    return [
        {"uid": f"r{i}", "task_id": task_ids[i % len(task_ids)], "prompt_ids": r[:cut], "target_ids": r[cut:]}
        for i, r in enumerate(ids)
    ]


def median_time(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` calls (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median wall time (s) of each of ``fns``, measured round-robin so that load drifts hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process (MB, from /proc; ru_maxrss elsewhere)."""
    try:
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
        return {
            "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        }
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"rss_mb": peak, "peak_rss_mb": peak}


def run_subprocess(args: list[str], timeout: int = 1800) -> str:
    """Run ``python -m bench.<args>`` in a fresh interpreter (fair peak memory) and return its last line."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench subprocess {args} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def machine() -> dict:
    """CPU model, cores, torch threads, versions and load (timings on a shared machine are noisy)."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        info["lscpu"] = [line for line in lscpu[:12]]
        flags = next((line for line in lscpu if line.startswith("Flags")), "")
        info["bf16_instructions"] = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    except (OSError, subprocess.SubprocessError):
        pass
    import peft
    import transformers

    info["transformers"] = transformers.__version__
    info["peft"] = peft.__version__
    return info
