"""Payload logging end to end with the file sink: real servers, real clients (httpx, tritonclient
over REST and gRPC), model.yaml's ``logging:`` and the server default, the metrics, and the flush
on SIGTERM of the real command line."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import numpy as np
import orjson
import tritonclient.grpc as grpcclient
import yaml

from tests.harness import CliProcess, Servers
from tests.payload_helpers import BODY, make_repo, payload_metric, read_lines, wait_for


def test_file_sink_logs_rest_and_grpc_with_redaction(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    logging = {
        "redact": ["parameters.token"],
        "headers": ["x-user"],
        "sinks": [{"type": "file", "path": "payloads/iris.jsonl", "linger_ms": 1}],
    }
    repo = make_repo(model_repo, tmp_path / "repo", iris=logging, quiet=None)
    running = serve(repo, log_dir=tmp_path / "logs")
    with httpx.Client(base_url=running.http) as client:
        for i in range(5):
            body = {**BODY, "id": f"rest-{i}", "parameters": {"token": "s3cret", "n": i}}
            reply = client.post("/v2/models/iris/infer", json=body, headers={"x-user": "ada"})
            assert reply.status_code == 200
        assert client.post("/v2/models/quiet/infer", json=BODY).status_code == 200
        bad = {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]
        }
        assert client.post("/v2/models/iris/infer", json=bad).status_code == 400
    grpc = grpcclient.InferenceServerClient(running.grpc_url)
    tensor = grpcclient.InferInput("input", [2, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((2, 4), dtype=np.float32))
    grpc.infer("iris", [tensor], request_id="grpc-0", headers={"x-user": "bob"})
    grpc.close()
    path = tmp_path / "logs" / "payloads" / "iris.jsonl"
    wait_for(lambda: len(read_lines(path)) == 7)
    lines = read_lines(path)
    assert [line["id"] for line in lines[:5]] == [f"rest-{i}" for i in range(5)]
    first = lines[0]
    assert first["model"] == "iris" and first["version"] == "1" and first["status"] == "success"
    assert first["transport"] == "http" and first["headers"] == {"x-user": "ada"}
    assert first["parameters"] == {"n": 0} and "s3cret" not in path.read_text()
    assert first["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}
    ]
    assert {o["name"] for o in first["outputs"]} == {"label", "probabilities"}
    assert first["time"].endswith("Z") and first["latency_ms"] > 0
    failed = lines[5]
    assert failed["status"] == "invalid_argument" and failed["status_code"] == 400
    assert "shape" in failed["error"] and "outputs" not in failed
    grpc_line = lines[6]
    assert grpc_line["id"] == "grpc-0" and grpc_line["transport"] == "grpc"
    assert grpc_line["headers"] == {"x-user": "bob"} and grpc_line["inputs"][0]["shape"] == [2, 4]
    sink = "file:payloads/iris.jsonl"
    labels = {"model": "iris", "sink": sink, "outcome": "sent"}
    assert payload_metric(running.http, "modelserve_payload_events_total", **labels) == 7
    assert payload_metric(running.http, "modelserve_payload_queue_events", sink=sink) == 0
    count = payload_metric(running.http, "modelserve_payload_delivery_seconds_count", sink=sink)
    assert count is not None and count >= 1
    assert running.server is not None and running.server.events.active


def test_no_logging_configured_means_no_consumer(model_repo: Path, serve: Servers) -> None:
    running = serve(model_repo)
    with httpx.Client(base_url=running.http) as client:
        assert client.post("/v2/models/iris_onnx/infer", json=BODY).status_code == 200
    assert running.server is not None and not running.server.events.active
    assert running.server.payloads.sinks == []


def test_server_default_sampling_and_mode(model_repo: Path, tmp_path: Path, serve: Servers) -> None:
    own = {"mode": "response", "sinks": [{"type": "file", "path": "own.jsonl"}]}
    repo = make_repo(model_repo, tmp_path / "repo", a=None, b=own)
    default = "{sample_rate: 0.5, sinks: [{type: file, path: default.jsonl, linger_ms: 1}]}"
    running = serve(repo, log_dir=tmp_path / "logs", payload_logging=default)
    with httpx.Client(base_url=running.http) as client:
        for i in range(400):
            assert client.post("/v2/models/a/infer", json={**BODY, "id": f"a{i}"}).is_success
        assert client.post("/v2/models/b/infer", json={**BODY, "id": "b0"}).is_success
    default_lines = read_lines(tmp_path / "logs" / "default.jsonl")
    wait_for(lambda: len(read_lines(tmp_path / "logs" / "own.jsonl")) == 1)
    assert 140 < len(default_lines) < 260  # about half, decided per request
    assert {line["model"] for line in default_lines} == {"a"}
    [own_line] = read_lines(tmp_path / "logs" / "own.jsonl")
    assert own_line["id"] == "b0" and "outputs" in own_line and "inputs" not in own_line


def test_load_api_may_not_configure_logging(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    repo = make_repo(model_repo, tmp_path / "repo", a=None)
    running = serve(repo, model_control_mode="explicit")
    config = orjson.dumps({"logging": {"sinks": [{"type": "file", "path": "/tmp/x.jsonl"}]}})
    body = {"parameters": {"config": config.decode()}}
    reply = httpx.post(f"{running.http}/v2/repository/models/a/load", json=body)
    assert reply.status_code == 400 and "'logging'" in reply.json()["error"]


def test_sigterm_flushes_every_accepted_request(model_repo: Path, tmp_path: Path) -> None:
    repo = make_repo(model_repo, tmp_path / "repo", iris=None)
    logging = "{sinks: [{type: file, path: all.jsonl, linger_ms: 200, batch_size: 100000}]}"
    args = ["serve", str(repo), "--http-port", "0", "--grpc-port", "0"]
    args += ["--payload-logging", logging, "--log-dir", str(tmp_path / "logs")]
    with CliProcess(args) as server:
        port = server.wait_ready()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for i in range(300):
                assert client.post("/v2/models/iris/infer", json={**BODY, "id": f"r{i}"}).is_success
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    ids = [line["id"] for line in read_lines(tmp_path / "logs" / "all.jsonl")]
    assert ids == [f"r{i}" for i in range(300)]


def test_answers_from_the_response_cache_are_logged(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    repo = make_repo(model_repo, tmp_path / "repo", iris={"sinks": [{"type": "file", "path": "c"}]})
    config = yaml.safe_load((repo / "iris" / "model.yaml").read_text())
    (repo / "iris" / "model.yaml").write_text(
        yaml.safe_dump({**config, "response_cache": {"max_mb": 1}})
    )
    running = serve(repo, log_dir=tmp_path / "logs")
    with httpx.Client(base_url=running.http) as client:
        for i in range(2):  # the second is answered from the cache
            assert client.post("/v2/models/iris/infer", json={**BODY, "id": f"r{i}"}).is_success
    wait_for(lambda: len(read_lines(tmp_path / "logs" / "c")) == 2)
    first, second = read_lines(tmp_path / "logs" / "c")
    assert (first["id"], second["id"]) == ("r0", "r1")
    assert first["outputs"] == second["outputs"]
