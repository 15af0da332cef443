"""SIGTERM with 200 requests in flight: each completes, new work gets a clean 503, exit code 0.

The model holds every request until the test opens its gate, so the 200 are in the server (one
executing, 199 queued) when SIGTERM comes, however slowly a loaded machine sends them."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

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
