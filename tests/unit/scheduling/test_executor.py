"""The inference executor: sized by a setting, else by the cores the process may use (affinity
and the cgroup's CPU quota)."""

from __future__ import annotations

import threading
from pathlib import Path

from modelserve.scheduling.executor import cgroup_cpu_limit, inference_executor, usable_cores


def test_cgroup_quota_caps_the_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    assert usable_cores(tmp_path) == min(2, len(__import__("os").sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) == 0.5
    assert usable_cores(v1) == 1
    assert cgroup_cpu_limit(tmp_path / "none") is None


def test_executor_size_is_a_setting() -> None:
    pool = inference_executor(3)
    together = threading.Barrier(3, timeout=10)  # three at once, else BrokenBarrierError

    def task() -> int:
        together.wait()
        return threading.get_ident()

    try:
        threads = {future.result(timeout=30) for future in [pool.submit(task) for _ in range(6)]}
    finally:
        pool.shutdown()
    assert len(threads) == 3, "three tasks ran at once, and never on a fourth thread"
