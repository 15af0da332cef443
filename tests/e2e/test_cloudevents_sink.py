"""The CloudEvents sink end to end against a real HTTP receiver (a separate process, killed and
brought back), with real clients (httpx, tritonclient over gRPC), the file sink beside it, the
metrics, the dead-letter file and the flush on SIGTERM of the real command line."""

from __future__ import annotations

import signal
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.brokers import CloudEventsReceiver
from tests.harness import CliProcess, Servers
from tests.payload_helpers import BODY, make_repo, payload_metric, read_lines, wait_for

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
ERROR = "org.kubeflow.serving.inference.error"


@pytest.fixture
def receiver(tmp_path: Path) -> Any:
    receiver = CloudEventsReceiver(tmp_path / "receiver")
    receiver.start()
    yield receiver
    receiver.stop()


def _outcomes(base: str, model: str, sink: str) -> dict[str, float]:
    return {
        outcome: payload_metric(
            base, "modelserve_payload_events_total", model=model, sink=sink, outcome=outcome
        )
        or 0.0
        for outcome in ("sent", "dropped", "failed")
    }


def _infer(client: httpx.Client, rid: str) -> float:
    started = time.perf_counter()
    reply = client.post("/v2/models/iris_onnx/infer", json={**BODY, "id": rid})
    assert reply.status_code == 200, reply.text
    return time.perf_counter() - started


def _burst(base: str, ids: list[str], clients: int = 4) -> list[float]:
    """One request per id from ``clients`` concurrent clients (each its own connection); the
    latency of each. Every request must succeed."""

    def run(part: list[str]) -> list[float]:
        with httpx.Client(base_url=base, timeout=30) as client:
            return [_infer(client, rid) for rid in part]

    with ThreadPoolExecutor(clients) as pool:
        parts = pool.map(run, [ids[i::clients] for i in range(clients)])
        return [latency for part in parts for latency in part]


def test_done_when_file_and_cloudevents_with_the_receiver_killed(
    model_repo: Path, tmp_path: Path, receiver: CloudEventsReceiver
) -> None:
    """The issue's 'Done when': 300 REST + 100 gRPC requests give 400 file lines and 400
    request/response pairs; with the receiver killed 2,000 more requests all succeed and the
    counters add up; delivery resumes when it is back; SIGTERM leaves every request in the
    file."""
    sink = {
        "type": "cloudevents",
        "url": receiver.url,
        "max_queue_events": 500,
        "max_retries": 2,
        "retry_backoff_ms": 20,
        "retry_backoff_max_ms": 100,
        "timeout_s": 60,  # no attempt times out on a loaded machine: exactly one POST each
        "linger_ms": 5,
    }
    logging = {"sinks": [{"type": "file", "path": "iris.jsonl", "linger_ms": 5}, sink]}
    repo = make_repo(model_repo, tmp_path / "repo", iris_onnx=logging)
    logs = tmp_path / "logs"
    args = ["serve", str(repo), "--http-port", "0", "--grpc-port", "0", "--log-dir", str(logs)]
    name = f"cloudevents:127.0.0.1:{receiver.port}/"
    with CliProcess([*args, "--shutdown-timeout-secs", "20"]) as server:
        port = server.wait_ready()
        base = f"http://127.0.0.1:{port}"
        grpc_port = server.wait_for(r"gRPC listening on [^\s]+:(\d+)").group(1)
        before = _burst(base, [f"rest-{i}" for i in range(300)])
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        tensor = grpcclient.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3, 4]], dtype=np.float32))
        for i in range(100):
            grpc.infer("iris_onnx", [tensor], request_id=f"grpc-{i}")
        grpc.close()
        ids = [f"rest-{i}" for i in range(300)] + [f"grpc-{i}" for i in range(100)]

        wait_for(lambda: len(receiver.events()) >= 800, timeout=120)
        events = receiver.events()
        assert len(events) == 800, _outcomes(base, "iris_onnx", name)
        pairs: dict[str, Counter[str]] = {}
        for event in events:
            attributes = event["attributes"]
            assert event["mode"] == "binary" and attributes["specversion"] == "1.0"
            assert attributes["inferenceservicename"] == "iris_onnx"
            assert attributes["component"] == "predictor" and attributes["endpoint"] == "default"
            assert attributes["modelversion"] == "1" and attributes["statuscode"] == "200"
            assert attributes["source"].endswith("/v2/models/iris_onnx")
            pairs.setdefault(attributes["id"], Counter())[attributes["type"]] += 1
        assert sorted(pairs) == sorted(ids)
        assert all(kinds == {REQUEST: 1, RESPONSE: 1} for kinds in pairs.values())
        request = next(e for e in events if e["attributes"]["type"] == REQUEST)
        assert request["data"]["inputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
        response = next(e for e in events if e["attributes"]["type"] == RESPONSE)
        assert {o["name"] for o in response["data"]["outputs"]} == {"label", "probabilities"}
        # one pooled client: keep-alive connections reused (at most 16 at once, re-opened after
        # 5 s idle), not a client and a connection per event (kserve#6147)
        assert len({e["connection"] for e in events}) <= 80
        wait_for(lambda: len(read_lines(logs / "iris.jsonl")) == 400, timeout=120)
        assert sorted(line["id"] for line in read_lines(logs / "iris.jsonl")) == sorted(ids)
        assert _outcomes(base, "iris_onnx", name) == {"sent": 400, "dropped": 0, "failed": 0}

        receiver.kill()
        during = _burst(base, [f"down-{i}" for i in range(2000)])

        def settled() -> bool:
            return payload_metric(base, "modelserve_payload_queue_events", sink=name) == 0

        wait_for(settled, timeout=120)
        counts = _outcomes(base, "iris_onnx", name)
        assert counts["sent"] == 400 and counts["dropped"] + counts["failed"] == 2000
        assert counts["failed"] > 0
        dead = read_lines(logs / "dead-letter" / f"cloudevents_127.0.0.1_{receiver.port}_.jsonl")
        assert len(dead) == counts["failed"]
        assert all(line["event"]["id"].startswith("down-") for line in dead)
        print(
            f"latency p50 with the receiver up {statistics.median(before) * 1e3:.2f} ms, "
            f"killed {statistics.median(during) * 1e3:.2f} ms"
        )

        receiver.start()  # back on the same port: delivery resumes by itself
        with httpx.Client(base_url=base) as client:
            for i in range(50):
                _infer(client, f"back-{i}")
        back = {f"back-{i}" for i in range(50)}
        wait_for(lambda: back <= {e["attributes"]["id"] for e in receiver.events()}, timeout=120)
        wait_for(lambda: _outcomes(base, "iris_onnx", name)["sent"] == 450, timeout=120)

        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    lines = read_lines(logs / "iris.jsonl")
    assert len(lines) == 2450
    assert {line["id"] for line in lines} == {*ids, *(f"down-{i}" for i in range(2000)), *back}


def test_structured_batch_and_error_events(
    model_repo: Path, tmp_path: Path, serve: Servers, receiver: CloudEventsReceiver
) -> None:
    sinks = [
        {"type": "cloudevents", "url": f"{receiver.url}s", "content_mode": "structured"},
        {
            "type": "cloudevents",
            "url": f"{receiver.url}b",
            "content_mode": "batch",
            "source": "urn:modelserve:test",
            "namespace": "ml",
            "endpoint": "canary",
            "headers": {"authorization": "Bearer t"},
        },
    ]
    logging = {"redact": ["inputs.input"], "sinks": sinks}
    repo = make_repo(model_repo, tmp_path / "repo", iris=logging)
    running = serve(repo, log_dir=tmp_path / "logs")
    bad = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    with httpx.Client(base_url=running.http) as client:
        assert client.post("/v2/models/iris/infer", json={**BODY, "id": "ok"}).is_success
        assert client.post("/v2/models/iris/infer", json={**bad, "id": "bad"}).status_code == 400
    wait_for(lambda: len(receiver.events()) == 8)
    modes = Counter(e["mode"] for e in receiver.events())
    assert modes == {"structured": 4, "batch": 4}
    for event in receiver.events():
        attributes = event["attributes"]
        assert attributes["datacontenttype"] == "application/json"
        if attributes["type"] == REQUEST:
            assert event["data"]["inputs"] == []  # redacted
        if attributes["id"] == "bad" and attributes["type"] != REQUEST:
            assert attributes["type"] == ERROR and attributes["statuscode"] == "400"
            assert event["data"]["code"] == "invalid_argument" and "shape" in event["data"]["error"]
        if event["mode"] == "batch":
            assert attributes["source"] == "urn:modelserve:test"
            assert attributes["namespace"] == "ml" and attributes["endpoint"] == "canary"


def test_a_receiver_that_refuses_an_event_sends_it_to_the_dead_letters_at_once(
    model_repo: Path, tmp_path: Path, serve: Servers, receiver: CloudEventsReceiver
) -> None:
    url = f"{receiver.url}refuse"
    sink = {"type": "cloudevents", "url": url, "max_retries": 50, "name": "refusing"}
    repo = make_repo(model_repo, tmp_path / "repo", iris={"sinks": [sink]})
    running = serve(repo, log_dir=tmp_path / "logs")
    with httpx.Client(base_url=running.http) as client:
        assert client.post("/v2/models/iris/infer", json={**BODY, "id": "r0"}).is_success
    dead = tmp_path / "logs" / "dead-letter" / "refusing.jsonl"
    wait_for(lambda: len(read_lines(dead)) == 1)
    [line] = read_lines(dead)
    assert line["attempts"] == 1 and "HTTP 400" in line["error"] and line["event"]["id"] == "r0"
    labels = {"model": "iris", "sink": "refusing", "outcome": "failed"}
    assert payload_metric(running.http, "modelserve_payload_events_total", **labels) == 1
