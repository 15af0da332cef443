"""Inference from a Redis stream end to end, against Debian's real ``redis-server`` (started
here on a free port, killed and restarted): JSON and protobuf requests, errors, a broker restart
mid-run, and the consumer group across a server restart (nothing acknowledged is read again)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelserve.protocol import grpc_service_pb2 as pb
from tests.brokers import RedisServer
from tests.harness import CliProcess, Servers, run_cli
from tests.payload_helpers import BODY, make_repo, wait_for


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _request(i: int) -> dict[str, bytes]:
    body = orjson.dumps({**BODY, "id": f"json-{i}"})
    return {"body": body, "content-type": b"application/json"}


def _protobuf_request(i: int) -> dict[str, bytes]:
    message = pb.ModelInferRequest(id=f"pb-{i}")
    tensor = message.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    return {
        "body": message.SerializeToString(),
        "content-type": b"application/x-protobuf",
        "id": f"pb-{i}".encode(),
    }


def _answers(client: Any, stream: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in client.xrange(stream)]


def test_inference_from_a_redis_stream(
    model_repo: Path, tmp_path: Path, serve: Servers, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    for i in range(20):
        client.xadd("requests", _request(i))
    client.xadd("requests", _protobuf_request(0))
    client.xadd("requests", {"body": b'{"inputs": []}', "id": b"empty"})
    client.xadd("requests", {"body": b"\x00not protobuf", "content-type": b"application/protobuf"})
    repo = make_repo(model_repo, tmp_path / "repo", iris_onnx=None)
    running = serve(repo, stream_source=[f"{redis_server.url}/requests"])  # its only model
    wait_for(lambda: client.xlen("requests.responses") == 21)
    wait_for(lambda: client.xlen("requests.errors") == 2)
    responses = _answers(client, "requests.responses")
    by_key = {fields[b"key"].decode(): fields for fields in responses}
    assert set(by_key) == {*(f"json-{i}" for i in range(20)), "pb-0"}
    answer = orjson.loads(by_key["json-3"][b"body"])
    assert answer["model_name"] == "iris_onnx" and answer["id"] == "json-3"
    assert {o["name"] for o in answer["outputs"]} == {"label", "probabilities"}
    assert by_key["json-3"][b"status_code"] == b"200"
    reply = pb.ModelInferResponse.FromString(by_key["pb-0"][b"body"])
    assert by_key["pb-0"][b"content-type"] == b"application/x-protobuf"
    assert reply.id == "pb-0" and {o.name for o in reply.outputs} == {"label", "probabilities"}
    errors = [orjson.loads(fields[b"body"]) for fields in _answers(client, "requests.errors")]
    assert [e["code"] for e in errors] == ["invalid_argument", "invalid_argument"]
    empty = next(e for e in errors if e["id"] == "empty")  # served concurrently: any order
    assert "'inputs' must be a non-empty list" in empty["error"]
    assert any("not a ModelInferRequest protobuf" in e["error"] for e in errors)
    pending = client.xpending("requests", "modelserve-iris_onnx")
    assert pending["pending"] == 0
    # the same dataplane: a REST client sees the stream's requests in the statistics
    stats = httpx.get(f"{running.http}/v2/models/iris_onnx/stats").json()
    assert stats["model_stats"][0]["inference_count"] >= 21

    redis_server.kill()  # a broker restart mid-run: the source reconnects by itself
    redis_server.start()
    client = redis_server.client()
    for i in range(20, 40):
        client.xadd("requests", _request(i))
    wait_for(lambda: client.xlen("requests.responses") == 41)
    keys = [fields[b"key"].decode() for fields in _answers(client, "requests.responses")]
    assert len(keys) == len(set(keys)) == 41


def test_stream_source_resumes_after_a_restart_without_reading_twice(
    model_repo: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    source = f"{redis_server.url}/work?model=iris_onnx&in_flight=8"
    repo = make_repo(model_repo, tmp_path / "repo", iris_onnx=None)
    args = ["serve", str(repo), "--http-port", "0", "--grpc-port", "0"]
    args += ["--stream-source", source]
    for i in range(300):
        client.xadd("work", _request(i))
    with CliProcess(args) as server:
        server.wait_ready()
        wait_for(lambda: client.xlen("work.responses") >= 50)
        server.signal(signal.SIGTERM)  # mid-run: what it took is answered before it exits
        assert server.wait() == 0
    answered = client.xlen("work.responses")
    # the read in progress at SIGTERM is let finish and what it took is answered: nothing is
    # left taken and unanswered
    assert client.xpending("work", "modelserve-iris_onnx")["pending"] == 0
    for i in range(300, 400):
        client.xadd("work", _request(i))
    with CliProcess(args) as server:
        server.wait_ready()
        wait_for(lambda: client.xlen("work.responses") == 400)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    keys = [fields[b"key"].decode() for fields in _answers(client, "work.responses")]
    assert sorted(keys) == sorted(f"json-{i}" for i in range(400))  # each exactly once
    assert client.xpending("work", "modelserve-iris_onnx")["pending"] == 0
    assert answered < 400


def test_a_source_that_does_not_say_its_model_is_one_clear_error(
    model_repo: Path, tmp_path: Path
) -> None:
    repo = make_repo(model_repo, tmp_path / "repo", a=None, b=None)
    result = run_cli(
        [
            "serve",
            str(repo),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--stream-source",
            "redis://127.0.0.1:1/requests",
        ]
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "say which model it serves (?model=<name>)" in result.stderr
    result = run_cli(["serve", str(repo), "--stream-source", "redis://127.0.0.1/r?modle=a"])
    assert result.returncode != 0 and "unknown key(s) modle" in result.stderr
