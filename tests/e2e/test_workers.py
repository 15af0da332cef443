"""--workers N: processes share the ports, a killed worker is replaced, SIGTERM drains all."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.harness import CliProcess, run_cli, write_python_model

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
    args = ["serve", str(model_repo), "--http-port", "0", "--grpc-port", "0", "--workers", "2"]
    with CliProcess(args) as cli:
        cli.wait_for("server ready", timeout=90, count=2)
        port = int(cli.wait_for(r"HTTP port (\d+)").group(1))
        workers = children(cli.proc.pid)
        assert len(workers) == 2
        for _ in range(10):  # a new connection each time: the kernel spreads them
            reply = httpx.post(f"http://127.0.0.1:{port}/v2/models/iris_onnx/infer", json=BODY)
            assert reply.status_code == 200
        os.kill(workers[0], signal.SIGKILL)
        cli.wait_for("server ready", timeout=90, count=3)  # the killed worker was replaced
        assert len(children(cli.proc.pid)) == 2
        for _ in range(10):
            reply = httpx.post(f"http://127.0.0.1:{port}/v2/models/iris_onnx/infer", json=BODY)
            assert reply.status_code == 200
        cli.signal(signal.SIGTERM)
        assert cli.wait(60) == 0


def test_workers_refuse_explicit_mode(tmp_path: Path) -> None:
    result = run_cli(["serve", str(tmp_path), "--workers", "2", "--model-control-mode", "explicit"])
    assert result.returncode == 2
    assert "explicit" in result.stderr


SLOW_LOADING = """
import time

class Model:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1]}]

    def load(self, version_dir, parameters):
        time.sleep(2.0)

    def predict(self, inputs):
        return {"y": inputs["x"]}
"""


def test_a_restarting_worker_takes_connections_only_once_ready(tmp_path: Path) -> None:
    """While a killed worker is replaced and loads its models, every new connection is
    answered by the worker that can serve it: no 503 from one that is not ready yet."""
    write_python_model(tmp_path, "slow", SLOW_LOADING)
    args = ["serve", str(tmp_path), "--http-port", "0", "--grpc-port", "0", "--workers", "2"]
    with CliProcess(args) as cli:
        cli.wait_for("server ready", timeout=90, count=2)
        port = int(cli.wait_for(r"HTTP port (\d+)").group(1))
        url = f"http://127.0.0.1:{port}/v2/health/ready"
        victim = children(cli.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        while victim in children(cli.proc.pid):
            time.sleep(0.01)  # gone (reaped): its connections no longer count
        statuses: list[int] = []
        during = 0  # answers while the new worker was still loading
        deadline = time.monotonic() + 60
        while during == 0 or len(statuses) < during + 20:
            assert time.monotonic() < deadline, cli.log
            # a new connection each time: the kernel spreads them over the listening workers
            statuses.append(httpx.get(url, headers={"connection": "close"}).status_code)
            if not during and sum("server ready" in line for line in cli.lines) >= 3:
                during = len(statuses)
        assert set(statuses) == {200}, f"{statuses.count(503)} of {len(statuses)} got 503"
        cli.signal(signal.SIGTERM)
        assert cli.wait(60) == 0
