"""Every client mistake gets a 4xx with {"error": ...}, and the keep-alive connection survives."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.conftest import RunningServer

GOOD = json.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
).encode()


def _body(inputs: list[dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _inp(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "input",
        "datatype": "FP32",
        "shape": [1, 4],
        "data": [1, 2, 3, 4],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


INFER = "/v2/models/iris_onnx/infer"
HEADER = "Inference-Header-Content-Length"


def _binary(declared: int, sent: int) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body whose input declares ``declared`` bytes and carries ``sent``."""
    header = _body([_inp(data=None, parameters={"binary_data_size": declared})])
    return header + b"\0" * sent, {HEADER: str(len(header))}


# (case id, method, path, body, headers, expected status)
CASES: list[tuple[str, str, str, bytes, dict[str, str], int]] = [
    ("malformed-json", "POST", INFER, b'{"inputs": [', {}, 400),
    ("not-an-object", "POST", INFER, b"[1, 2]", {}, 400),
    ("no-inputs", "POST", INFER, b"{}", {}, 400),
    ("unknown-input", "POST", INFER, _body([_inp(name="nope")]), {}, 400),
    ("missing-input", "POST", "/v2/models/python_add/infer",
     _body([{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": [0] * 16}]), {}, 400),
    ("wrong-datatype", "POST", INFER, _body([_inp(datatype="INT32")]), {}, 400),
    ("unknown-datatype", "POST", INFER, _body([_inp(datatype="FLOAT")]), {}, 400),
    ("count-mismatch", "POST", INFER, _body([_inp(data=[1, 2, 3])]), {}, 400),
    ("shape-mismatch", "POST", INFER, _body([_inp(shape=[2, 2])]), {}, 400),
    ("negative-dim", "POST", INFER, _body([_inp(shape=[-1, 4])]), {}, 400),
    ("string-in-fp32", "POST", INFER, _body([_inp(data=[1, 2, "x", 4])]), {}, 400),
    ("ragged-data", "POST", INFER, _body([_inp(data=[[1, 2], [3]])]), {}, 400),
    ("float-in-int", "POST", "/v2/models/echo_int32/infer",
     _body([{"name": "IN", "datatype": "INT32", "shape": [1, 2], "data": [1.5, 2]}]), {}, 400),
    ("float-out-of-range", "POST", "/v2/models/echo_fp16/infer",
     _body([{"name": "IN", "datatype": "FP16", "shape": [1, 1], "data": [1e6]}]), {}, 400),
    ("int-out-of-range", "POST", "/v2/models/echo_uint8/infer",
     _body([{"name": "IN", "datatype": "UINT8", "shape": [1, 1], "data": [300]}]), {}, 400),
    ("batch-too-large", "POST", INFER,
     _body([_inp(shape=[65, 4], data=[0.0] * 260)]), {}, 400),
    ("unknown-output", "POST", INFER, _body([_inp()], outputs=[{"name": "nope"}]), {}, 400),
    ("binary-size-too-big", "POST", INFER, *_binary(declared=64, sent=16), 400),
    ("binary-extra-bytes", "POST", INFER, *_binary(declared=16, sent=20), 400),
    ("binary-size-wrong-for-shape", "POST", INFER, *_binary(declared=12, sent=12), 400),
    ("header-length-past-body", "POST", INFER, GOOD, {HEADER: "99999"}, 400),
    ("header-length-not-int", "POST", INFER, GOOD, {HEADER: "abc"}, 400),
    ("too-large", "POST", INFER, b"x" * (1024 * 1024 + 1), {}, 413),
    ("unknown-model", "POST", "/v2/models/nope/infer", GOOD, {}, 404),
    ("unknown-version", "POST", "/v2/models/iris_onnx/versions/9/infer", GOOD, {}, 404),
    ("unknown-model-meta", "GET", "/v2/models/nope", b"", {}, 404),
    ("unknown-model-ready", "GET", "/v2/models/nope/ready", b"", {}, 404),
    ("unknown-model-config", "GET", "/v2/models/nope/config", b"", {}, 404),
    ("unknown-route", "GET", "/v3/whatever", b"", {}, 404),
    ("wrong-method", "GET", INFER, b"", {}, 405),
    ("index-bad-json", "POST", "/v2/repository/index", b"{", {}, 400),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_client_mistake_gets_4xx_and_connection_survives(
    server: RunningServer, method: str, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/v2/health/live")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request(method, path, body=body or None, headers=headers)
        reply = conn.getresponse()
        payload = json.loads(reply.read())
        assert reply.status == status, payload
        assert isinstance(payload.get("error"), str) and payload["error"]
        assert reply.getheader("connection", "").lower() != "close"
        conn.request("POST", INFER, body=GOOD)
        after = conn.getresponse()
        assert after.status == 200, after.read()
        assert json.loads(after.read())["model_name"] == "iris_onnx"
        assert conn.sock is sock, "the server closed the keep-alive connection"
    finally:
        conn.close()


def test_error_messages_name_the_problem(server: RunningServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", INFER, body=_body([_inp(name="nope")]))
        message = json.loads(conn.getresponse().read())["error"]
        assert "nope" in message and "input" in message
        conn.request("POST", INFER, body=_body([_inp(datatype="INT32")]))
        message = json.loads(conn.getresponse().read())["error"]
        assert "INT32" in message and "FP32" in message
    finally:
        conn.close()
