"""The thread pool that runs ``predict`` off the event loop, sized by the cores this process may
really use: its CPU affinity (``taskset``, cpusets) and its cgroup CPU quota (a container
limited to ``cpus: 2`` on a 64-core host sees 64 in ``os.cpu_count()``)."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["MIN_THREADS", "cgroup_cpu_limit", "inference_executor", "usable_cores"]

MIN_THREADS = 2
"""At least two threads, so a slow model cannot hold the only one while another waits."""


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (cgroup v2 ``cpu.max``, else v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us``); None when there is none or it cannot be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may run on: affinity, capped by the cgroup quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return max(1, cores)


def inference_executor(threads: int | None = None) -> ThreadPoolExecutor:
    """The executor for model work: ``threads`` when given, else the usable cores (at least
    MIN_THREADS)."""
    count = threads if threads is not None else max(MIN_THREADS, usable_cores())
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="infer")
