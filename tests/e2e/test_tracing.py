"""Tracing: spans reach an OTLP/HTTP receiver (a tiny one in this process), children of the
caller's traceparent, with queue and compute children; without an endpoint, no opentelemetry
module is even imported."""

from __future__ import annotations

import gzip
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from modelserve.protocol import grpc_service_pb2 as pb
from tests.conftest import Servers
from tests.harness import run_python

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
GRPC_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class Receiver(ThreadingHTTPServer):
    """Accepts POST /v1/traces (OTLP/HTTP protobuf) and keeps every span."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Any] = []
        self.paths: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        self.server.paths.append(self.path)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend(scope.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def test_spans_reach_the_otlp_receiver(
    model_repo: Path, tmp_path: Path, receiver: Receiver, serve: Servers
) -> None:
    shutil.copytree(model_repo / "iris_onnx", tmp_path / "iris_onnx")
    running = serve(tmp_path, otlp_endpoint=receiver.url)
    try:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [1] * 8}]}
        traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
        reply = httpx.post(
            f"http://{running.url}/v2/models/iris_onnx/infer",
            json=body,
            headers={"traceparent": traceparent, "x-request-id": "traced-1"},
        )
        assert reply.status_code == 200
        assert httpx.get(f"http://{running.url}/v2/health/ready").status_code == 200
        failed = httpx.post(f"http://{running.url}/v2/models/iris_onnx/infer", json={})
        assert failed.status_code == 400
        request = pb.ModelInferRequest(
            model_name="iris_onnx",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
            ],
            raw_input_contents=[np.ones((1, 4), dtype=np.float32).tobytes()],
        )
        with grpc.insecure_channel(running.grpc_url) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            infer(request, metadata=(("traceparent", f"00-{GRPC_TRACE_ID}-{PARENT_ID}-01"),))
    finally:
        running.stop()  # flushes the exporter before the spans are read
    assert set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans
    roots = [s for s in spans if s.name == "POST /v2/models/iris_onnx/infer"]
    traced = next(s for s in roots if s.trace_id.hex() == TRACE_ID)
    assert traced.parent_span_id.hex() == PARENT_ID
    assert traced.kind == traced.SPAN_KIND_SERVER
    attributes = {a.key: a.value for a in traced.attributes}
    assert attributes["modelserve.request_id"].string_value == "traced-1"
    assert attributes["modelserve.serving.model"].string_value == "iris_onnx"
    children = {s.name: s for s in spans if s.parent_span_id == traced.span_id}
    assert set(children) == {"queue", "compute"}
    queue, compute = children["queue"], children["compute"]
    assert traced.start_time_unix_nano <= queue.start_time_unix_nano
    assert queue.end_time_unix_nano <= compute.start_time_unix_nano + 1
    assert compute.end_time_unix_nano <= traced.end_time_unix_nano
    assert {a.key: a.value for a in compute.attributes}["modelserve.batch_size"].int_value == 2
    untraced = [s for s in roots if s.trace_id.hex() != TRACE_ID]
    assert len(untraced) == 1 and untraced[0].status.code == untraced[0].status.STATUS_CODE_ERROR
    by_grpc = next(s for s in spans if s.trace_id.hex() == GRPC_TRACE_ID and not s.name.islower())
    assert by_grpc.name == "/inference.GRPCInferenceService/ModelInfer"
    assert by_grpc.parent_span_id.hex() == PARENT_ID
    assert not any("health" in s.name for s in spans), "only inference requests are traced"


def test_no_opentelemetry_without_an_endpoint(model_repo: Path) -> None:
    code = (
        "import sys\n"
        "from modelserve import Server, Settings\n"
        f"Server(Settings(model_repository={str(model_repo)!r}))\n"
        "print([m for m in sys.modules if m.startswith('opentelemetry')])\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
