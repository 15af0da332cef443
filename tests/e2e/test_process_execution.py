"""execution: process: instances in worker processes, a killed worker fails cleanly and is
replaced, errors keep their meaning across the process boundary."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, Servers
from tests.harness import write_python_model

PID_MODEL = """
import os, time
import numpy as np

class Pid:
    def load(self, version_dir, parameters):
        if parameters.get("fail_load"):
            raise RuntimeError("cannot load in the child")

    def predict(self, inputs):
        x = inputs["x"]
        if x[0, 0] < 0:
            raise ValueError("negative input")
        time.sleep(float(x[0, 0]))
        return {"pid": np.full((x.shape[0], 1), os.getpid(), dtype=np.int64), "x": x * 2}
"""


def _model(repo: Path, name: str, **extra: object) -> None:
    config = {
        "max_batch_size": 8,
        "execution": "process",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [
            {"name": "pid", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "x", "datatype": "FP32", "shape": [-1, 1]},
        ],
        **extra,
    }
    write_python_model(repo, name, PID_MODEL, config, entrypoint="Pid")


@pytest.fixture(scope="module")
def proc_server(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> RunningServer:
    repo = tmp_path_factory.mktemp("proc")
    _model(repo, "pid", instances=2)
    _model(repo, "broken", parameters={"fail_load": 1})
    return serve_module(repo)


def body(value: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [value]}]}


def pid_of(reply: httpx.Response) -> int:
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
    return int(outputs["pid"][0])


async def test_instances_run_in_worker_processes(proc_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://{proc_server.url}", timeout=30) as client:
        replies = await asyncio.gather(
            *[client.post("/v2/models/pid/infer", json=body(0.3)) for _ in range(2)]
        )
        pids = {pid_of(r) for r in replies}
        assert len(pids) == 2, "two instances = two worker processes at work together"
        assert os.getpid() not in pids
        outputs = {o["name"]: o["data"] for o in replies[0].json()["outputs"]}
        assert outputs["x"] == [pytest.approx(0.6)]
        bad = await client.post("/v2/models/pid/infer", json=body(-1))
        assert bad.status_code == 400 and "negative input" in bad.json()["error"]


async def test_killed_worker_fails_its_request_cleanly_and_is_replaced(
    proc_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{proc_server.url}", timeout=60) as client:
        slow = asyncio.ensure_future(client.post("/v2/models/pid/infer", json=body(2.0)))
        await asyncio.sleep(0.5)
        quick = await client.post("/v2/models/pid/infer", json=body(0))
        busy_pid = None
        for worker_pid in _worker_pids(proc_server):
            if worker_pid != pid_of(quick):
                busy_pid = worker_pid
        assert busy_pid is not None
        os.kill(busy_pid, signal.SIGKILL)
        failed = await slow
        assert failed.status_code == 500
        assert "died" in failed.json()["error"]
        deadline = time.monotonic() + 60
        seen: set[int] = set()
        while len(seen - {busy_pid}) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            replies = await asyncio.gather(
                *[client.post("/v2/models/pid/infer", json=body(0.2)) for _ in range(2)]
            )
            seen |= {pid_of(r) for r in replies}
        assert busy_pid not in {pid_of(r) for r in replies}


def _worker_pids(server: RunningServer) -> list[int]:
    model = server.server.router.resolve("pid") if server.server else None
    assert model is not None
    return list(model.runtime.pids)  # type: ignore[attr-defined]


def test_load_failure_in_the_worker_is_reported(proc_server: RunningServer) -> None:
    rows = httpx.post(f"http://{proc_server.url}/v2/repository/index").json()
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["state"] == "UNAVAILABLE"
    assert "cannot load in the child" in broken["reason"]
