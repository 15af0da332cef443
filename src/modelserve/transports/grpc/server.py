"""The gRPC server: gRPC over HTTP/2 served by modelserve itself on the running event loop,
as the REST side serves HTTP/1.1 on httptools.

grpc.aio spent about three quarters of a call's server CPU in its own layers (the C core's
completion queue polled from another thread, each step of a call a round trip into the loop);
here a call is one ``data_received``, one task and one ``write``. The interface is the part of
``grpc.aio.Server`` modelserve uses, with grpcio's own handler types: generic and registered
method handlers (``grpc.RpcMethodHandler``), ``grpc.aio.ServerInterceptor``s, so generated
servicers and grpcio's health and reflection services run unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import Any, NamedTuple

import grpc

from modelserve.transports.grpc.calls import Call, Metadata
from modelserve.transports.grpc.connection import GrpcConnection

__all__ = ["GrpcServer"]


class _CallDetails(NamedTuple):
    """``grpc.HandlerCallDetails`` for interceptors and generic handlers."""

    method: str
    invocation_metadata: Metadata


class GrpcServer:
    """Serves the registered gRPC methods on one listening socket."""

    def __init__(
        self,
        *,
        interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
        max_receive_message_length: int = 4 << 20,
        max_send_message_length: int = 4 << 20,
    ) -> None:
        # hpack logs every header it decodes at DEBUG, tokens included: never
        logging.getLogger("hpack").setLevel(logging.WARNING)
        self.max_receive = max_receive_message_length
        self.max_send = max_send_message_length
        self._interceptors = tuple(interceptors)
        self._registered: dict[str, grpc.RpcMethodHandler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[GrpcConnection] = set()

    # ---- handlers ---------------------------------------------------------------------------

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for method, handler in handlers.items():
            self._registered[f"/{service}/{method}"] = handler

    def handler(self, method: str) -> grpc.RpcMethodHandler | None:
        """The handler of ``method`` when no interceptor is in the way (None: ask
        ``intercepted_handler``)."""
        if self._interceptors:
            return None
        return self._registered.get(method)

    async def intercepted_handler(self, method: str, call: Call) -> grpc.RpcMethodHandler | None:
        """The handler of ``method`` through the interceptors, as grpc.aio finds it."""
        details = _CallDetails(method, call.invocation_metadata())

        async def lookup(found: Any) -> grpc.RpcMethodHandler | None:
            handler = self._registered.get(found.method)
            if handler is not None:
                return handler
            for generic in self._generic:
                handler = generic.service(found)
                if handler is not None:
                    return handler
            return None

        continuation = lookup
        for interceptor in reversed(self._interceptors):
            continuation = _chain(interceptor, continuation)
        return await continuation(details)

    # ---- serving ----------------------------------------------------------------------------

    async def bind(
        self, host: str, port: int, tls: ssl.SSLContext | None = None, reuse_port: bool = False
    ) -> int:
        """Listen on ``host:port`` (0: a free port); returns the port. Calls are served once
        ``start`` is called."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GrpcConnection(self),
            host,
            port,
            ssl=tls,
            reuse_port=reuse_port or None,
            start_serving=False,
            backlog=1024,
        )
        port_bound: int = self._server.sockets[0].getsockname()[1]
        return port_bound

    async def start(self) -> None:
        if self._server is None:
            raise RuntimeError("bind() the server first")
        await self._server.start_serving()

    async def stop(self, grace: float | None) -> None:
        """Stop accepting connections and new calls; running calls get ``grace`` seconds, then
        are ended with UNAVAILABLE."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.go_away()
        closing = [connection.closed for connection in self.connections]
        if closing and grace:
            await asyncio.wait(closing, timeout=grace)
        for connection in list(self.connections):
            connection.cancel_calls()
        closing = [connection.closed for connection in self.connections]
        if closing:  # the transports close on the loop's next turns
            await asyncio.wait(closing, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None


def _chain(interceptor: grpc.aio.ServerInterceptor, continuation: Any) -> Any:
    async def next_step(details: Any) -> Any:
        return await interceptor.intercept_service(continuation, details)

    return next_step
