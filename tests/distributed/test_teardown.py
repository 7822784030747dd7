"""Ranks release the process group before they exit (issue 10: under load, a rank of a successful DDP run
aborted at exit with "terminate called without an active exception"; see
``metaprompt.scale.release_process_group``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from exit_ranks import GLOO_THREADS
from launch import launch

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread names from /proc"),
]

SCRIPT = Path(__file__).resolve().parent / "exit_ranks.py"


def test_release_process_group_joins_the_gloo_threads_before_exit(tmp_path):
    codes, status, log = launch([str(tmp_path)], 120, tmp_path / "logs", script=SCRIPT)
    assert codes == [0, 0], f"{status}; log of the first failed rank:\n{log[-3000:]}"
    for rank in range(2):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["gathered"] == [{"rank": 0}, {"rank": 1}]
        assert "pt_gloo_runloop" in report["before"]  # the threads the check is about were there
        assert not report["initialized"]
        assert not set(GLOO_THREADS) & set(report["after"]), report["after"]
