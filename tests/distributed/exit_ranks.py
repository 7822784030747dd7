"""One rank that ends like ``worker.py`` (``all_gather_object``, then a barrier) and then releases the
process group (launched by test_teardown.py). Writes which threads were alive before and after.

Without the release, gloo's worker threads outlive the Python code: one that frees the last
``all_gather_object``'s tensors (kept alive by the barrier) after the interpreter began to shut down
aborts the rank ("terminate called without an active exception"), a race a busy machine loses.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from metaprompt.scale import release_process_group

GLOO_THREADS = ("pt_gloo_runloop", "gloo_tcp_loop", "pt_tcpstore_uv")  # names c10d/gloo give their threads


def thread_names() -> list[str]:
    return sorted(p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm"))


def main(out: str) -> int:
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    reports: list = [None, None]
    dist.all_gather_object(reports, {"rank": rank})
    dist.barrier()
    before = thread_names()
    release_process_group()
    after = thread_names()
    report = {"rank": rank, "gathered": reports, "before": before, "after": after, "initialized": dist.is_initialized()}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
