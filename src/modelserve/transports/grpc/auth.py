"""The one place gRPC enforces authentication and scopes: a server interceptor in front of every
service (inference, health, reflection). It reads ``authorization: Bearer <token>`` from the call
metadata, maps the RPC to an Action (transports/access.py), refines it with the model the request
names, and lets the Authenticator decide. A refusal is UNAUTHENTICATED or PERMISSION_DENIED from
the one ErrorCode table. A stream checks every request message against the token's scopes.

Installed only when authentication is on, so a server without tokens pays nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from modelserve.errors import ServerError, grpc_status_name
from modelserve.security.auth import Action, Authenticator, Principal
from modelserve.transports.access import grpc_action, grpc_message_model

__all__ = ["AuthInterceptor"]


def _authorization(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else bytes(value).decode("latin-1")
    return None


async def _abort(context: Any, exc: ServerError) -> None:
    await context.abort(grpc.StatusCode[grpc_status_name(exc.code)], exc.message)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        details: Any,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        action = grpc_action(details.method)
        authorization = _authorization(details.invocation_metadata)
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=self._unary(handler.unary_unary, action, authorization)
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=self._unary_stream(handler.unary_stream, action, authorization)
            )
        if handler.stream_stream is not None:
            return handler._replace(
                stream_stream=self._stream(handler.stream_stream, action, authorization)
            )
        # No service the server registers has a client-streaming RPC with a unary answer; one
        # added later must be given a check here, so until then it is refused (fail closed).
        raise PermissionError(f"{details.method}: no authorization rule for this kind of RPC")

    def _decide(self, authorization: str | None, action: Action, request: Any) -> None:
        refined, model = grpc_message_model(action, request)
        self._auth.check(authorization, refined, model)

    def _unary(self, inner: Any, action: Action, authorization: str | None) -> Any:
        async def behavior(request: Any, context: Any) -> Any:
            try:
                self._decide(authorization, action, request)
            except ServerError as exc:
                await _abort(context, exc)
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

        return behavior

    def _unary_stream(self, inner: Any, action: Action, authorization: str | None) -> Any:
        if inspect.iscoroutinefunction(inner):  # answers with context.write (health Watch)

            async def writer(request: Any, context: Any) -> None:
                try:
                    self._decide(authorization, action, request)
                except ServerError as exc:
                    await _abort(context, exc)
                await inner(request, context)

            return writer

        async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                self._decide(authorization, action, request)
            except ServerError as exc:
                await _abort(context, exc)
            async for answer in inner(request, context):
                yield answer

        return behavior

    def _start_stream(self, authorization: str | None, action: Action) -> Principal | None:
        """Authenticate when the stream opens; the messages are checked as they arrive."""
        if action is Action.INFER or action is Action.MODEL_READ:
            return self._auth.authenticate(authorization)
        return self._auth.check(authorization, action)

    def _checked(
        self, requests: AsyncIterator[Any], action: Action, principal: Principal | None
    ) -> AsyncIterator[Any]:
        if principal is None or not (action is Action.INFER or action is Action.MODEL_READ):
            return requests

        async def each() -> AsyncIterator[Any]:
            async for request in requests:
                refined, model = grpc_message_model(action, request)
                self._auth.authorize(principal, refined, model)
                yield request

        return each()

    def _stream(self, inner: Any, action: Action, authorization: str | None) -> Any:
        async def behavior(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            principal = None
            try:
                principal = self._start_stream(authorization, action)
            except ServerError as exc:
                await _abort(context, exc)
            async for answer in inner(self._checked(requests, action, principal), context):
                yield answer

        return behavior
