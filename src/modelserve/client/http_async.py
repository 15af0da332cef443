"""``AsyncClient``'s REST transport: httpx's AsyncClient (pooled HTTP/1.1 keep-alive
connections on the caller's event loop)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx

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

__all__ = ["AsyncHttpTransport"]

T = TypeVar("T")


def _failure(
    call: HttpCall[Any], exc: httpx.HTTPError, where: str, options: HttpOptions
) -> ClientError:
    timeout = options.timeout
    tls = tls_cause(exc)
    if tls is not None:
        return tls_failure(call, tls, where)
    if isinstance(exc, httpx.PoolTimeout):
        # nothing was sent: the client's own limit, not the server's; not retried
        return DeadlineError(
            f"{call.what}: all {options.max_connections} connections to {where} stayed busy "
            f"for {timeout:g} s (more calls at once than the pool holds)",
            request_id=call.request_id,
        )
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return ConnectionFailedError(
            f"{call.what}: cannot connect to {where}: {exc or type(exc).__name__}",
            request_id=call.request_id,
        )
    if isinstance(exc, httpx.TimeoutException):
        return DeadlineError(
            f"{call.what}: no answer from {where} within {timeout:g} s",
            request_id=call.request_id,
        )
    return ConnectionFailedError(
        f"{call.what}: the connection to {where} failed: {exc or type(exc).__name__}",
        sent=True,
        request_id=call.request_id,
    )


def _client_kwargs(options: HttpOptions) -> dict[str, Any]:
    headers = {"user-agent": "modelserve-client"}
    if options.token:
        headers["authorization"] = f"Bearer {options.token}"
    tls = options.endpoint.tls
    return {
        "base_url": options.endpoint.base_url,
        "headers": headers,
        "timeout": options.timeout,
        "verify": tls.ssl_context() if tls is not None else False,
        "limits": httpx.Limits(
            max_connections=options.max_connections,
            max_keepalive_connections=options.max_connections,
        ),
        "trust_env": False,
    }


class AsyncHttpTransport:
    """Runs REST calls on one pooled ``httpx.AsyncClient``."""

    def __init__(self, options: HttpOptions) -> None:
        self._options = options
        self._where = options.endpoint.base_url
        self._client = httpx.AsyncClient(**_client_kwargs(options))

    def call(self, call: Call[T]) -> Awaitable[T]:
        return self._call(call)

    async def _call(self, call: Call[T]) -> T:
        call = as_http_call(call)
        headers = {"x-request-id": call.request_id, **call.headers}
        try:
            reply = await self._client.request(
                call.method, call.path, content=call.body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise _failure(call, exc, self._where, self._options) from None
        return finish(
            call, HttpAnswer(reply.status_code, reply.headers, reply.content), self._where
        )

    async def close(self) -> None:
        await self._client.aclose()
