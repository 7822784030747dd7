"""p9: start-up time of ``metaprompt fit`` (to the first training step) and ``metaprompt test`` (to the
first evaluated batch), each run twice in a fresh interpreter: with an empty token cache, then again
with the cache the first run wrote (``--data.cache_dir``). The converted backbone (``backbones/embedded.py``)
is warm in both: it is converted once per machine.

    python -m bench.startup [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

STAMP_ENV = "METAPROMPT_BENCH_STAMP"


class Stamp(Callback):
    """Writes ``time.time()`` to ``$METAPROMPT_BENCH_STAMP`` when the first training step starts (and
    stops fitting after it) or when the first test batch is done."""

    def _stamp(self) -> None:
        path = Path(os.environ[STAMP_ENV])
        if not path.exists():
            path.write_text(repr(time.time()))

    def on_train_batch_start(self, trainer, *args) -> None:
        self._stamp()
        trainer.should_stop = True

    def on_test_batch_end(self, trainer, *args) -> None:
        self._stamp()


def start_seconds(command: str, tasks: str, backbone: str, cache: Path, scratch: Path) -> float:
    """Seconds from launching ``metaprompt <command>`` to its stamp (see :class:`Stamp`)."""
    stamp = scratch / f"stamp-{time.monotonic_ns()}"
    args = [
        sys.executable, "-m", "metaprompt", command, "-c", "teacher",
        "--model.init_args.backbone", backbone, "--data.tasks", tasks,
        "--data.cache_dir", str(cache), "--trainer.default_root_dir", str(scratch / "run"),
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=bench.startup.Stamp",
    ]  # fmt: skip
    args += ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"] if command == "fit" else []
    args += ["--trainer.limit_test_batches", "1"] if command == "test" else []
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, STAMP_ENV: str(stamp), "PYTHONWARNINGS": "ignore"}
    start = time.time()
    out = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0 or not stamp.exists():
        raise RuntimeError(f"bench.startup: {' '.join(args)} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
    return float(stamp.read_text()) - start


def run(tasks: str, backbone: str, log=print) -> dict:
    """Cold and warm start of fit and of test (a separate token cache for each command)."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="metaprompt-bench-start-") as scratch:
        for command in ("fit", "test"):
            cache = Path(scratch) / f"tokens-{command}"
            times = {}
            for state in ("first", "second"):
                log(f"p9: metaprompt {command}, {state} start ({tasks})")
                times[state] = start_seconds(command, tasks, backbone, cache, Path(scratch))
            out[command] = {**times, "second_over_first": times["second"] / times["first"]}
    return {"tasks": tasks, "backbone": backbone, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny backbone, two tasks")
    args = parser.parse_args()
    tasks, backbone = ("gad,rqe", "tiny-llama") if args.smoke else ("clinical21", "smollm2-135m")
    print(json.dumps(run(tasks, backbone), indent=2))


if __name__ == "__main__":
    main()
