"""Identical after a kill: ``metaprompt fit`` killed (SIGKILL) five times — mid-epoch, at an epoch's end and
while a checkpoint is being written — and resumed each time with ``--ckpt_path last`` ends with the adapter
of the uninterrupted run, within 1e-6; so does a run killed right after two epoch-end checkpoints (a resume
from an epoch end left Lightning's epoch count one behind in the next checkpoint).

LoRA on the tiny backbone, whose dropout draws from the global RNG: a resumed run must continue the loader's
position in its epoch, the optimizer, the schedule and the random streams, or the adapters differ.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metaprompt.callbacks import PAUSE_ENV
from metaprompt.configs import CONFIG_DIR

pytestmark = pytest.mark.slow  # seven `metaprompt fit` processes (~10-15 s each on 2 cores, mostly start-up)

# k_shot 16 / batch 4 = 4 batches an epoch: the checkpoints at 2, 6, 10, ... are mid-epoch. The kills come a few
# steps past the targets at most (a step takes ~0.05 s), so the last target leaves the run room to reach it.
STEPS, EVERY, BATCHES = 24, 2, 4


def fit(root: Path, data_root: Path) -> list[str]:
    return [
        sys.executable, "-m", "metaprompt", "fit", "-c", "lora", "-c", str(CONFIG_DIR / "backbones" / "tiny-llama.yaml"),
        "--data.root", str(data_root), "--data.tasks", "rqe", "--data.k_shot", "16", "--data.batch_size", str(BATCHES),
        "--data.max_length", "128", "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", "null",
        "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(root),
        "--trainer.callbacks+=metaprompt.callbacks.ResumeCheckpoint", f"--trainer.callbacks.every_n_train_steps={EVERY}",
        "--ckpt_path", "last",
    ]  # fmt: skip


def checkpoint_step(last: Path) -> int:
    return torch.load(last, weights_only=True)["global_step"] if last.is_file() else 0


def start(command: list[str], log: Path, **env: str) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})


def kill_when(proc: subprocess.Popen, ready, delay: float = 0.0, timeout: float = 180) -> None:
    """SIGKILL ``proc`` ``delay`` s after ``ready()`` holds; fails if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before the kill"
        assert time.monotonic() < deadline, "timed out waiting for the kill point"
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"


def adapter(root: Path) -> dict[str, torch.Tensor]:
    folder = root / "adapter"
    return {
        f"{f}:{k}": v for f in ("adapter", "adapter_model") for k, v in load_file(folder / f"{f}.safetensors").items()
    }


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_root) -> Path:
    root = tmp_path_factory.mktemp("straight")
    subprocess.run(fit(root, data_root), check=True, capture_output=True)
    return root


def assert_same_adapter(straight: Path, root: Path, resumed_from: list[int]) -> None:
    expected, got = adapter(straight), adapter(root)
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-6, rtol=0, msg=f"{name} (resumed from {resumed_from})")
    assert any((t != 0).any() for k, t in expected.items() if "lora_B" in k)  # trained: B starts at zero


def test_five_kills_and_resumes_end_with_the_uninterrupted_adapter(tmp_path, data_root, straight):

    root, log = tmp_path / "killed", tmp_path / "killed.log"
    last, part = root / "checkpoints" / "last.ckpt", root / "checkpoints" / "last.ckpt.part"
    rng = random.Random(14)
    resumed_from = []
    # (first step whose checkpoint may trigger the kill, or None: while a checkpoint is being written)
    for target in (2, None, 6, 12, 18):
        before = checkpoint_step(last)
        if target is None:  # the rename waits; the kill lands between the write and the rename
            part.unlink(missing_ok=True)  # (an earlier kill may have left one)
            proc = start(fit(root, data_root), log, **{PAUSE_ENV: "60"})
            kill_when(proc, part.is_file, delay=0.2)
            part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # and make it torn
        else:
            proc = start(fit(root, data_root), log)
            kill_when(proc, lambda t=target, b=before: checkpoint_step(last) >= max(t, b + 1), rng.uniform(0, 0.1))
        resumed_from.append(checkpoint_step(last))
    start(fit(root, data_root), log).wait()
    assert checkpoint_step(last) == STEPS, log.read_text()[-3000:]

    print(f"resumed from the checkpoints at steps {resumed_from}")
    assert any(step % BATCHES for step in resumed_from), resumed_from  # some resume fell mid-epoch
    assert_same_adapter(straight, root, resumed_from)


def test_two_resumes_from_epoch_ends_end_with_the_uninterrupted_adapter(tmp_path, data_root, straight):
    root, log = tmp_path / "killed", tmp_path / "killed.log"
    last, part = root / "checkpoints" / "last.ckpt", root / "checkpoints" / "last.ckpt.part"
    for step in (8, 12):  # epoch ends (4 batches an epoch); the second written by a run resumed at the first
        proc = start(fit(root, data_root), log, **{PAUSE_ENV: "0.5"})  # each checkpoint waits before its rename
        while True:  # kill while the checkpoint at `step` waits, and put it in place: the kill lands at `step`
            assert proc.poll() is None, log.read_text()[-3000:]
            if part.is_file() and (got := loaded_step(part)) is not None and got >= step:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if part.is_file():
            os.replace(part, last)
        assert checkpoint_step(last) == step
    start(fit(root, data_root), log).wait()
    assert checkpoint_step(last) == STEPS, log.read_text()[-3000:]
    assert_same_adapter(straight, root, [8, 12])


def loaded_step(path: Path) -> int | None:
    """The checkpoint's step, or None while it is still being written."""
    try:
        return torch.load(path, weights_only=True)["global_step"]
    except Exception:  # half-written
        return None
