"""The HTTP/1.1 layer: pipelining, malformed requests, 100-continue, connection limit, timeouts."""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import RunningServer, Servers

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
def limited(model_repo: Path, serve_module: Servers) -> RunningServer:
    return serve_module(
        model_repo,
        max_connections=4,
        header_timeout_s=1.0,
        body_timeout_s=1.0,
        keepalive_timeout_s=1.0,
        max_request_bytes=4096,
    )


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


class Reader:
    """HTTP/1.1 answers read off a raw socket, one at a time, headers included; an answer to a
    HEAD request has no body, whatever its content-length says."""

    def __init__(self, sock: socket.socket, timeout: float = 10) -> None:
        sock.settimeout(timeout)
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> bool:
        chunk = self._sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def answer(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self._buffer:
            assert self._fill(), f"connection closed; got {self._buffer!r}"
        raw, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers["content-length"])
        while len(self._buffer) < length:
            assert self._fill(), "connection closed in a body"
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed(self) -> bool:
        """True when the server closed the connection with nothing more sent."""
        return not self._buffer and not self._fill()


@pytest.mark.parametrize(
    "path", ["/v2/health/live", "/v2", "/v2/models/iris_onnx", "/metrics", "/openapi.json"]
)
def test_head_is_get_without_body_and_keepalive_stays_in_step(
    server: RunningServer, path: str
) -> None:
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request(path, method="GET"))
        status, headers, body = reader.answer()
        sock.sendall(request(path, method="HEAD") + request("/v2/health/live", method="GET"))
        head_status, head_headers, head_body = reader.answer(head=True)
        assert (head_status, head_body) == (status, b"")
        assert head_headers["content-type"] == headers["content-type"]
        if path != "/metrics":  # the metrics change between two scrapes
            assert int(head_headers["content-length"]) == len(body)
        assert "x-request-id" in head_headers
        status, _, body = reader.answer()
        assert (status, body) == (200, b'{"live":true}')


def test_head_where_get_is_not_allowed_is_405_without_body(server: RunningServer) -> None:
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(
            request("/v2/models/iris_onnx/infer", method="HEAD")
            + request("/v2/health/live", method="GET")
        )
        status, headers, body = reader.answer(head=True)
        assert (status, body) == (405, b"")
        assert int(headers["content-length"]) > 0
        status, _, body = reader.answer()
        assert (status, json.loads(body)) == (200, {"live": True})


@pytest.mark.parametrize(
    "upgrade",
    [
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ],
    ids=["h2c", "websocket"],
)
def test_upgrade_requests_are_answered_over_http11(server: RunningServer, upgrade: str) -> None:
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/v2", method="GET", extra=upgrade))
        status, _, body = reader.answer()
        assert status == 200 and json.loads(body)["name"]
        sock.sendall(request("/v2/models/iris_onnx/infer", BODY, extra=upgrade))
        status, _, body = reader.answer()
        assert status == 200 and json.loads(body)["model_name"] == "iris_onnx"
        # an upgrade request's body in pieces, then more HTTP/1.1 on the same connection
        first = request("/v2/models/iris_onnx/infer", BODY, extra=upgrade)
        sock.sendall(first[:-10])
        time.sleep(0.05)
        sock.sendall(first[-10:] + request("/v2/health/live", method="GET"))
        assert reader.answer()[0] == 200
        assert reader.answer()[2] == b'{"live":true}'


def test_curl_http2_gets_an_answer(server: RunningServer) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed (tests/system/packages.txt)"
    result = subprocess.run(
        [curl, "-sS", "--http2", f"http://{server.url}/v2"], capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"]


def test_valid_pipelined_requests_are_answered_before_the_malformed_one(
    server: RunningServer,
) -> None:
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(
            request("/v2/models/iris_onnx/infer", BODY)
            + request("/v2/health/live", method="GET")
            + b"GARBAGE / HTTP/1.1\r\n\r\n"
        )
        assert reader.answer()[0] == 200
        assert reader.answer()[0] == 200
        status, headers, body = reader.answer()
        assert status == 400 and "error" in json.loads(body)
        assert headers["connection"] == "close"
        assert reader.closed()


def test_body_longer_than_its_content_length(server: RunningServer) -> None:
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/v2/models/iris_onnx/infer", BODY) + b"}}}\r\n\r\n")
        status, _, body = reader.answer()
        assert status == 200 and json.loads(body)["model_name"] == "iris_onnx"
        assert reader.answer()[0] == 400
        assert reader.closed()


def _rejected_counts(server: RunningServer) -> dict[str, float]:
    """modelserve_http_rejected_requests_total by status, from the server's own /metrics."""
    with connect(server) as sock:
        sock.sendall(request("/metrics", method="GET"))
        _, _, body = Reader(sock).answer()
    counts: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("modelserve_http_rejected_requests_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('status="')[1].split('"')[0]] = float(value)
    return counts


def test_http_layer_rejections_carry_a_request_id_and_are_counted(
    limited: RunningServer,
) -> None:
    before = _rejected_counts(limited)
    ids = []
    with connect(limited) as sock:  # malformed
        sock.sendall(b"GARBAGE / HTTP/1.1\r\nX-Request-Id: mine-400\r\n\r\n")
        status, headers, _ = Reader(sock).answer()
        assert status == 400
        ids.append(headers["x-request-id"])
    with connect(limited) as sock:  # declared body over --max-request-bytes
        big = "POST /v2/models/iris_onnx/infer HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine-413\r\n"
        sock.sendall(f"{big}Content-Length: 5000\r\n\r\n".encode())
        status, headers, _ = Reader(sock).answer()
        assert (status, headers["x-request-id"]) == (413, "mine-413")
    with connect(limited) as sock:  # request line and headers over 64 KiB
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, headers, _ = Reader(sock).answer()
        assert status == 431
        ids.append(headers["x-request-id"])
    held = [connect(limited) for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(request("/v2/health/live", method="GET"))
            assert Reader(sock).answer()[0] == 200
        with connect(limited) as extra:  # over --max-connections
            status, headers, _ = Reader(extra).answer()
            assert status == 503
            ids.append(headers["x-request-id"])
    finally:
        for sock in held:
            sock.close()
    assert all(len(rid) == 32 for rid in ids[1:]), ids
    time.sleep(0.2)  # the held connections are closed on the server's side too
    after = _rejected_counts(limited)
    for status_label in ("400", "413", "431", "503"):
        assert after.get(status_label, 0) - before.get(status_label, 0) == 1, (before, after)
