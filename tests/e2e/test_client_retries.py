"""Retries against a real server: a full queue answers 503 with Retry-After (gRPC:
RESOURCE_EXHAUSTED with retry-after metadata); the client waits at least that long and tries
again, the same request id each time; a 400 is never tried twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelserve.client import Client, InvalidInputError, UnavailableError
from tests.conftest import RunningServer, Servers
from tests.harness import wait_for_queue, wait_for_running, write_python_model

PROTOCOLS = ("http", "grpc")

SLOW = """
import time

class Slow:
    def predict(self, inputs):
        x = inputs["x"]
        time.sleep(float(x[0, 0]))
        return {"y": x}
"""


@pytest.fixture(scope="module")
def slow_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("slow")
    io = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    }
    write_python_model(
        repo, "slow", SLOW, {"max_batch_size": 4, "max_queue_size": 1, **io}, entrypoint="Slow"
    )
    return repo


@pytest.fixture(scope="module")
def slow_server(slow_repo: Path, serve_module: Servers) -> RunningServer:
    return serve_module(slow_repo)


def url_of(server: RunningServer, protocol: str) -> str:
    return server.http if protocol == "http" else f"grpc://{server.grpc_url}"


def _fails(server: RunningServer) -> int:
    stats = httpx.get(f"{server.http}/v2/models/slow/stats").json()
    return int(stats["model_stats"][0]["inference_stats"]["fail"]["count"])


def _occupy(server: RunningServer, seconds: float) -> list[threading.Thread]:
    """One request running for ``seconds`` and one queued behind it: the queue is full."""
    threads = [
        threading.Thread(target=_infer, args=(server, seconds)),
        threading.Thread(target=_infer, args=(server, 0.0)),
    ]
    threads[0].start()
    wait_for_running(server.http, "slow")
    threads[1].start()
    wait_for_queue(server.http, "slow", 1)
    return threads


def _infer(server: RunningServer, seconds: float) -> None:
    with Client(server.http, retries=0) as client:
        client.predict("slow", [[seconds]])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_full_queue_is_retried_after_retry_after(slow_server: RunningServer, protocol: str) -> None:
    threads = _occupy(slow_server, 2.5)
    before = _fails(slow_server)
    with Client(url_of(slow_server, protocol), retries=4) as client:
        started = time.monotonic()
        out = client.predict("slow", [[0.0]], id="retried-request")
        elapsed = time.monotonic() - started
    for thread in threads:
        thread.join()
    assert out.id == "retried-request" and out[0]["y"] == 0.0
    refused = _fails(slow_server) - before
    assert refused >= 1, "the first try met the full queue"
    assert elapsed >= refused * 1.0 - 0.05, f"waited {elapsed:.2f} s for {refused} Retry-After: 1"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_full_queue_without_retries_fails_at_once(
    slow_server: RunningServer, protocol: str
) -> None:
    threads = _occupy(slow_server, 2.5)
    try:
        with Client(url_of(slow_server, protocol), retries=0) as client:
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="queue is full") as caught:
                client.predict("slow", [[0.0]])
            assert time.monotonic() - started < 0.9  # no Retry-After wait (1 s)
        assert caught.value.retry_after == 1.0 and caught.value.status == 503
    finally:
        for thread in threads:
            thread.join()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_bad_request_is_sent_once(slow_server: RunningServer, protocol: str) -> None:
    before = _fails(slow_server)
    client = Client(url_of(slow_server, protocol), retries=5)
    with client, pytest.raises(InvalidInputError):
        client.predict("slow", {"x": np.zeros((1, 2), dtype=np.float32)})
    assert _fails(slow_server) - before == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_model_that_is_not_ready_is_retried_until_it_is(
    serve: Servers, slow_repo: Path, protocol: str
) -> None:
    running = serve(slow_repo, model_control_mode="explicit", load_models=())
    url = url_of(running, protocol)
    impatient = Client(url, retries=0)
    with impatient, pytest.raises(UnavailableError, match="no READY version"):
        impatient.predict("slow", [[0.0]])
    load = threading.Timer(0.5, httpx.post, [f"{running.http}/v2/repository/models/slow/load"])
    load.start()
    try:
        with Client(url, retries=10) as client:
            started = time.monotonic()
            assert client.predict("slow", [[0.0]])[0]["y"] == 0.0
            assert time.monotonic() - started > 0.3
    finally:
        load.join()
