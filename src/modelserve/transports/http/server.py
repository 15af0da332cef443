"""A small HTTP/1.1 server on httptools, made for the V2 REST API.

Why not an ASGI server: for models that need 5-100 µs, the server's own overhead is the latency,
and the ASGI message dicts, middleware and per-event awaits cost more than the model. This
protocol parses with httptools (llhttp), hands a whole ``HttpRequest`` to the application's
``handle`` (the V2 REST API: rest.py) and writes the ``Reply`` in one ``transport.write``.

What it guarantees:
- keep-alive and pipelining (requests on one connection are answered in order);
- a body over ``max_request_bytes`` is answered 413 without being buffered (the rest of it is
  discarded, so the connection stays usable);
- slow clients cannot hold a connection: the headers must arrive within ``header_timeout_s``,
  the body within ``body_timeout_s``, and an idle keep-alive connection is closed after
  ``keepalive_timeout_s``;
- at most ``max_connections`` connections: the next one gets 503 and is closed;
- malformed HTTP gets 400 and the connection is closed; errors are always ``{"error": ...}``;
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


_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_PIPELINED = 32
"""Requests parsed ahead on one connection before reading pauses."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line plus headers; more is answered 431 and the connection closed."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_request_bytes: int = 64 * 1024 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 30.0
    max_connections: int = 1000


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    lines = [_STATUS_LINES.get(reply.status) or f"HTTP/1.1 {reply.status} \r\n".encode()]
    for name, value in reply.headers:
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"content-length: " + str(len(reply.body)).encode() + b"\r\n")
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    lines.append(reply.body)
    return b"".join(lines)


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
        # requests parsed and waiting to be answered, in order
        self._pending: deque[tuple[HttpRequest | ServerError, bool]] = deque()
        self._busy = False
        self._closing = False
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
            reply = error_reply(Unavailable("too many connections; try again later"))
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
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidArgument("protocol upgrades are not supported"))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HeadersTooLarge) else InvalidArgument(str(exc)))
        except httptools.HttpParserError as exc:
            self._fail(InvalidArgument(f"malformed HTTP request: {exc}"))

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
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport:
            if self._rejected is not None:
                self._fail(self._rejected)  # answer now instead of waiting for the body
                return
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
        keep_alive = self._parser.should_keep_alive()
        item: HttpRequest | ServerError
        if self._rejected is not None:
            item = self._rejected
        else:
            try:
                path = unquote(httptools.parse_url(self._url).path.decode("utf-8"), errors="strict")
            except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
                item = InvalidArgument("malformed request URL")
            else:
                body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                method = self._parser.get_method().decode("latin-1")
                item = HttpRequest(method, path, self._headers, body)
        self._chunks = []
        self._pending.append((item, keep_alive))
        if len(self._pending) >= MAX_PIPELINED and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True
        if not self._busy:
            self._busy = True
            self._disarm()
            self._loop.create_task(self._answer())

    # ---- answering -------------------------------------------------------------------------

    async def _answer(self) -> None:
        """Answer the pending requests in order, one at a time."""
        try:
            while self._pending and self._transport is not None:
                item, keep_alive = self._pending.popleft()
                if isinstance(item, ServerError):
                    reply = error_reply(item)
                else:
                    reply = await self._app.handle(item)
                if self._closing or (b"connection", b"close") in reply.headers:
                    keep_alive = False
                await self._writable.wait()
                if self._transport.is_closing():
                    return
                self._transport.write(encode_reply(reply, keep_alive))
                if not keep_alive:
                    self._transport.close()
                    return
                if self._reading_paused and len(self._pending) < MAX_PIPELINED // 2:
                    self._transport.resume_reading()
                    self._reading_paused = False
        finally:
            self._busy = False
        if self._transport is not None and not self._transport.is_closing():
            if self._closing:
                self._transport.close()
            else:
                self._arm(self._limits.keepalive_timeout_s)

    def _fail(self, exc: ServerError) -> None:
        """A request that cannot be parsed: answer 400/413 and close the connection."""
        if self._transport is None or self._transport.is_closing():
            return
        if self._busy or self._pending:
            self._transport.close()  # answers are still owed in order: just close
            return
        self._transport.write(encode_reply(error_reply(exc), keep_alive=False))
        self._transport.close()


class HttpServer:
    """Serves an ``HttpApp`` (the REST API) on a bound socket."""

    def __init__(
        self,
        app: HttpApp,
        limits: HttpLimits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
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
