"""The one error tree and the one table mapping each error code to HTTP and gRPC statuses."""

from __future__ import annotations

from enum import Enum
from typing import ClassVar


class ErrorCode(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    INTERNAL = "INTERNAL"


# ErrorCode -> (HTTP status, gRPC status code name). The gRPC name is resolved by the gRPC
# transport (``grpc.StatusCode[name]``) so that this module imports no framework.
STATUS_TABLE: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.INVALID_ARGUMENT: (400, "INVALID_ARGUMENT"),
    ErrorCode.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorCode.UNAVAILABLE: (503, "UNAVAILABLE"),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "RESOURCE_EXHAUSTED"),
    ErrorCode.HEADERS_TOO_LARGE: (431, "RESOURCE_EXHAUSTED"),
    ErrorCode.RESOURCE_EXHAUSTED: (503, "RESOURCE_EXHAUSTED"),
    ErrorCode.DEADLINE_EXCEEDED: (504, "DEADLINE_EXCEEDED"),
    ErrorCode.UNAUTHENTICATED: (401, "UNAUTHENTICATED"),
    ErrorCode.PERMISSION_DENIED: (403, "PERMISSION_DENIED"),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "UNIMPLEMENTED"),
    ErrorCode.FAILED_PRECONDITION: (409, "FAILED_PRECONDITION"),
    ErrorCode.INTERNAL: (500, "INTERNAL"),
}


def http_status(code: ErrorCode) -> int:
    return STATUS_TABLE[code][0]


def grpc_status_name(code: ErrorCode) -> str:
    return STATUS_TABLE[code][1]


class ServerError(Exception):
    """Base of every error the server reports to a client on purpose."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServerError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(ServerError):
    code = ErrorCode.NOT_FOUND


class Unavailable(ServerError):
    code = ErrorCode.UNAVAILABLE


class PayloadTooLarge(ServerError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class HeadersTooLarge(ServerError):
    code = ErrorCode.HEADERS_TOO_LARGE


class ResourceExhausted(ServerError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServerError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Unauthenticated(ServerError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ServerError):
    code = ErrorCode.PERMISSION_DENIED


class MethodNotAllowed(ServerError):
    code = ErrorCode.METHOD_NOT_ALLOWED


class FailedPrecondition(ServerError):
    code = ErrorCode.FAILED_PRECONDITION


class InternalError(ServerError):
    code = ErrorCode.INTERNAL


class ModelLoadError(Exception):
    """A model version could not be loaded; the message is the reason shown in the index."""


class ConversionError(Exception):
    """A model could not be converted to ONNX (no converter, or the converter failed); the
    message says why."""
