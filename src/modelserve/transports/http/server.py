"""A small HTTP/1.1 server on httptools, made for the V2 REST API.

For models that need 5-100 µs, the server's own overhead is the latency, so this protocol does
the least it can: it parses with httptools (llhttp), hands a whole ``HttpRequest`` to the
application's ``handle`` (the V2 REST API: rest.py) and writes the ``Reply`` in one
``transport.write``.

What it guarantees:
- keep-alive and pipelining (requests on one connection are answered in order);
- ``HEAD`` gets the status and headers the application gives, never a body;
- a request asking for a protocol upgrade (``Upgrade: h2c``, ``websocket``) is answered over
  HTTP/1.1 as if it had not asked; what follows it on the connection is parsed as HTTP/1.1;
- a body over ``max_request_bytes`` is answered 413 without being buffered (the rest of it is
  discarded, so the connection stays usable);
- slow clients cannot hold a connection: the headers must arrive within ``header_timeout_s``,
  the body within ``body_timeout_s``, and an idle keep-alive connection is closed after
  ``keepalive_timeout_s``;
- at most ``max_connections`` connections: the next one gets 503 and is closed;
- malformed HTTP gets 400 and the connection is closed, after the valid requests before it on
  the connection were answered in order; errors are always ``{"error": ...}``;
- the answers the HTTP layer gives itself (400, 413, 431, the connection limit's 503) carry an
  ``x-request-id`` and are counted and logged by the ``RejectionObserver`` (observability);
- on shutdown, idle connections close at once and busy ones after their current response.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, cast
from urllib.parse import unquote

import httptools

from modelserve.errors import (
    HeadersTooLarge,
    InvalidArgument,
    PayloadTooLarge,
    ServerError,
    Unavailable,
)
from modelserve.transports.http.messages import (
    HttpRequest,
    Reply,
    check_content_length,
    error_reply,
    too_large_message,
)

log = logging.getLogger("modelserve.http")


class HttpApp(Protocol):
    """What the server hands each parsed request to; ``handle`` never raises."""

    async def handle(self, request: HttpRequest) -> Reply: ...


class RejectionObserver(Protocol):
    """Sees each answer the HTTP layer gives itself, without the application (observability)."""

    def http_rejected(self, method: str, target: str, request_id: str | None, status: int) -> str:
        """Count and log one; ``request_id`` is the client's ``x-request-id`` when it sent one.
        Returns the request id the answer carries."""
        ...


_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_PIPELINED = 32
"""Requests parsed ahead on one connection before reading pauses."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line plus headers; more is answered 431 and the connection closed."""
MAX_LOGGED_TARGET = 256
"""Characters of a rejected request's target that reach the access log."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_request_bytes: int = 64 * 1024 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 30.0
    max_connections: int = 1000


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request the HTTP layer answers itself, with what is known of it."""

    error: ServerError
    method: str = "-"
    target: str = "-"
    request_id: str | None = None


def encode_reply(reply: Reply, keep_alive: bool, head: bool = False) -> bytes:
    """The bytes of an answer; ``head``: the answer to a HEAD request, which has the length of
    the body it would have had, and no body."""
    lines = [_STATUS_LINES.get(reply.status) or f"HTTP/1.1 {reply.status} \r\n".encode()]
    for name, value in reply.headers:
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"content-length: " + str(len(reply.body)).encode() + b"\r\n")
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(reply.body)
    return b"".join(lines)


def _loggable(raw: str) -> str:
    """A client-sent string fit for a log line: printable ASCII, bounded."""
    text = "".join(c if c.isascii() and c.isprintable() else "?" for c in raw[:MAX_LOGGED_TARGET])
    return text or "-"


def _declares_body(headers: dict[str, str]) -> bool:
    if "transfer-encoding" in headers:
        return True
    try:
        return int(headers.get("content-length") or 0) > 0
    except ValueError:
        return True


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self.deadline = 0.0
        """loop.time() after which the connection is closed unless it is busy; 0 = none. The
        server's reaper checks it twice a second: cheaper than a timer per request."""
        # the request being parsed
        self._url = b""
        self._head_bytes = 0
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._rejected: ServerError | None = None
        self._answered = False
        """The request's answer was decided and queued from its headers alone."""
        # an upgrade request's body, which llhttp leaves to the caller: (request, keep-alive),
        # and the bytes of it still to come
        self._held: tuple[HttpRequest, bool] | None = None
        self._held_left = 0
        # requests parsed and waiting to be answered, in order
        self._pending: deque[tuple[HttpRequest | Rejected, bool]] = deque()
        self._busy = False
        self._closing = False
        self._failed = False
        """A request could not be parsed: nothing more is read; close once it is answered."""
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()

    # ---- connection ------------------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's transports are not subclasses
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self._server.connections) >= self._limits.max_connections:
            refused = Rejected(Unavailable("too many connections; try again later"))
            reply = self._rejection_reply(refused)
            reply.headers.append((b"retry-after", b"1"))
            transport.write(encode_reply(reply, keep_alive=False))
            transport.close()
            return
        self._server.connections.add(self)
        self._arm(self._limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._disarm()
        self._closing = True
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return  # the bytes after a request that could not be parsed mean nothing
        if self._held is not None:
            data = self._take_held_body(data)
        while data:
            try:
                self._parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as exc:
                # The request is complete; it is answered over HTTP/1.1 as if it had not asked
                # to switch protocols, so a client that follows the protocol waits for that
                # answer and goes on in HTTP/1.1: keep parsing what comes next as HTTP/1.1.
                data = data[int(exc.args[0]) :]
                if self._failed:
                    return
                if self._held is not None:
                    data = self._take_held_body(data)
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                self._fail(cause if isinstance(cause, ServerError) else InvalidArgument(str(exc)))
                return
            except httptools.HttpParserError as exc:
                self._fail(InvalidArgument(f"malformed HTTP request: {exc}"))
                return

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def shutdown(self) -> None:
        """Close now when idle, else after the response in progress."""
        self._closing = True
        if not self._busy and not self._pending and self._transport is not None:
            self._transport.close()

    # ---- timers ----------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self.deadline = self._loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = 0.0

    def expire(self, now: float) -> None:
        """Close the connection when its deadline passed while it was not busy."""
        if self.deadline and now > self.deadline and not self._busy:
            self.deadline = 0.0
            if self._transport is not None:
                self._transport.close()

    # ---- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._head_bytes = 0
        self._headers = {}
        self._chunks = []
        self._size = 0
        self._rejected = None
        self._answered = False
        if not self._busy:
            self._arm(self._limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadersTooLarge(f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        try:
            check_content_length(
                self._headers.get("content-length"), self._limits.max_request_bytes
            )
        except ServerError as exc:
            self._rejected = exc
        expects = self._headers.get("expect", "").lower() == "100-continue"
        if self._rejected is not None:
            if expects:
                raise self._rejected  # answer and close: the client waits before sending it
            # Answer now, not after the body, which is read and discarded meanwhile so that the
            # connection stays usable.
            keep_alive = self._parser.should_keep_alive() and not self._parser.should_upgrade()
            self._enqueue(self._rejection(self._rejected), keep_alive)
            self._answered = True
        elif expects and self._transport is not None:
            self._transport.write(_CONTINUE)
        if not self._busy:
            self._arm(self._limits.body_timeout_s)

    def on_body(self, body: bytes) -> None:
        if self._rejected is not None:
            return  # discard: the answer is already decided
        self._size += len(body)
        if self._size > self._limits.max_request_bytes:
            self._rejected = PayloadTooLarge(too_large_message(self._limits.max_request_bytes))
            self._chunks = []
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._answered:
            self._answered = False
            self._url, self._headers = b"", {}
            if self._parser.should_upgrade():
                self._stop_reading()  # its body is left to us: answer, then close
            return
        keep_alive = self._parser.should_keep_alive()
        method = self._parser.get_method().decode("latin-1")
        item: HttpRequest | Rejected
        if self._rejected is not None:
            item = self._rejection(self._rejected, method)
        else:
            try:
                path = unquote(httptools.parse_url(self._url).path.decode("utf-8"), errors="strict")
            except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
                item = self._rejection(InvalidArgument("malformed request URL"), method)
            else:
                body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                item = HttpRequest(method, path, self._headers, body)
        headers = self._headers
        self._url, self._headers, self._chunks = b"", {}, []
        if self._parser.should_upgrade() and _declares_body(headers):
            # llhttp leaves the body of an upgrade request to the caller (data_received).
            chunked = "transfer-encoding" in headers
            if isinstance(item, HttpRequest) and not chunked:
                self._held = (item, keep_alive)
                self._held_left = int(headers["content-length"])
                return
            if isinstance(item, HttpRequest):
                refusal = InvalidArgument("a chunked body cannot come with a protocol upgrade")
                item = Rejected(
                    refusal, item.method, _loggable(item.path), headers.get("x-request-id")
                )
            self._stop_reading()  # the body cannot be skipped reliably: answer, then close
            keep_alive = False
        self._enqueue(item, keep_alive)

    def _take_held_body(self, data: bytes) -> bytes:
        """Collect the held upgrade request's body from ``data``; returns what follows it."""
        assert self._held is not None
        taken, rest = data[: self._held_left], data[self._held_left :]
        self._chunks.append(taken)
        self._held_left -= len(taken)
        if self._held_left == 0:
            request, keep_alive = self._held
            request.body = b"".join(self._chunks)
            self._held, self._chunks = None, []
            self._enqueue(request, keep_alive)
        return rest

    def _enqueue(self, item: HttpRequest | Rejected, keep_alive: bool) -> None:
        self._pending.append((item, keep_alive))
        if len(self._pending) >= MAX_PIPELINED:
            self._pause_reading()
        if not self._busy:
            self._busy = True
            self._disarm()
            self._loop.create_task(self._answer())

    def _rejection(self, error: ServerError, method: str | None = None) -> Rejected:
        """What is known of the request being parsed, for the answer and the access log."""
        if method is None:
            try:
                method = self._parser.get_method().decode("latin-1")
            except httptools.HttpParserError:
                method = "-"
        target = self._url.split(b"?", 1)[0].decode("latin-1")
        return Rejected(
            error, _loggable(method), _loggable(target), self._headers.get("x-request-id")
        )

    def _rejection_reply(self, rejected: Rejected) -> Reply:
        reply = error_reply(rejected.error)
        request_id = self._server.observer.http_rejected(
            rejected.method, rejected.target, rejected.request_id, reply.status
        )
        reply.headers.append((b"x-request-id", request_id.encode()))
        return reply

    # ---- answering -------------------------------------------------------------------------

    async def _answer(self) -> None:
        """Answer the pending requests in order, one at a time."""
        try:
            while self._pending and self._transport is not None:
                item, keep_alive = self._pending.popleft()
                if isinstance(item, Rejected):
                    reply = self._rejection_reply(item)
                else:
                    reply = await self._app.handle(item)
                if self._closing or (b"connection", b"close") in reply.headers:
                    keep_alive = False
                await self._writable.wait()
                if self._transport.is_closing():
                    return
                self._transport.write(encode_reply(reply, keep_alive, item.method == "HEAD"))
                if not keep_alive:
                    self._transport.close()
                    return
                resume = len(self._pending) < MAX_PIPELINED // 2
                if resume and self._reading_paused and not self._failed:
                    self._transport.resume_reading()
                    self._reading_paused = False
        finally:
            self._busy = False
        if self._transport is not None and not self._transport.is_closing():
            if self._closing:
                self._transport.close()
            else:
                self._arm(self._limits.keepalive_timeout_s)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    def _stop_reading(self) -> None:
        self._failed = True
        self._pause_reading()

    def _fail(self, exc: ServerError) -> None:
        """A request that cannot be parsed: once the requests before it are answered, answer
        it (400, 413, 431) and close the connection; nothing after it is read."""
        if self._failed or self._transport is None or self._transport.is_closing():
            return
        self._stop_reading()
        self._enqueue(self._rejection(exc), keep_alive=False)


class HttpServer:
    """Serves an ``HttpApp`` (the REST API) on a bound socket; ``observer`` sees the answers
    the HTTP layer gives itself."""

    def __init__(
        self,
        app: HttpApp,
        limits: HttpLimits,
        observer: RejectionObserver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.observer = observer
        self.ssl_context = ssl_context
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        factory: Callable[[], HttpProtocol] = lambda: HttpProtocol(self)  # noqa: E731
        self._server = await loop.create_server(
            factory,
            sock=sock,
            ssl=self.ssl_context,
            backlog=2048,
            ssl_handshake_timeout=self.limits.header_timeout_s if self.ssl_context else None,
        )
        self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        """Close connections whose header, body or keep-alive deadline passed."""
        loop = asyncio.get_running_loop()
        tick = min(0.5, self.limits.header_timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for connection in list(self.connections):
                connection.expire(now)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, close idle connections, let busy ones finish (bounded)."""
        if self._server is not None:
            self._server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        for connection in list(self.connections):
            connection.shutdown()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
