"""What the client raises: one ``ClientError`` tree, whatever the protocol.

Every error the server answers is mapped through the project's one status table
(``modelserve.errors.STATUS_TABLE``), so an HTTP 404 and a gRPC ``NOT_FOUND`` become the same
``NotFoundError`` with the same ``code``. Errors carry the request id the call was sent with, so
a failure can be found in the server's logs.
"""

from __future__ import annotations

from modelserve.errors import STATUS_TABLE, ErrorCode

__all__ = [
    "AuthError",
    "ClientError",
    "ConnectionFailedError",
    "DeadlineError",
    "InvalidInputError",
    "NotFoundError",
    "TlsError",
    "UnavailableError",
    "UnsupportedError",
    "error_for_grpc",
    "error_for_http",
]


class ClientError(Exception):
    """A call failed. ``code`` is the server's error code (None when no server answered),
    ``status`` its HTTP status (the table's equivalent over gRPC), ``request_id`` the id the
    call was sent with, ``retry_after`` the seconds the server asked to wait (or None)."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth another try: the server refused for now (503 / UNAVAILABLE, a full queue),
        never a mistake in the request."""
        return False


class InvalidInputError(ClientError, ValueError):
    """The request is wrong: found by the client before sending, or a 400 / INVALID_ARGUMENT."""


class NotFoundError(ClientError):
    """No such model or version (404 / NOT_FOUND)."""


class AuthError(ClientError):
    """No valid token (401 / UNAUTHENTICATED) or a token without the scope (403)."""


class UnavailableError(ClientError):
    """The server cannot take the call now: a full queue, a model that is not READY, a server
    that is draining (503 / UNAVAILABLE / RESOURCE_EXHAUSTED with retry-after). Raised once the
    retries are spent."""

    @property
    def retryable(self) -> bool:
        return True


class DeadlineError(ClientError):
    """The call ran out of time: the client's timeout, or the server's deadline (504)."""


class ConnectionFailedError(ClientError):
    """No answer from the server: refused, reset or unreachable (after the retries).
    ``sent`` tells whether the request may have reached the server before the failure."""

    def __init__(self, message: str, *, sent: bool = False, request_id: str | None = None):
        super().__init__(message, request_id=request_id)
        self.sent = sent

    @property
    def retryable(self) -> bool:
        return True


class TlsError(ConnectionFailedError):
    """The TLS handshake failed (an untrusted certificate, a name mismatch): no retry cures it."""

    @property
    def retryable(self) -> bool:
        return False


class UnsupportedError(ClientError):
    """The server does not have this endpoint (an older modelserve, Triton or KServe for a
    modelserve extension), or the protocol in use does not carry it."""


_BY_CODE: dict[ErrorCode, type[ClientError]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidInputError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.UNAVAILABLE: UnavailableError,
    ErrorCode.RESOURCE_EXHAUSTED: UnavailableError,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineError,
    ErrorCode.UNAUTHENTICATED: AuthError,
    ErrorCode.PERMISSION_DENIED: AuthError,
}

# The first code of the table for each HTTP status and each gRPC status name: 503 is
# UNAVAILABLE (RESOURCE_EXHAUSTED shares it), gRPC RESOURCE_EXHAUSTED is a size limit unless
# the server asks to retry (see error_for_grpc).
_HTTP_CODES: dict[int, ErrorCode] = {
    http: code for code, (http, _) in reversed(STATUS_TABLE.items())
}
_GRPC_CODES: dict[str, ErrorCode] = {
    name: code for code, (_, name) in reversed(STATUS_TABLE.items())
}
_GRPC_CODES["UNIMPLEMENTED"] = ErrorCode.METHOD_NOT_ALLOWED


def _make(
    code: ErrorCode | None,
    message: str,
    status: int | None,
    request_id: str | None,
    retry_after: float | None,
) -> ClientError:
    cls = _BY_CODE.get(code, ClientError) if code is not None else ClientError
    return cls(message, code=code, status=status, request_id=request_id, retry_after=retry_after)


def error_for_http(
    status: int, message: str, request_id: str | None, retry_after: float | None = None
) -> ClientError:
    """The error for an HTTP answer ``status`` whose body said ``message``."""
    code = _HTTP_CODES.get(status)
    if code is None:
        code = ErrorCode.INVALID_ARGUMENT if 400 <= status < 500 else ErrorCode.INTERNAL
    return _make(code, message, status, request_id, retry_after)


def error_for_grpc(
    status_name: str, message: str, request_id: str | None, retry_after: float | None = None
) -> ClientError:
    """The error for a gRPC status (``grpc.StatusCode.name``). RESOURCE_EXHAUSTED is a full
    queue (retryable) only when the server sent ``retry-after``; otherwise a message over a size
    limit, which no retry cures."""
    if status_name == "RESOURCE_EXHAUSTED" and retry_after is None:
        return ClientError(
            message,
            code=ErrorCode.PAYLOAD_TOO_LARGE,
            status=STATUS_TABLE[ErrorCode.PAYLOAD_TOO_LARGE][0],
            request_id=request_id,
        )
    if status_name == "DEADLINE_EXCEEDED":
        return DeadlineError(
            message, code=ErrorCode.DEADLINE_EXCEEDED, status=504, request_id=request_id
        )
    if status_name == "RESOURCE_EXHAUSTED":
        code = ErrorCode.RESOURCE_EXHAUSTED
    else:
        code = _GRPC_CODES.get(status_name, ErrorCode.INTERNAL)
    return _make(code, message, STATUS_TABLE[code][0], request_id, retry_after)
