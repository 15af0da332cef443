"""The HTTP/1.1 server on its own: HttpServer and HttpProtocol on a loopback socket, serving a
tiny application that answers with what it received. Keep-alive and pipelining, HEAD, bodies
(whole, chunked, too large), 100-continue, malformed and oversized requests, upgrades, the
header, body and keep-alive timeouts, the connection limit, and shutdown."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import orjson
import pytest

from modelserve.transports.http.messages import HttpRequest, Reply
from modelserve.transports.http.server import MAX_HEAD_BYTES, HttpLimits, HttpServer

LIMITS = HttpLimits(
    max_request_bytes=1024,
    header_timeout_s=0.4,
    body_timeout_s=0.4,
    keepalive_timeout_s=0.4,
    max_connections=3,
)


class EchoApp:
    """Answers each request with its method, path, headers and body; ``/slow/<seconds>``
    answers after that long; ``/close`` asks to close the connection."""

    def __init__(self) -> None:
        self.seen: list[HttpRequest] = []

    async def handle(self, request: HttpRequest) -> Reply:
        self.seen.append(request)
        if request.path.startswith("/slow/"):
            await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
        document = {
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
            "body": request.body.decode("latin-1"),
        }
        reply = Reply(200, orjson.dumps(document))
        if request.path == "/close":
            reply.headers.append((b"connection", b"close"))
        return reply


class Rejections:
    """The server's RejectionObserver: records the answers the HTTP layer gave itself."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None, int]] = []

    def http_rejected(self, method: str, target: str, request_id: str | None, status: int) -> str:
        self.seen.append((method, target, request_id, status))
        return request_id or f"generated-{len(self.seen)}"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        document = orjson.loads(self.body)
        assert isinstance(document, dict)
        return document


class Connection:
    """A raw client connection that reads answers one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def answer(self, head: bool = False, timeout: float = 5) -> Answer:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), f"not at the start of an answer: {raw!r}"
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers["content-length"])
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return Answer(int(lines[0].split()[1]), headers, body)

    async def closed(self, timeout: float = 5) -> bool:
        """True once the server closed the connection with nothing more to read."""
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    def close(self) -> None:
        self.writer.close()


def request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


@dataclass
class Running:
    server: HttpServer
    app: EchoApp
    rejections: Rejections
    port: int
    connections: list[Connection]

    async def connect(self) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        made = Connection(reader, writer)
        self.connections.append(made)
        return made


@pytest.fixture
async def http() -> AsyncIterator[Running]:
    app, rejections = EchoApp(), Rejections()
    server = HttpServer(app, LIMITS, rejections)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    await server.start(sock)
    running = Running(server, app, rejections, sock.getsockname()[1], [])
    yield running
    for connection in running.connections:
        connection.close()
    await server.shutdown(timeout_s=1)
    sock.close()


# ---- requests and answers ----------------------------------------------------------------------


async def test_keep_alive_answers_every_request_on_one_connection(http: Running) -> None:
    connection = await http.connect()
    connection.send(request("GET", "/first?x=1", extra="X-Thing: One\r\n"))
    first = await connection.answer()
    assert first.status == 200 and "connection" not in first.headers
    assert int(first.headers["content-length"]) == len(first.body)
    assert first.json()["method"] == "GET" and first.json()["path"] == "/first"
    assert first.json()["headers"]["x-thing"] == "One"  # type: ignore[index]
    connection.send(request("POST", "/second", b'{"a": 1}'))
    second = await connection.answer()
    assert second.json()["body"] == '{"a": 1}'
    assert [r.path for r in http.app.seen] == ["/first", "/second"]


async def test_pipelined_requests_are_answered_in_order(http: Running) -> None:
    connection = await http.connect()
    connection.send(
        request("GET", "/slow/0.2") + request("POST", "/slow/0", b"x") + request("GET", "/last")
    )
    paths = [(await connection.answer()).json()["path"] for _ in range(3)]
    assert paths == ["/slow/0.2", "/slow/0", "/last"]


async def test_head_has_the_length_of_the_body_it_does_not_send(http: Running) -> None:
    connection = await http.connect()
    connection.send(request("GET", "/same"))
    get = await connection.answer()
    connection.send(request("HEAD", "/same") + request("GET", "/next"))
    head = await connection.answer(head=True)
    assert (head.status, head.body) == (200, b"")
    assert int(head.headers["content-length"]) == len(get.body.replace(b"GET", b"HEAD"))
    assert (await connection.answer()).json()["path"] == "/next", "still in step after HEAD"


async def test_chunked_bodies_and_encoded_paths_reach_the_app_whole(http: Running) -> None:
    connection = await http.connect()
    chunked = (
        b"POST /a%20b/%C3%A9 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    connection.send(chunked)
    answer = (await connection.answer()).json()
    assert answer["path"] == "/a b/é" and answer["body"] == "hello world"


async def test_a_url_that_does_not_decode_is_400(http: Running) -> None:
    connection = await http.connect()
    connection.send(request("GET", "/%ff%fe", extra="X-Request-Id: mine\r\n"))
    answer = await connection.answer()
    assert answer.status == 400 and answer.json() == {"error": "malformed request URL"}
    assert answer.headers["x-request-id"] == "mine"
    assert http.rejections.seen == [("GET", "/%ff%fe", "mine", 400)]
    assert http.app.seen == []


# ---- bodies over the limit, 100-continue ---------------------------------------------------------


async def test_a_declared_body_over_the_limit_is_413_and_the_connection_goes_on(
    http: Running,
) -> None:
    connection = await http.connect()
    connection.send(request("POST", "/big", b"x" * 2000))
    refused = await connection.answer()
    assert refused.status == 413 and "exceeds the limit of 1024 bytes" in str(refused.json())
    connection.send(request("GET", "/after"))
    assert (await connection.answer()).json()["path"] == "/after"
    assert [r.path for r in http.app.seen] == ["/after"], "the app never saw the big one"
    assert [(m, t, s) for m, t, _, s in http.rejections.seen] == [("POST", "/big", 413)]


async def test_a_chunked_body_over_the_limit_is_413_without_being_kept(http: Running) -> None:
    connection = await http.connect()
    chunk = b"400\r\n" + b"y" * 1024 + b"\r\n"
    connection.send(
        b"POST /chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk * 2
        + b"0\r\n\r\n"
        + request("GET", "/after")
    )
    assert (await connection.answer()).status == 413
    assert (await connection.answer()).json()["path"] == "/after"


async def test_expect_100_continue(http: Running) -> None:
    connection = await http.connect()
    connection.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(connection.reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.send(b"data")
    assert (await connection.answer()).json()["body"] == "data"
    too_big = await http.connect()
    too_big.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = await too_big.answer()
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert await too_big.closed()


# ---- requests that cannot be parsed ----------------------------------------------------------


async def test_valid_requests_are_answered_before_the_malformed_one(http: Running) -> None:
    connection = await http.connect()
    connection.send(request("GET", "/ok") + b"NOT HTTP AT ALL\r\n\r\n" + request("GET", "/x"))
    assert (await connection.answer()).json()["path"] == "/ok"
    refused = await connection.answer()
    assert refused.status == 400 and "malformed HTTP request" in str(refused.json())
    assert refused.headers["connection"] == "close" and refused.headers["x-request-id"]
    assert await connection.closed(), "nothing after the malformed request is read"
    assert [r.path for r in http.app.seen] == ["/ok"]


async def test_headers_over_64_kib_are_431(http: Running) -> None:
    connection = await http.connect()
    connection.send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n")
    answer = await connection.answer()
    assert answer.status == 431 and answer.headers["connection"] == "close"
    assert await connection.closed()


@pytest.mark.parametrize("upgrade", ["h2c", "websocket"])
async def test_upgrade_requests_are_answered_over_http_1_1(http: Running, upgrade: str) -> None:
    connection = await http.connect()
    asks = f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n"
    connection.send(request("POST", "/up", b"body", extra=asks) + request("GET", "/then"))
    first = await connection.answer()
    assert first.status == 200 and first.json()["body"] == "body"
    assert (await connection.answer()).json()["path"] == "/then"


# ---- slow clients, idle connections, the connection limit ------------------------------------


async def test_slow_headers_and_slow_bodies_are_cut_off(http: Running) -> None:
    headers = await http.connect()
    headers.send(b"GET /never HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
    body = await http.connect()
    body.send(b"POST /never HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    assert await headers.closed(timeout=3) and await body.closed(timeout=3)
    assert http.app.seen == []


async def test_an_idle_keep_alive_connection_is_closed_but_a_busy_one_is_not(
    http: Running,
) -> None:
    busy = await http.connect()
    busy.send(request("GET", "/slow/1.0"))  # longer than every timeout
    idle = await http.connect()
    idle.send(request("GET", "/once"))
    assert (await idle.answer()).status == 200
    assert await idle.closed(timeout=3)
    assert (await busy.answer()).json()["path"] == "/slow/1.0"


async def test_the_connection_over_the_limit_gets_503(http: Running) -> None:
    held = [await http.connect() for _ in range(LIMITS.max_connections)]
    for connection in held:
        connection.send(request("GET", "/hello"))
        assert (await connection.answer()).status == 200
    extra = await http.connect()
    refused = await extra.answer()
    assert refused.status == 503 and refused.headers["retry-after"] == "1"
    assert refused.headers["x-request-id"].startswith("generated-")
    assert await extra.closed()
    assert http.server.open_connections == LIMITS.max_connections
    held[0].close()
    await asyncio.sleep(0.1)
    again = await http.connect()
    again.send(request("GET", "/room"))
    assert (await again.answer()).status == 200


async def test_the_app_can_close_the_connection(http: Running) -> None:
    connection = await http.connect()
    connection.send(request("GET", "/close") + request("GET", "/not-read"))
    answer = await connection.answer()
    assert answer.headers["connection"] == "close"
    assert await connection.closed()
    assert [r.path for r in http.app.seen] == ["/close"]


# ---- shutdown --------------------------------------------------------------------------------


async def test_shutdown_closes_idle_connections_and_lets_busy_ones_finish(http: Running) -> None:
    idle = await http.connect()
    idle.send(request("GET", "/once"))
    await idle.answer()
    busy = await http.connect()
    busy.send(request("GET", "/slow/0.3"))
    await asyncio.sleep(0.05)
    stopping: Awaitable[None] = asyncio.ensure_future(http.server.shutdown(timeout_s=5))
    assert await idle.closed(timeout=1)
    last = await busy.answer()
    assert last.json()["path"] == "/slow/0.3" and last.headers["connection"] == "close"
    await stopping
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", http.port)
