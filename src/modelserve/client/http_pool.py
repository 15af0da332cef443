"""``Client``'s REST transport: HTTP/1.1 on a pool of keep-alive connections, the answers parsed
by httptools (llhttp, the parser the server uses), safe to share between threads.

Why not httpx here (``AsyncClient`` uses it) nor ``http.client``: measured on iris_onnx, one
request after another, httpx's sync client spends two to three times tritonclient's CPU per
request in its request and URL models and h11, ``http.client`` about as much as tritonclient in
its email-based header parsing; writing the request in one ``sendall`` and feeding the answer to
httptools costs a sixth of that (docs/client.md, "Speed"). What the pool does: reuse a
connection without handing it to two threads at once; drop a connection the server closed while
it sat idle before using it again (so a request is never lost to a stale socket); TCP_NODELAY;
TLS with the client's context and SNI; the timeout on connect and on every read and write.
"""

from __future__ import annotations

import queue
import select
import socket
import ssl
import threading
from typing import Any, TypeVar

import httptools

from modelserve.client.calls import Call
from modelserve.client.errors import ClientError, ConnectionFailedError, DeadlineError
from modelserve.client.rest import (
    HttpAnswer,
    HttpCall,
    HttpOptions,
    as_http_call,
    finish,
    tls_cause,
    tls_failure,
)

__all__ = ["HttpTransport"]

T = TypeVar("T")
READ_SIZE = 256 * 1024
WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Answer:
    """httptools callbacks: the status line is the parser's, the rest lands here."""

    __slots__ = ("body", "complete", "headers", "headers_complete", "keep_alive", "parser")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.headers_complete = False
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        # asked now: once the message is complete the parser has moved on to the next one
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


def _dropped(sock: socket.socket) -> bool:
    """The server closed this idle connection (it is readable: EOF or stray bytes). poll where
    the platform has it: ``select.select`` refuses descriptors past FD_SETSIZE (1024), which an
    application with many files open reaches, and every connection would look dropped."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Closed(Exception):
    """The server closed the connection before its answer was complete."""


class HttpTransport:
    def __init__(self, options: HttpOptions) -> None:
        endpoint = options.endpoint
        self._options = options
        self._where = endpoint.base_url
        self._address = (endpoint.host, endpoint.port or (443 if endpoint.tls else 80))
        self._prefix = endpoint.path
        self._context: ssl.SSLContext | None = (
            endpoint.tls.ssl_context() if endpoint.tls is not None else None
        )
        head = f"host: {endpoint.address}\r\nuser-agent: modelserve-client\r\n"
        if options.token:
            head += f"authorization: Bearer {options.token}\r\n"
        self._fixed_headers = head
        self._idle: queue.LifoQueue[socket.socket] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._closed = False

    # ---- connections -------------------------------------------------------------------------

    def _connect(self, call: HttpCall[Any]) -> socket.socket:
        """An idle connection still open, else a new one (connected here, so that a failure
        is known to have happened before anything was sent)."""
        while True:
            try:
                idle = self._idle.get_nowait()
            except queue.Empty:
                break
            if not _dropped(idle):
                return idle
            idle.close()
        timeout = self._options.timeout
        try:
            sock = socket.create_connection(self._address, timeout=timeout)
        except TimeoutError:
            raise ConnectionFailedError(
                f"{call.what}: cannot connect to {self._where}: no answer within {timeout:g} s",
                request_id=call.request_id,
            ) from None
        except OSError as exc:
            raise ConnectionFailedError(
                f"{call.what}: cannot connect to {self._where}: {exc.strerror or exc}",
                request_id=call.request_id,
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._context is None:
            return sock
        try:
            return self._context.wrap_socket(sock, server_hostname=self._address[0])
        except ssl.SSLError as exc:
            sock.close()
            raise tls_failure(call, exc, self._where) from None
        except OSError as exc:
            sock.close()
            raise ConnectionFailedError(
                f"{call.what}: TLS with {self._where} failed: {exc.strerror or exc}",
                request_id=call.request_id,
            ) from None

    def _release(self, sock: socket.socket, keep: bool) -> None:
        if keep and not self._closed and self._idle.qsize() < self._options.max_connections:
            self._idle.put(sock)
        else:
            sock.close()

    # ---- one request -------------------------------------------------------------------------

    def _request(self, call: HttpCall[Any]) -> bytes:
        body = call.body
        if body is None and call.method in WITH_BODY:
            body = b""
        lines = [
            f"{call.method} {self._prefix}{call.path} HTTP/1.1\r\n",
            self._fixed_headers,
            f"x-request-id: {call.request_id}\r\n",
        ]
        lines += [f"{name}: {value}\r\n" for name, value in call.headers.items()]
        if body is not None:
            lines.append(f"content-length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        return head + body if body else head

    def _exchange(self, sock: socket.socket, request: bytes) -> tuple[int, _Answer, bool]:
        """Send ``request``, read the whole answer: (status, answer, keep the connection)."""
        sock.sendall(request)
        answer = _Answer()
        parser = answer.parser
        while not answer.complete:
            data = sock.recv(READ_SIZE)
            if not data:
                delimited = "content-length" not in answer.headers and (
                    "chunked" not in answer.headers.get("transfer-encoding", "")
                )
                if answer.headers_complete and delimited:
                    return parser.get_status_code(), answer, False  # ended by the close
                raise _Closed()
            parser.feed_data(data)
        return parser.get_status_code(), answer, answer.keep_alive

    def call(self, call: Call[T]) -> T:
        http_call = as_http_call(call)
        sock = self._connect(http_call)
        try:
            status, answer, keep = self._exchange(sock, self._request(http_call))
        except (OSError, _Closed, httptools.HttpParserError) as exc:
            sock.close()
            raise self._failure(http_call, exc) from None
        self._release(sock, keep)
        body = answer.body[0] if len(answer.body) == 1 else b"".join(answer.body)
        return finish(http_call, HttpAnswer(status, answer.headers, body), self._where)

    def _failure(self, call: HttpCall[Any], exc: BaseException) -> ClientError:
        tls = tls_cause(exc)
        if tls is not None:
            return tls_failure(call, tls, self._where)
        if isinstance(exc, TimeoutError):
            return DeadlineError(
                f"{call.what}: no answer from {self._where} within {self._options.timeout:g} s",
                request_id=call.request_id,
            )
        if isinstance(exc, httptools.HttpParserError):
            return ClientError(
                f"{call.what}: {self._where} did not answer in HTTP/1.1: {exc}",
                request_id=call.request_id,
            )
        if isinstance(exc, _Closed):
            detail = "the server closed the connection before answering"
        else:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return ConnectionFailedError(
            f"{call.what}: the connection to {self._where} failed: {detail}",
            sent=True,
            request_id=call.request_id,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while True:
                try:
                    self._idle.get_nowait().close()
                except queue.Empty:
                    break
