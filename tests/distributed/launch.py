"""Launch ``worker.py`` as 2 local ranks (gloo), each in its own process group, under a hard deadline.

A rank that dies makes the other one wait for its collectives until the process-group timeout, and
a hung collective ignores SIGTERM (research/ecosystem.md §B.4): so the launcher polls both, and on
the first failure or at the deadline SIGKILLs both process groups.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).resolve().parent / "worker.py"
REPO = Path(__file__).resolve().parents[2]
WORLD_SIZE = 2
# Left in os.environ by earlier in-process tests (LightningCLI's seed_everything); the ranks would inherit
# them (Lightning re-seeds every rank at each Trainer's set-up then), so a launch would not see the same
# environment alone as in the full suite.
NOT_INHERITED = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        p.wait()


def _describe(code: int | None) -> str:
    if code is None:
        return "still running, SIGKILLed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def launch(args: list[str], timeout: float, log_dir: Path, script: Path = WORKER) -> tuple[list[int | None], str, str]:
    """Run ``script args`` (default ``worker.py``) on ranks 0 and 1.

    Returns:
        Their exit codes (negative: killed by that signal; None: still running when the launcher stopped
        waiting, then SIGKILLed), one line saying why it stopped (the deadline, or which rank failed
        first, after how long) and the log of the first rank that failed (rank 0's if none did).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    port, procs, logs = free_port(), [], []
    inherited = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    for rank in range(WORLD_SIZE):
        env = {
            **inherited,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(WORLD_SIZE),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "NODE_RANK": "0",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            "PYTHONWARNINGS": "ignore",
        }
        log = open(log_dir / f"rank{rank}.log", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), *args],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: killpg reaches DeepSpeed/gloo children too
            )
        )
    start = time.monotonic()
    codes: list[int | None] = [None] * WORLD_SIZE
    try:
        while time.monotonic() < start + timeout:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.5)
    finally:
        _kill(procs)  # the survivors of a failed rank would wait for it until the process-group timeout
        for log in logs:
            log.close()
    elapsed = time.monotonic() - start
    failed = next((rank for rank, c in enumerate(codes) if c not in (None, 0)), None)
    if failed is not None:
        why = f"rank {failed} failed first, after {elapsed:.0f} s"
    elif None in codes:
        why = f"the {timeout:.0f} s deadline passed"
    else:
        why = f"both ranks exited, after {elapsed:.0f} s"
    status = f"{why}: " + ", ".join(f"rank {r} {_describe(c)}" for r, c in enumerate(codes))
    return codes, status, (log_dir / f"rank{failed or 0}.log").read_text(errors="replace")
