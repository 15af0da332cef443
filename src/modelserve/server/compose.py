"""Composition root: builds every component from Settings (the transport-free ones in
core.py), then start -> serve -> stop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from modelserve.config.settings import Settings
from modelserve.security.auth import Authenticator, exposure_warning
from modelserve.security.tls import server_ssl_context
from modelserve.server.core import ServingCore
from modelserve.transports.grpc.service import GrpcTransport
from modelserve.transports.http.rest import RestApp
from modelserve.transports.http.server import HttpLimits, HttpServer
from modelserve.transports.streams.service import StreamSources

if TYPE_CHECKING:
    from modelserve.transports.http.dashboard import Dashboard

log = logging.getLogger("modelserve.server")

GRPC_GRACE_S = 5.0
"""Seconds running gRPC calls (open streams included) get to finish when the server stops."""


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket; ``reuse_port`` lets several processes share the port (the kernel
    spreads connections over them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Server:
    """One modelserve process: the serving core (repository, dataplane…) and the transports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.core = ServingCore(settings)
        self.executor = self.core.executor
        self.remote = self.core.remote
        self.repository = self.core.repository
        self.lifecycle = self.core.lifecycle
        self.telemetry = self.core.telemetry
        self.router = self.core.router
        self.dataplane = self.core.dataplane
        self.events = self.core.events
        self.payloads = self.core.payloads
        self.monitoring = self.core.monitoring
        self.auth = (
            Authenticator(settings.auth_tokens, settings.auth_health)
            if settings.auth_tokens
            else None
        )
        observability = self.telemetry.observability
        self.dashboard: Dashboard | None = None
        if settings.ui:  # its modules only when it is on
            from modelserve.transports.http.dashboard import Dashboard
            from modelserve.transports.http.dashboard_data import DashboardData

            data = DashboardData(
                self.dataplane,
                observability,
                self.payloads,
                settings.model_control_mode,
                monitoring=self.monitoring,
                experiments=self.core.experiments,
                shadow=self.core.shadow,
            )
            self.dashboard = Dashboard(data, self.dataplane, self.auth)
        self.rest_app = RestApp(
            self.dataplane,
            observability,
            auth=self.auth,
            max_tensor_elements=settings.max_tensor_elements,
            dashboard=self.dashboard,
            monitoring=self.core.monitoring,
            experiments=self.core.experiments,
            shadow=self.core.shadow,
        )
        self.grpc = GrpcTransport(
            self.dataplane,
            observability,
            settings.grpc_max_message_bytes,
            auth=self.auth,
            tls=server_ssl_context(settings, alpn=("h2",)),
            max_tensor_elements=settings.max_tensor_elements,
        )
        self.lifecycle.listeners.append(self.grpc.refresh_health)
        self.http = HttpServer(
            self.rest_app,
            HttpLimits(
                max_request_bytes=settings.max_request_bytes,
                header_timeout_s=settings.header_timeout_s,
                body_timeout_s=settings.body_timeout_s,
                keepalive_timeout_s=settings.keepalive_timeout_s,
                max_connections=settings.max_connections,
            ),
            observability,
            ssl_context=server_ssl_context(settings),
        )
        observability.connections.follow(lambda: self.http.open_connections)
        consumer = f"modelserve-{socket.gethostname()}"
        self.streams = StreamSources(
            settings.stream_source,
            self.dataplane,
            observability,
            f"{consumer}.{os.getpid()}" if settings.reuse_port else consumer,
            settings.max_tensor_elements,
        )
        self._http_socket: socket.socket | None = None

    @property
    def http_port(self) -> int:
        if self._http_socket is None:
            raise RuntimeError("server not started")
        return int(self._http_socket.getsockname()[1])

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    async def start(self) -> None:
        """Start answering (live, not ready), load the models, then turn ready. A process
        that shares its ports with others (``reuse_port``: a ``--workers`` worker) binds only
        once ready: the kernel hands every listening process its share of new connections,
        and those would get 503 from a worker still loading while another could serve them.
        A start that fails (a taken port, a stream source that cannot connect) releases what
        it had opened (the listening sockets, the models, the model threads) before raising."""
        warning = exposure_warning(
            self.settings.host, self.auth is not None, self.settings.model_control_mode
        )
        if warning:
            log.warning("%s", warning)
        try:
            await self.telemetry.start()
            if not self.settings.reuse_port:
                await self._listen()
            await self.core.load_models()
            if self.settings.reuse_port:
                await self._listen()
            await self.grpc.refresh_health()
            if self.settings.stream_source:
                loaded = sorted({model.name for model in self.repository.loaded_models()})
                await self.streams.start(loaded)
        except BaseException:
            await self._release()
            raise
        log.info("server ready with %d model(s)", len(list(self.repository.names())))

    async def _release(self) -> None:
        """After a failed start: close what it opened, each step whatever the others do (the
        start's own error is the one raised)."""
        self.dataplane.set_ready(False)
        steps: list[Callable[[], Awaitable[object]]] = [
            lambda: self.streams.stop(0),
            lambda: self.grpc.stop(0),
            lambda: self.http.shutdown(timeout_s=0),
            self.core.close,
        ]
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("releasing a server that failed to start")
        if self._http_socket is not None:
            self._http_socket.close()

    async def _listen(self) -> None:
        """Bind the HTTP and gRPC ports and take connections."""
        self._http_socket = bind_socket(
            self.settings.host, self.settings.http_port, self.settings.reuse_port
        )
        await self.http.start(self._http_socket)
        scheme = "https" if self.http.ssl_context is not None else "http"
        log.info("HTTP listening on %s://%s:%d", scheme, self.settings.host, self.http_port)
        await self.grpc.start(
            self.settings.host, self.settings.grpc_port, reuse_port=self.settings.reuse_port
        )
        log.info("gRPC listening on %s:%d", self.settings.host, self.grpc_port)

    async def stop(self) -> bool:
        """Graceful shutdown: not-ready at once; keep serving for the drain delay; then refuse
        new work cleanly while queued and running requests complete (bounded by the shutdown
        timeout); then close the transports and unload the models. The event loop is never
        blocked. False when model threads were still busy at the end (a ``predict`` that does
        not return): they hold the process at exit, so the caller should exit at once."""
        self.dataplane.set_ready(False)
        await self.grpc.refresh_health()
        if self.settings.drain_delay_s > 0:
            await asyncio.sleep(self.settings.drain_delay_s)
        # the stream sources answer what they took while the dataplane still serves
        await self.streams.stop(self.settings.shutdown_timeout_s)
        await self.core.drain()
        await self.grpc.stop(GRPC_GRACE_S)
        await self.http.shutdown(timeout_s=5.0)
        if self._http_socket is not None:
            self._http_socket.close()
        return await self.core.close()
