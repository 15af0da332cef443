"""The HTTP primitives the server and the REST API share: a parsed request, a reply, and the
replies for errors. Nothing here routes or knows the V2 API, so the HTTP server imports no
application code."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from modelserve.errors import ErrorCode, InvalidArgument, PayloadTooLarge, ServerError, http_status

__all__ = [
    "JSON",
    "OCTETS",
    "HttpRequest",
    "Reply",
    "check_content_length",
    "error_reply",
    "json_reply",
    "too_large_message",
]

JSON = b"application/json"
OCTETS = b"application/octet-stream"


class Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or [(b"content-type", JSON)]


def json_reply(doc: object, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(doc))


def error_reply(exc: ServerError) -> Reply:
    reply = json_reply({"error": exc.message}, http_status(exc.code))
    if exc.code is ErrorCode.RESOURCE_EXHAUSTED:
        reply.headers.append((b"retry-after", b"1"))
    elif exc.code is ErrorCode.UNAUTHENTICATED:
        reply.headers.append((b"www-authenticate", b'Bearer realm="modelserve"'))
    return reply


@dataclass(slots=True)
class HttpRequest:
    """One HTTP request, body read in full (the HTTP layer enforces the size limit)."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names; the last value of a repeated header."""
    body: bytes = b""


def too_large_message(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse a declared body over the limit before reading it."""
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError:
        raise InvalidArgument("Content-Length must be an integer") from None
    if declared > limit:
        raise PayloadTooLarge(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes"
        )
