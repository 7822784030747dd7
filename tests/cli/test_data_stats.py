import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_data_stats_lists_all_31_with_full_roundtrip(data_root):
    out = subprocess.run(
        [sys.executable, "-m", "metaprompt", "data", "stats", "--root", str(data_root)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    m = re.fullmatch(r"datasets: 31  examples: (\d+)  roundtrip: (\d+)/(\d+)", lines[-1])
    assert m, lines[-1]
    assert m.group(1) == m.group(2) == m.group(3)
    assert "MISMATCH" not in out.stdout
    for dataset_id in ("chia", "mediqa_mas", "bc5cdr_chem", "evidence_inference"):
        assert dataset_id in out.stdout


def test_data_stats_bad_root_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "metaprompt", "data", "stats", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "no MANIFEST.yaml" in out.stderr
