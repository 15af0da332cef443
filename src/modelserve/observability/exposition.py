"""How the metrics leave the process: the text exposition (``render``) and the small listener of
``--metrics-port`` (``MetricsListener``), an asyncio server on the serving event loop that
answers ``GET /metrics`` and nothing else.

With several worker processes (prometheus_client multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``
set before any process imports prometheus_client), ``render`` reads every process's files
through a ``MultiProcessCollector``, so any process answers a scrape with the figures of all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["MetricsListener", "render"]

log = logging.getLogger("modelserve.metrics")

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 10.0

Render = Callable[[str | None], Awaitable[tuple[bytes, str]]]
"""Accept header -> (body, content type)."""


def render(
    registry: CollectorRegistry, multiprocess_dir: str | None, accept: str | None
) -> tuple[bytes, str]:
    """The exposition of ``registry`` (or of every process's files in multiprocess mode), in
    the format the Accept header asks for (Prometheus text by default, or OpenMetrics)."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class MetricsListener:
    """``GET /metrics`` on its own port; one request per connection."""

    def __init__(self, render_metrics: Render) -> None:
        self._render = render_metrics
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metrics listener not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Listen; ``reuse_port`` lets every worker process listen on the same port (any of
        them answers a scrape with the figures of all in multiprocess mode)."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD_BYTES, reuse_port=reuse_port or None
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            status, body, content_type = await self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, body, content_type = 400, b"bad request\n", "text/plain"
        except Exception:
            log.exception("metrics scrape failed")
            status, body, content_type = 500, b"internal error\n", "text/plain"
        start = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        try:
            writer.write(start if head.startswith(b"HEAD ") else start + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, head: bytes) -> tuple[int, bytes, str]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return 400, b"bad request\n", "text/plain"
        method, target, _ = parts
        if target.split("?", 1)[0] != "/metrics":
            return 404, b"not found: try /metrics\n", "text/plain"
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed\n", "text/plain"
        accept = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        body, content_type = await self._render(accept)
        return 200, body, content_type


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}
