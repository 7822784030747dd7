"""What one run used: peak memory (host and GPU), measured energy where the hardware counts it, and an
energy estimate where it does not.

Peak host memory is the process's resident high-water mark (``VmHWM``), reset at the start of each run
through ``/proc/self/clear_refs`` so that consecutive runs of one process are measured separately (Linux;
elsewhere the process-lifetime peak, flagged ``peak_rss_scope: "process"``). GPU peak memory is
``torch.cuda.max_memory_allocated`` (reset likewise). GPU energy is NVML's cumulative counter
(``nvmlDeviceGetTotalEnergyConsumption``, Volta and newer) when ``pynvml`` is installed.

CPUs here expose no energy counter (no RAPL in containers), so :func:`estimate_energy_wh` estimates it
from wall time with the Cloud Carbon Footprint coefficients (3.5 W per busy vCPU at full load, 0.392 W per
GB of memory in use): an estimate, labelled as one wherever it is shown.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from pathlib import Path
from types import TracebackType

import torch

CPU_WATTS_PER_THREAD = 3.5
"""Cloud Carbon Footprint's full-load power per vCPU (W), used for the CPU energy estimate."""
MEMORY_WATTS_PER_GB = 0.392
"""Cloud Carbon Footprint's memory power (W per GB in use)."""

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _hwm_kib() -> int | None:
    try:
        found = re.search(r"VmHWM:\s+(\d+)", _STATUS.read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _reset_hwm() -> bool:
    """Reset the resident high-water mark to the current resident size (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class _Nvml:
    """Cumulative energy (mJ) of the current CUDA device through NVML, or None without it."""

    def __init__(self):
        self.handle = None
        if not torch.cuda.is_available():
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = torch.cuda.current_device()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible and visible.split(",")[index].strip().isdigit():  # NVML counts physical devices
                index = int(visible.split(",")[index])
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.read = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.read()
        except Exception:  # no pynvml, no driver, a GPU without the counter: energy is then estimated
            self.handle = None

    def millijoules(self) -> int | None:
        return None if self.handle is None else int(self.read())


class RunResources:
    """Context manager measuring one run; :attr:`result` holds the fields a run's record stores.

    Fields: ``peak_rss_mib`` (host resident memory), ``peak_rss_scope`` (``"run"`` or ``"process"``),
    ``peak_gpu_mib`` (CUDA only), ``energy_j`` (GPU, NVML only), ``cpu_threads`` (torch's intra-op threads,
    what the CPU estimate counts as busy).
    """

    def __init__(self):
        self.result: dict[str, float | int | str] = {}

    def __enter__(self) -> RunResources:
        self.scope = "run" if _reset_hwm() else "process"
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.nvml = _Nvml()
        self.energy0 = self.nvml.millijoules()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        kib = _hwm_kib()
        if kib is None:  # ru_maxrss: KiB on Linux, bytes on macOS
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            kib = peak // 1024 if sys.platform == "darwin" else peak
            self.scope = "process"
        self.result = {"peak_rss_mib": round(kib / 1024, 1), "peak_rss_scope": self.scope}
        self.result["cpu_threads"] = torch.get_num_threads()
        if self.cuda:
            self.result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        end = self.nvml.millijoules()
        if self.energy0 is not None and end is not None:
            self.result["energy_j"] = round((end - self.energy0) / 1000, 1)


def estimate_energy_wh(record: dict) -> tuple[float, bool] | None:
    """A run's energy (Wh) from its record: ``(measured, True)`` from NVML's ``energy_j``, else a CPU-only
    ``(estimate, False)`` from its wall time (see module docstring); None for a GPU run without a counter
    or a record without ``seconds``.

    Args:
        record: A run's completion-record result (``seconds``, and :class:`RunResources`' fields).
    """
    if record.get("energy_j") is not None:
        return record["energy_j"] / 3600, True
    if "seconds" not in record or record.get("peak_gpu_mib") is not None:
        return None
    threads = record.get("cpu_threads") or os.cpu_count() or 1
    memory_gb = (record.get("peak_rss_mib") or 0) * 2**20 / 1e9
    watts = CPU_WATTS_PER_THREAD * threads + MEMORY_WATTS_PER_GB * memory_gb
    return record["seconds"] * watts / 3600, False
