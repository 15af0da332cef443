"""Bad and hostile input against a real server: lying shapes, too many elements, deep JSON, huge
headers, slow clients (slow-loris), too many connections. Each is answered 4xx or cut off, never
a 5xx or a hang, and the server keeps serving. The timing tests read the running server's own
settings (header_timeout_s, body_timeout_s, max_connections)."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import RunningServer, Servers

MAX_ELEMENTS = 1000


@pytest.fixture(scope="module")
def limited(model_repo: Path, serve_module: Servers) -> RunningServer:
    return serve_module(
        model_repo,
        model_control_mode="explicit",
        load_models=("iris_onnx", "python_add", "echo_bytes", "echo_fp32"),
        max_tensor_elements=MAX_ELEMENTS,
        header_timeout_s=1.0,
        body_timeout_s=1.0,
    )


def _post(server: RunningServer, path: str, body: bytes) -> httpx.Response:
    return httpx.post(f"http://{server.url}{path}", content=body, timeout=10)


def _alive(server: RunningServer) -> None:
    assert httpx.get(f"http://{server.url}/v2/health/ready", timeout=5).status_code == 200


# ---- shapes and element counts ---------------------------------------------------------------

LYING_SHAPES = [
    b"[1000000000, 1000000000]",
    b"[0, 1180591620717411303424]",  # 2**70: beyond int64
    b"[0, 4611686018427387904, 4611686018427387904]",  # zero elements, but overflows a reshape
    b"[" + b", ".join([b"1"] * 100) + b"]",  # more dimensions than numpy has
    b"[-1, 4]",
    b"[1.5, 4]",
    b'["1", 4]',
    b"[true, 4]",
    b"4",
]


@pytest.mark.parametrize("shape", LYING_SHAPES)
@pytest.mark.parametrize("datatype", [b"FP32", b"BYTES"])
def test_lying_json_shapes_are_400(limited: RunningServer, shape: bytes, datatype: bytes) -> None:
    body = (
        b'{"inputs":[{"name":"input","datatype":"' + datatype + b'","shape":' + shape + b","
        b'"data":[1,2,3,4]}]}'
    )
    started = time.monotonic()
    reply = _post(limited, "/v2/models/iris_onnx/infer", body)
    assert reply.status_code == 400, reply.text
    assert "error" in reply.json()
    assert time.monotonic() - started < 2  # nothing was allocated for 10**18 elements
    _alive(limited)


def test_lying_binary_shape_is_400(limited: RunningServer) -> None:
    header = (
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1000000000,1000000000],'
        b'"parameters":{"binary_data_size":16}}]}'
    )
    reply = httpx.post(
        f"http://{limited.url}/v2/models/iris_onnx/infer",
        content=header + bytes(16),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert reply.status_code == 400, reply.text


def test_element_limit_counts_every_input(limited: RunningServer) -> None:
    def body(rows: int) -> dict[str, object]:
        return {
            "inputs": [
                {"name": name, "datatype": "FP32", "shape": [rows, 16], "data": [0.5] * rows * 16}
                for name in ("INPUT0", "INPUT1")
            ]
        }

    with httpx.Client(base_url=f"http://{limited.url}") as client:
        assert client.post("/v2/models/python_add/infer", json=body(8)).status_code == 200
        reply = client.post("/v2/models/python_add/infer", json=body(40))  # 640 + 640 > 1000
        assert reply.status_code == 400
        assert "limit of 1000" in reply.json()["error"]


def test_grpc_lying_shapes_and_limit(limited: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(limited.grpc_url)
    try:
        for shape in ([10**9, 10**9], [0, 2**62, 2**62], [1] * 100, [2**63 - 1]):
            tensor = grpcclient.InferInput("input", [1, 4], "FP32")
            tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
            tensor.set_shape(shape)
            with pytest.raises(InferenceServerException) as info:
                client.infer("iris_onnx", [tensor])
            assert info.value.status() == "StatusCode.INVALID_ARGUMENT", shape
        tensors = []
        for name in ("INPUT0", "INPUT1"):
            tensor = grpcclient.InferInput(name, [40, 16], "FP32")
            tensor.set_data_from_numpy(np.ones((40, 16), np.float32))
            tensors.append(tensor)
        with pytest.raises(InferenceServerException) as info:
            client.infer("python_add", tensors)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "limit of 1000" in str(info.value.message())
    finally:
        client.close()


# ---- JSON that tries to exhaust the parser ---------------------------------------------------


def test_deeply_nested_json_is_400(limited: RunningServer) -> None:
    for depth in (1025, 100_000):
        reply = _post(limited, "/v2/models/iris_onnx/infer", b"[" * depth + b"]" * depth)
        assert reply.status_code == 400, reply.text
        nested = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":'
        nested += b"[" * depth + b"1" + b"]" * depth + b"}]}"
        reply = _post(limited, "/v2/models/iris_onnx/infer", nested)
        assert reply.status_code == 400, reply.text
    _alive(limited)


def test_nested_data_deeper_than_python_recursion(limited: RunningServer) -> None:
    """orjson accepts 1024 levels; decoding them must not hit Python's recursion limit."""
    depth = 1020
    for datatype, model, value in ((b"BYTES", "echo_bytes", b'"x"'), (b"FP32", "echo_fp32", b"1")):
        body = b'{"inputs":[{"name":"IN","datatype":"' + datatype + b'","shape":[1,1],"data":'
        body += b"[" * depth + value + b"]" * depth + b"}]}"
        reply = _post(limited, f"/v2/models/{model}/infer", body)
        assert reply.status_code in (200, 400), reply.text


def test_huge_header_is_refused(limited: RunningServer) -> None:
    """A request line plus headers of megabytes is refused (4xx or closed), not buffered."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # cut off: refused
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 2_000_000)
            sock.sendall(b"\r\nHost: x\r\n\r\n")
        answer = _read_until_closed(sock, 5)
    assert not answer.startswith(b"HTTP/1.1 2"), answer[:80]
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:80]
    _alive(limited)


# ---- slow clients and connection limits ------------------------------------------------------


def _read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after limit_s."""
    deadline = time.monotonic() + limit_s
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, BrokenPipeError):
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open for {limit_s} s")


def _closed_within(sock: socket.socket, trickle: bytes, every_s: float, limit_s: float) -> float:
    """Send ``trickle`` one byte every ``every_s`` seconds; the seconds until the server closed
    the connection (AssertionError when it did not within ``limit_s``)."""
    started = time.monotonic()
    sock.setblocking(True)
    for byte in trickle:
        if time.monotonic() - started > limit_s:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        sock.settimeout(every_s)
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    raise AssertionError(f"connection still open after {limit_s} s of trickling")


def test_slow_loris_headers_are_cut_off(limited: RunningServer) -> None:
    timeout = limited.settings.header_timeout_s
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        took = _closed_within(sock, request, every_s=0.2, limit_s=timeout * 3 + 2)
    assert took >= timeout * 0.8  # not before the timeout either
    _alive(limited)


def test_stalled_body_is_cut_off(limited: RunningServer) -> None:
    timeout = limited.settings.body_timeout_s
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/iris_onnx/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"{" * 500
        )
        started = time.monotonic()
        answer = _read_until_closed(sock, timeout * 3 + 2)
        took = time.monotonic() - started
    assert took >= timeout * 0.8
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:80]
    _alive(limited)


def test_slow_body_trickle_is_cut_off(limited: RunningServer) -> None:
    timeout = limited.settings.body_timeout_s
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/iris_onnx/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        _closed_within(sock, b" " * 100000, every_s=0.2, limit_s=timeout * 3 + 2)
    _alive(limited)


def test_max_connections(model_repo: Path, serve: Servers) -> None:
    running = serve(model_repo, model_control_mode="explicit", load_models=(), max_connections=4)
    limit = running.settings.max_connections
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    held: list[socket.socket] = []
    try:
        for _ in range(limit):
            sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(sock)
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as extra:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                extra.sendall(request)
            answer = _read_until_closed(extra, 5)
            assert not answer.startswith(b"HTTP/1.1 200"), answer[:80]
            assert not answer or answer.startswith(b"HTTP/1.1 503"), answer[:80]
        held.pop().close()
        time.sleep(0.2)
        assert httpx.get(f"{running.http}/v2/health/live", timeout=5).status_code == 200
    finally:
        for sock in held:
            sock.close()
