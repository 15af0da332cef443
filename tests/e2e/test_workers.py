"""--workers N: processes share the ports, a killed worker is replaced, SIGTERM drains all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT

BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_workers_share_ports_restart_and_drain(model_repo: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelserve", "serve", str(model_repo), "--http-port", "0",
         "--grpc-port", "0", "--workers", "2"],
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while sum("server ready" in line for line in lines) < 2:
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        port = int(re.search(r"HTTP port (\d+)", "".join(lines)).group(1))  # type: ignore[union-attr]
        workers = children(proc.pid)
        assert len(workers) == 2
        for _ in range(10):  # a new connection each time: the kernel spreads them
            reply = httpx.post(f"http://127.0.0.1:{port}/v2/models/iris_onnx/infer", json=BODY)
            assert reply.status_code == 200
        os.kill(workers[0], signal.SIGKILL)
        while sum("server ready" in line for line in lines) < 3:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        assert len(children(proc.pid)) == 2
        for _ in range(10):
            reply = httpx.post(f"http://127.0.0.1:{port}/v2/models/iris_onnx/infer", json=BODY)
            assert reply.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)


def test_workers_refuse_explicit_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", "serve", str(tmp_path), "--workers", "2",
         "--model-control-mode", "explicit"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "explicit" in result.stderr
