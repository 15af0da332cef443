"""The HTTP/1.1 layer: pipelining, malformed requests, 100-continue, connection limit, timeouts."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.config.settings import Settings
from tests.conftest import RunningServer

CHUNKED_HEAD = (
    "POST /v2/models/iris_onnx/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
)
BODY = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'


def request(path: str, body: bytes = b"", method: str = "POST", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def read_responses(sock: socket.socket, count: int, timeout: float = 10) -> list[tuple[int, bytes]]:
    """Read ``count`` HTTP responses (with Content-Length bodies) from a socket."""
    sock.settimeout(timeout)
    buffer = b""
    answers: list[tuple[int, bytes]] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return answers
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")
        )
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        answers.append((status, buffer[:length]))
        buffer = buffer[length:]
    return answers


@pytest.fixture(scope="module")
def limited(model_repo: Path) -> Iterator[RunningServer]:
    settings = Settings(
        model_repository=model_repo,
        http_port=0,
        grpc_port=0,
        max_connections=4,
        header_timeout_s=1.0,
        body_timeout_s=1.0,
        keepalive_timeout_s=1.0,
        max_request_bytes=4096,
    )
    running = RunningServer(settings).start()
    yield running
    running.stop()


def connect(server: RunningServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(
            request("/v2/models/iris_onnx/infer", BODY)
            + request("/v2/models/nope/infer", BODY)
            + request("/v2/health/live", method="GET")
            + request("/v2/models/iris_onnx/infer", BODY)
        )
        answers = read_responses(sock, 4)
    assert [status for status, _ in answers] == [200, 404, 200, 200]
    assert json.loads(answers[0][1])["model_name"] == "iris_onnx"
    assert "error" in json.loads(answers[1][1])


def test_malformed_http_gets_400_and_close(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GARBAGE / HTTP/1.1\r\n\r\n")
        answers = read_responses(sock, 1)
        assert answers and answers[0][0] == 400
        assert "error" in json.loads(answers[0][1])
        assert sock.recv(10) == b"", "connection closed after a malformed request"


def test_expect_continue(server: RunningServer) -> None:
    with connect(server) as sock:
        head = (
            "POST /v2/models/iris_onnx/infer HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(BODY)}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(BODY)
        assert read_responses(sock, 1)[0][0] == 200


def test_chunked_body(server: RunningServer) -> None:
    with connect(server) as sock:
        head = CHUNKED_HEAD
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (BODY[:10], BODY[10:]))
        sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
        assert read_responses(sock, 1)[0][0] == 200


def test_too_large_chunked_body_is_413_and_connection_survives(limited: RunningServer) -> None:
    with connect(limited) as sock:
        head = CHUNKED_HEAD
        big = b"x" * 5000
        sock.sendall(head.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
        sock.sendall(request("/v2/models/iris_onnx/infer", BODY))
        answers = read_responses(sock, 2)
    assert [status for status, _ in answers] == [413, 200]


def test_connection_limit_answers_503(limited: RunningServer) -> None:
    held = [connect(limited) for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(request("/v2/health/live", method="GET"))
            assert read_responses(sock, 1)[0][0] == 200
        with connect(limited) as extra:
            answers = read_responses(extra, 1)
            assert answers[0][0] == 503
    finally:
        for sock in held:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def test_slow_loris_client_is_cut_off(limited: RunningServer) -> None:
    with connect(limited) as slow:
        slow.sendall(b"POST /v2/models/iris_onnx/infer HTTP/1.1\r\n")
        started = time.monotonic()
        try:
            while not _closed(slow):  # one header byte at a time, never finishing
                slow.sendall(b"X")
                time.sleep(0.2)
                assert time.monotonic() - started < 5, "a slow-loris client was not cut off"
        except ConnectionError:
            pass
        assert time.monotonic() - started >= 0.9, "cut off only after the header timeout"


def test_idle_keepalive_connection_is_closed(limited: RunningServer) -> None:
    with connect(limited) as idle:
        idle.sendall(request("/v2/health/live", method="GET"))
        assert read_responses(idle, 1)[0][0] == 200
        idle.settimeout(5)
        started = time.monotonic()
        assert idle.recv(10) == b""
        assert time.monotonic() - started < 4
