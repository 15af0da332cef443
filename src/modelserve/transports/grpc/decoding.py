"""Request bytes that are not a valid message: INVALID_ARGUMENT, not UNKNOWN.

grpc.aio decodes a request with the handler's ``request_deserializer`` before any of our code
runs, and turns an exception there into UNKNOWN plus an ERROR traceback in the log, one per
request: a client sending garbage would flood the log. So every deserializer is wrapped
(``tolerant``): undecodable bytes become an ``Undecodable`` marker, logged at DEBUG, and the
handler refuses the marker with INVALID_ARGUMENT. The inference service's error guard does
that for its own RPCs (service.py); ``guard_decoding`` does it for the services whose
handlers are generated elsewhere (health, reflection), which ``HandlerSink`` collects.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from modelserve.errors import InvalidArgument
from modelserve.transports.grpc.server import GrpcServer

__all__ = ["HandlerSink", "Undecodable", "decoded", "guard_decoding", "tolerant"]

log = logging.getLogger("modelserve.grpc")


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for a request message whose bytes could not be decoded."""

    message_type: str

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"the request bytes are not a valid {self.message_type} message")


def tolerant(deserialize: Callable[[bytes], Any], message_type: str) -> Callable[[bytes], Any]:
    """``deserialize``, returning an ``Undecodable`` instead of raising."""

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # whatever the bytes make the parser raise: the client's
            log.debug("undecodable %s request (%d bytes): %s", message_type, len(data), exc)
            return Undecodable(message_type)

    return decode


async def decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The messages of a request stream; InvalidArgument at the first undecodable one."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.error()
        yield request


async def _refuse(context: Any, error: InvalidArgument) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)


def _message_type(deserialize: Any) -> str:
    """The full name of the message a generated ``Message.FromString`` decodes."""
    descriptor = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def guard_decoding(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with a tolerant deserializer and its behaviour refusing undecodable
    requests with INVALID_ARGUMENT."""
    deserialize = handler.request_deserializer
    deserializer = tolerant(deserialize, _message_type(deserialize))
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            if isinstance(request, Undecodable):
                await _refuse(context, request.error())
            result = unary(request, context)
            return await result if inspect.isawaitable(result) else result

        return handler._replace(request_deserializer=deserializer, unary_unary=unary_unary)
    if handler.unary_stream is not None:
        streaming = handler.unary_stream
        if inspect.iscoroutinefunction(streaming):  # answers with context.write

            async def unary_writer(request: Any, context: Any) -> None:
                if isinstance(request, Undecodable):
                    await _refuse(context, request.error())
                await streaming(request, context)

            return handler._replace(request_deserializer=deserializer, unary_stream=unary_writer)

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await _refuse(context, request.error())
            async for answer in streaming(request, context):
                yield answer

        return handler._replace(request_deserializer=deserializer, unary_stream=unary_stream)
    if handler.stream_stream is not None:
        both = handler.stream_stream
        if inspect.iscoroutinefunction(both):  # reads and answers through the context

            async def stream_writer(requests: Any, context: Any) -> None:
                try:
                    await both(decoded(requests), context)
                except InvalidArgument as exc:
                    await _refuse(context, exc)

            return handler._replace(request_deserializer=deserializer, stream_stream=stream_writer)

        async def stream_stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            try:
                async for answer in both(decoded(requests), context):
                    yield answer
            except InvalidArgument as exc:  # the services guarded here raise none of their own
                await _refuse(context, exc)

        return handler._replace(request_deserializer=deserializer, stream_stream=stream_stream)
    raise TypeError(f"no decoding guard for a client-streaming RPC with a unary answer ({handler})")


class HandlerSink:
    """Stands for the server in a generated ``add_<Service>Servicer_to_server(servicer,
    server)``, keeping the method handlers it registers so that they can be registered
    guarded (``register``)."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """Ignored: the same handlers come by name through ``add_registered_method_handlers``."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.services[service] = dict(handlers)

    def register(self, server: GrpcServer) -> None:
        """Register every collected service on ``server``, each method guarded."""
        if not self.services:
            raise RuntimeError("the generated code registered no method handlers")
        for service, handlers in self.services.items():
            guarded = {method: guard_decoding(handler) for method, handler in handlers.items()}
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, guarded),)
            )
            server.add_registered_method_handlers(service, guarded)
