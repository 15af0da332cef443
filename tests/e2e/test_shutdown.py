"""SIGTERM with 200 requests in flight: each completes, new work gets a clean 503, exit code 0;
and a predict that never returns cannot hold the event loop or the process.

The model holds every request until the test opens its gate, so the 200 are in the server (one
executing, 199 queued) when SIGTERM comes, however slowly a loaded machine sends them."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modelserve.config.settings import Settings
from modelserve.server.compose import Server
from tests.harness import CliProcess, write_python_model

IN_FLIGHT = 200
HELD = ("modelserve_model_queue_depth", "modelserve_model_batches_in_flight")
GATED = """
import time
from pathlib import Path

class Gated:
    def load(self, version_dir, parameters):
        self.gate = Path(parameters["gate"])

    def predict(self, inputs):
        while not self.gate.exists():
            time.sleep(0.005)
        return {"y": inputs["x"]}
"""
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}


def gated_model(repo: Path, name: str, gate: Path) -> None:
    config = {
        "max_batch_size": 8,
        "execution": "thread",
        "parameters": {"gate": str(gate)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    }
    write_python_model(repo, name, GATED, config, entrypoint="Gated")


async def held(probe: httpx.AsyncClient, model: str) -> int:
    """Requests the server holds for ``model`` (queued or executing: one per batch here), from
    its own /metrics."""
    text = (await probe.get("/metrics")).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name in HELD and sample.labels.get("model") == model
        )
    )


async def test_sigterm_with_200_requests_in_flight(tmp_path: Path) -> None:
    repo, gate, open_gate = tmp_path / "models", tmp_path / "gate", tmp_path / "open"
    open_gate.touch()
    gated_model(repo, "work", gate)
    gated_model(repo, "other", open_gate)
    args = ["serve", str(repo), "--http-port", "0", "--grpc-port", "0"]
    args += ["--drain-delay-secs", "0.3", "--shutdown-timeout-secs", "30"]
    with CliProcess(args) as cli:
        base_url = f"http://127.0.0.1:{cli.wait_ready()}"
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client,
            httpx.AsyncClient(base_url=base_url, timeout=60) as probe,
        ):
            assert (await probe.get("/v2/health/ready")).status_code == 200
            requests = [
                asyncio.ensure_future(client.post("/v2/models/work/infer", json=BODY))
                for _ in range(IN_FLIGHT)
            ]
            deadline = time.monotonic() + 60
            while (count := await held(probe, "work")) < IN_FLIGHT:
                assert time.monotonic() < deadline, f"the server holds only {count} requests"
                await asyncio.sleep(0.05)
            cli.signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            ready = await probe.get("/v2/health/ready")
            assert ready.status_code == 503, "not ready as soon as SIGTERM arrives"
            # Served during the drain delay, then refused cleanly: new work gets a 503.
            deadline = time.monotonic() + 30
            while (
                other := await probe.post("/v2/models/other/infer", json=BODY)
            ).status_code == 200:
                assert time.monotonic() < deadline, (
                    "new work is still accepted after the drain delay"
                )
                await asyncio.sleep(0.05)
            assert other.status_code == 503 and "error" in other.json(), other.text
            gate.touch()
            results = await asyncio.gather(*requests, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], f"connection errors: {failures[:3]}"
        statuses = [r.status_code for r in results if isinstance(r, httpx.Response)]
        assert statuses == [200] * IN_FLIGHT, "every request in flight completes"
        assert cli.wait(60) == 0


STUCK = """
import time
from pathlib import Path

class Model:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1]}]

    def predict(self, inputs):
        started = Path(__file__).parent / "started"
        started.write_text("yes")
        release = Path(__file__).parent / "release"
        deadline = time.monotonic() + 30
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"y": inputs["x"]}
"""
_STUCK_BODY = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}'
STUCK_REQUEST = (
    b"POST /v2/models/stuck/infer HTTP/1.1\r\nHost: x\r\n"
    + f"Content-Length: {len(_STUCK_BODY)}\r\n\r\n".encode()
    + _STUCK_BODY
)


def _stuck_model(repo: Path) -> Path:
    return write_python_model(repo, "stuck", STUCK)


async def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)


async def test_stop_never_blocks_the_loop_on_a_stuck_predict(tmp_path: Path) -> None:
    folder = _stuck_model(tmp_path)
    settings = Settings(model_repository=tmp_path, http_port=0, grpc_port=0, shutdown_timeout_s=0.5)
    server = Server(settings)
    await server.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        writer.write(STUCK_REQUEST)
        await _wait_for(folder / "started")
        gaps: list[float] = []
        stopping = True

        async def tick() -> None:
            last = time.monotonic()
            while stopping:
                await asyncio.sleep(0.02)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        finished = await server.stop()
        took = time.monotonic() - started
        stopping = False
        await ticker
        writer.close()
    finally:
        (folder / "release").write_text("go")
    assert finished is False, "stop reports the model threads it left running"
    assert took < 15, f"stop took {took:.1f} s with a stuck predict"
    assert max(gaps) < 0.5, f"the event loop was blocked for {max(gaps):.1f} s"


def test_sigterm_exits_in_bounded_time_with_a_stuck_predict(tmp_path: Path) -> None:
    folder = _stuck_model(tmp_path)
    with CliProcess(
        ["serve", str(tmp_path), "--http-port", "0", "--grpc-port", "0",
         "--shutdown-timeout-secs", "0.5"]
    ) as proc:  # fmt: skip
        try:
            port = proc.wait_ready()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(STUCK_REQUEST)
                deadline = time.monotonic() + 20
                while not (folder / "started").exists():
                    assert time.monotonic() < deadline, proc.log
                    time.sleep(0.02)
                started = time.monotonic()
                proc.signal(signal.SIGTERM)
                code = proc.wait(timeout=20)
            assert time.monotonic() - started < 15
            assert code == 1, proc.log
            assert "stopping without them" in proc.log
        finally:
            (folder / "release").write_text("go")
