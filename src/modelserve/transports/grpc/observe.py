"""Observation of unary gRPC calls: the request id (``x-request-id`` metadata, else the V2 ``id``
of an inference request, else a fresh one) is sent back as trailing metadata, and each call
leaves an access log line and, for inferences, trace spans (``Observability.begin``/``end``).

The wrapper goes outside the error guard (grpc.py), so that the guard's messages and log lines
about an unexpected error carry the call's request id, and the status it aborts with is the
one logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from modelserve.observability import Observability

__all__ = ["REQUEST_ID_KEY", "metadata_value", "observe_unary"]

REQUEST_ID_KEY = "x-request-id"

Unary = Callable[[Any, Any], Awaitable[Any]]


def metadata_value(metadata: Any, key: str) -> str | None:
    """The last value of ``key`` in invocation metadata (keys arrive in lower case)."""
    found = None
    for item in metadata or ():
        if item[0] == key and isinstance(item[1], str):
            found = item[1]
    return found


def _status_name(code: Any) -> str:
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return str(status.name)
    return "UNKNOWN"


def observe_unary(full_name: str, call: Unary, observability: Observability) -> Unary:
    """``call`` (already guarded) observed as the RPC ``full_name`` (``package.Service/Method``)."""
    method = full_name.rsplit("/", 1)[-1]
    target = "/" + full_name

    async def observed(request: Any, context: Any) -> Any:
        metadata = context.invocation_metadata()
        ctx = observability.begin(
            "grpc",
            method,
            target,
            metadata_value(metadata, REQUEST_ID_KEY),
            metadata_value(metadata, "traceparent"),
            metadata_value(metadata, "tracestate"),
            metadata,
        )
        ctx.adopt_id(getattr(request, "id", None))
        context.set_trailing_metadata(((REQUEST_ID_KEY, ctx.request_id),))
        status = "UNKNOWN"
        try:
            answer = await call(request, context)
            status = "OK"
            return answer
        except grpc.aio.AbortError:
            status = _status_name(context.code())
            raise
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        finally:
            observability.end(ctx, status)

    return observed
