"""Metrics, Triton statistics and the access log over both transports, after a known load:
every counter and histogram count equals what was sent, per outcome; REST and gRPC statistics
agree; every access-log line is JSON carrying the request id the client gave."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from modelserve.observability.access import ACCESS_LOGGER
from modelserve.observability.logs import JsonFormatter, RequestIdFilter
from modelserve.protocol import grpc_service_pb2 as pb
from tests.conftest import RunningServer, Servers
from tests.harness import write_python_model

OK, BAD, UNKNOWN = 50, 5, 3
"""Per transport: successes, invalid requests (wrong shape), requests for an unknown model."""

SLOW_BATCHED = """
import time

class Slow:
    def predict(self, inputs):
        time.sleep(0.005)
        return {"y": inputs["x"] * 2}
"""


@pytest.fixture(scope="module")
def observed(
    model_repo: Path, tmp_path_factory: pytest.TempPathFactory, serve_module: Servers
) -> RunningServer:
    """A server of its own (its counters start at zero) with the access log and metrics port."""
    repo = tmp_path_factory.mktemp("observed")
    shutil.copytree(model_repo / "iris_onnx", repo / "iris_onnx")
    write_python_model(
        repo,
        "batched",
        SLOW_BATCHED,
        {
            "max_batch_size": 16,
            "execution": "thread",
            "dynamic_batching": {"max_queue_delay_us": 0},
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        },
        entrypoint="Slow",
    )
    return serve_module(repo, metrics_port=0, access_log=True)


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """The access log as the CLI writes it with --log-format json."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _lines(out: io.StringIO, expected: int) -> list[dict[str, Any]]:
    """The access lines, once ``expected`` are there: an aborted gRPC call's line is written
    right after the client got its status."""
    deadline = time.monotonic() + 5
    while len(out.getvalue().splitlines()) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == expected
    return lines


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _send_load(running: RunningServer) -> None:
    rows = np.random.default_rng(0).normal(size=(1, 4)).astype(np.float32)
    wrong = np.zeros((1, 3), dtype=np.float32)
    for module, url in ((httpclient, running.url), (grpcclient, running.grpc_url)):
        client: Any = module.InferenceServerClient(url)
        try:

            def infer(
                model: str, array: np.ndarray, client: Any = client, module: Any = module
            ) -> Any:
                tensor = module.InferInput("input", list(array.shape), "FP32")
                tensor.set_data_from_numpy(array)
                return client.infer(model, [tensor])

            for _ in range(OK):
                infer("iris_onnx", rows)
            for _ in range(BAD):
                with pytest.raises(InferenceServerException):
                    infer("iris_onnx", wrong)
            for _ in range(UNKNOWN):
                with pytest.raises(InferenceServerException):
                    infer("no_such_model", rows)
        finally:
            client.close()
    gc.collect()  # tritonclient.http closes again in __del__: do it in this thread


def test_counts_and_statistics_match_the_load(observed: RunningServer) -> None:
    _send_load(observed)
    text = httpx.get(f"http://{observed.url}/metrics").text
    samples = _samples(text)
    iris = {"model": "iris_onnx", "version": "1"}
    requests = "modelserve_inference_requests_total"
    assert _value(samples, requests, **iris, outcome="success") == 2 * OK
    assert _value(samples, requests, **iris, outcome="invalid_argument") == 2 * BAD
    assert _value(samples, requests, model="_unknown", version="", outcome="not_found") == (
        2 * UNKNOWN
    )
    latency = "modelserve_inference_request_duration_seconds_count"
    assert _value(samples, latency, **iris) == 2 * (OK + BAD)
    assert _value(samples, latency, model="_unknown", version="") == 2 * UNKNOWN
    for name in ("queue", "compute"):
        assert _value(samples, f"modelserve_inference_{name}_duration_seconds_count", **iris) == (
            2 * OK
        )
    assert _value(samples, "modelserve_inference_batch_size_count", **iris) == 2 * OK
    assert _value(samples, "modelserve_inference_batch_size_sum", **iris) == 2 * OK
    assert _value(samples, "modelserve_model_state", **iris, state="READY") == 1
    assert _value(samples, "modelserve_model_state", **iris, state="LOADING") == 0
    assert _value(samples, "modelserve_model_queue_depth", **iris) == 0
    assert _value(samples, "modelserve_model_load_duration_seconds", **iris) > 0
    assert _value(samples, "modelserve_http_connections") >= 1  # this scrape's
    assert _value(samples, "process_resident_memory_bytes") > 0

    # the metrics port shows the same counts
    assert observed.server is not None
    port = observed.server.telemetry.metrics_port
    other = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
    assert _value(other, requests, **iris, outcome="success") == 2 * OK

    # Triton statistics, REST and gRPC, agree with each other and with the load
    rest = httpx.get(f"http://{observed.url}/v2/models/iris_onnx/stats").json()
    with grpc.insecure_channel(observed.grpc_url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelStatistics",
            request_serializer=pb.ModelStatisticsRequest.SerializeToString,
            response_deserializer=pb.ModelStatisticsResponse.FromString,
        )
        answer = call(pb.ModelStatisticsRequest(name="iris_onnx"), timeout=10)
    via_grpc = json_format.MessageToDict(
        answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    (stats,) = rest["model_stats"]
    assert (stats["name"], stats["version"]) == ("iris_onnx", "1")
    assert stats["inference_count"] == stats["execution_count"] == 2 * OK
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 2 * OK
    assert inference["fail"]["count"] == 2 * BAD
    counts = {inference[k]["count"] for k in ("queue", "compute_input", "compute_infer")}
    assert counts == {inference["compute_output"]["count"]} == {2 * OK}
    assert all(inference[k]["ns"] > 0 for k in ("success", "queue", "compute_infer"))
    assert stats["batch_stats"][0]["batch_size"] == 1
    assert stats["batch_stats"][0]["compute_infer"]["count"] == 2 * OK
    assert stats["last_inference"] > 1_600_000_000_000
    (grpc_stats,) = via_grpc["model_stats"]
    assert int(grpc_stats["inference_count"]) == stats["inference_count"]
    for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        assert int(grpc_stats["inference_stats"][key]["count"]) == inference[key]["count"]
        assert int(grpc_stats["inference_stats"][key]["ns"]) == inference[key]["ns"]

    # the server says so, and tritonclient reads it on both transports
    assert "statistics" in httpx.get(f"http://{observed.url}/v2").json()["extensions"]
    client = grpcclient.InferenceServerClient(observed.grpc_url)
    try:
        every = client.get_inference_statistics(as_json=True)["model_stats"]
        assert {s["name"] for s in every} == {"iris_onnx", "batched"}
        with pytest.raises(InferenceServerException) as info:
            client.get_inference_statistics("no_such_model")
        assert "NOT_FOUND" in str(info.value.status())
    finally:
        client.close()
    missing = httpx.get(f"http://{observed.url}/v2/models/no_such_model/stats")
    assert missing.status_code == 404
    one = httpx.get(f"http://{observed.url}/v2/models/iris_onnx/versions/1/stats").json()
    assert one["model_stats"][0]["inference_count"] == 2 * OK


async def test_dynamic_batches_are_counted_once(observed: RunningServer) -> None:
    """Merged requests: one execution each batch, batch_stats add up to the rows inferred."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    async with httpx.AsyncClient(base_url=f"http://{observed.url}", timeout=30) as client:
        replies = await asyncio.gather(
            *(client.post("/v2/models/batched/infer", json=body) for _ in range(40))
        )
        assert all(reply.status_code == 200 for reply in replies)
        stats = (await client.get("/v2/models/batched/stats")).json()["model_stats"][0]
        samples = _samples((await client.get("/metrics")).text)
    assert stats["inference_count"] == 40
    executions = stats["execution_count"]
    assert 1 <= executions < 40, "requests that queued together ran together"
    batches = stats["batch_stats"]
    assert sum(b["compute_infer"]["count"] for b in batches) == executions
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches) == 40
    labels = {"model": "batched", "version": "1"}
    assert _value(samples, "modelserve_inference_batch_size_count", **labels) == executions
    assert _value(samples, "modelserve_inference_batch_size_sum", **labels) == 40
    assert _value(samples, "modelserve_inference_compute_duration_seconds_count", **labels) == 40


def test_access_log_is_json_with_the_request_id(
    observed: RunningServer, access_lines: io.StringIO
) -> None:
    body = {
        "id": "v2-id",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
    }
    given = [f"rest-{i}" for i in range(5)]
    with httpx.Client(base_url=f"http://{observed.url}") as client:
        for request_id in given:
            reply = client.post(
                "/v2/models/iris_onnx/infer", json=body, headers={"x-request-id": request_id}
            )
            assert reply.status_code == 200
            assert reply.headers["x-request-id"] == request_id
        adopted = client.post("/v2/models/iris_onnx/infer", json=body)
        assert adopted.headers["x-request-id"] == "v2-id"
        made = client.get("/v2/health/ready").headers["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0
        evil = client.post(
            "/v2/models/iris_onnx/infer", json={**body, "id": "a\r\nset-cookie: x=1"}
        )
        assert "set-cookie" not in evil.headers and len(evil.headers["x-request-id"]) == 32
    with grpc.insecure_channel(observed.grpc_url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelReady",
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )
        _, info = call.with_call(
            pb.ModelReadyRequest(name="iris_onnx"),
            metadata=(("x-request-id", "grpc-1"),),
            timeout=10,
        )
        assert ("x-request-id", "grpc-1") in tuple(info.trailing_metadata())
        with pytest.raises(grpc.RpcError) as failed:
            call.with_call(
                pb.ModelReadyRequest(name="no_such_model"),
                metadata=(("x-request-id", "grpc-2"),),
                timeout=10,
            )
        assert ("x-request-id", "grpc-2") in tuple(failed.value.trailing_metadata())
    lines = _lines(access_lines, len(given) + 5)
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id", "status"} <= set(line)
        assert line["logger"] == ACCESS_LOGGER
        assert line["latency_ms"] >= 0
    by_id = {line["request_id"]: line for line in lines}
    for request_id in [*given, "v2-id"]:
        line = by_id[request_id]
        assert line["transport"] == "http" and line["method"] == "POST"
        assert line["path"] == "/v2/models/iris_onnx/infer" and line["status"] == 200
        assert (line["model"], line["version"], line["outcome"]) == ("iris_onnx", "1", "success")
        assert line["rows"] == line["batch_size"] == 1
    assert by_id[made]["path"] == "/v2/health/ready" and "model" not in by_id[made]
    assert by_id["grpc-1"]["rpc"] == "/inference.GRPCInferenceService/ModelReady"
    assert (by_id["grpc-1"]["status"], by_id["grpc-2"]["status"]) == ("OK", "NOT_FOUND")


def test_grpc_infer_and_stream_carry_their_ids(
    observed: RunningServer, access_lines: io.StringIO
) -> None:
    client = grpcclient.InferenceServerClient(observed.grpc_url)
    tensor = grpcclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    answers: list[Any] = []
    try:
        client.infer("iris_onnx", [tensor], request_id="unary-1")
        client.start_stream(callback=lambda result, error: answers.append((result, error)))
        for i in range(3):
            client.async_stream_infer("iris_onnx", [tensor], request_id=f"stream-{i}")
        client.stop_stream()
    finally:
        client.close()
    assert len(answers) == 3 and all(error is None for _, error in answers)
    lines = {line["request_id"]: line for line in _lines(access_lines, 4)}
    assert lines["unary-1"]["rpc"].endswith("/ModelInfer")
    for i in range(3):
        line = lines[f"stream-{i}"]
        assert line["rpc"].endswith("/ModelStreamInfer") and line["outcome"] == "success"
