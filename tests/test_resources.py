"""Per-run resources: peak memory measured per run (not per process), energy measured or estimated."""

from __future__ import annotations

import pytest

from metaprompt.resources import CPU_WATTS_PER_THREAD, MEMORY_WATTS_PER_GB, RunResources, estimate_energy_wh


def test_peak_memory_is_each_runs_own():
    with RunResources() as big:
        block = bytearray(300 * 2**20)  # touched: 300 MiB resident
        del block
    with RunResources() as small:
        pass
    if big.result["peak_rss_scope"] != "run":
        pytest.skip("this kernel cannot reset the resident high-water mark")
    assert big.result["peak_rss_mib"] > small.result["peak_rss_mib"] + 250
    assert small.result["cpu_threads"] >= 1 and "peak_gpu_mib" not in small.result  # CPU-only machine


def test_energy_is_measured_where_counted_else_estimated_from_wall_time():
    assert estimate_energy_wh({"seconds": 10.0, "energy_j": 7200.0}) == (2.0, True)
    wh, measured = estimate_energy_wh({"seconds": 3600.0, "cpu_threads": 2, "peak_rss_mib": 1e9 / 2**20})
    assert not measured and wh == pytest.approx(2 * CPU_WATTS_PER_THREAD + MEMORY_WATTS_PER_GB)
    assert estimate_energy_wh({"seconds": 5.0, "peak_gpu_mib": 100.0}) is None  # a GPU without a counter
    assert estimate_energy_wh({}) is None
