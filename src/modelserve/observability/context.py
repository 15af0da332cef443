"""The request being served, as seen by logs, access log and traces.

A transport opens a RequestContext when a request arrives (``Observability.begin``) and closes it
once the answer is ready (``Observability.end``); in between it is the value of ``CURRENT``, a
ContextVar, so every log line written while serving the request (on the event loop, in this
task or in the tasks it starts) carries its request id, and the dataplane can note the model,
the outcome and the timings without any argument passing through the transports.

The request id is the client's ``x-request-id`` (HTTP header or gRPC metadata) when it sent one,
else the V2 ``id`` of the inference request, else 32 fresh random hex digits made the first time
someone asks for it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from random import getrandbits
from typing import Any, TypeGuard

__all__ = [
    "CURRENT",
    "MAX_REQUEST_ID_LENGTH",
    "HeaderSource",
    "RequestContext",
    "current_request_id",
    "header_values",
    "new_request_id",
    "usable_id",
]

HeaderSource = Mapping[str, str] | Sequence[tuple[str, Any]] | None
"""HTTP headers (a dict of lower-case names) or gRPC invocation metadata ((key, value) pairs)."""

MAX_REQUEST_ID_LENGTH = 128
"""Longer client-given ids are not used: they end up in every log line."""


@dataclass(slots=True, eq=False)
class RequestContext:
    transport: str
    """``http`` or ``grpc``."""
    method: str
    """The HTTP method, or the gRPC method name (``ModelInfer``)."""
    target: str
    """The HTTP path, or the full gRPC method (``inference.GRPCInferenceService/ModelInfer``)."""
    given_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    started_ns: int = field(default_factory=time.perf_counter_ns)
    """perf_counter_ns when the request reached the transport."""
    started_wall_ns: int = field(default_factory=time.time_ns)
    """The same instant on the wall clock (for trace spans and inference events)."""
    headers: HeaderSource = None
    """The request's headers as the transport got them, kept by reference (nothing is copied
    per request): read with ``header_values`` when an inference event needs some."""
    # ---- noted by the dataplane (an inference request) ----
    model: str = ""
    version: str = ""
    outcome: str = ""
    """``success`` or the lower-case ErrorCode name; empty when the request was no inference."""
    rows: int = 0
    """The request's batch size (rows on dimension 0; 1 for a model without batching)."""
    batch_size: int = 0
    """Rows in the execution the request was part of (dynamic batching merges requests)."""
    submitted_ns: int = 0
    """perf_counter_ns when the request entered the model's queue."""
    queue_ns: int = 0
    compute_ns: int = 0
    token: Token[RequestContext | None] | None = None
    _request_id: str | None = None

    @property
    def request_id(self) -> str:
        """The id logs and answers carry; fixed the first time it is read."""
        rid = self._request_id
        if rid is None:
            rid = self._request_id = self.given_id or new_request_id()
        return rid

    def adopt_id(self, v2_id: str | None) -> None:
        """Take the inference request's V2 ``id`` as the request id, unless the client sent an
        ``x-request-id`` or the id was already used."""
        if self.given_id is None and self._request_id is None and usable_id(v2_id):
            self._request_id = v2_id


def usable_id(value: str | None) -> TypeGuard[str]:
    """A client-given id is used only when it is printable ASCII of at most 128 characters: it
    goes into response headers and log lines, where CR/LF or control characters must not."""
    return (
        value is not None
        and 0 < len(value) <= MAX_REQUEST_ID_LENGTH
        and value.isascii()
        and value.isprintable()
    )


def new_request_id() -> str:
    """32 random hex digits, as a uuid4's hex. An id needs to be unique, not secret: the
    Mersenne Twister (reseeded in a forked worker by ``random`` itself) draws one without a
    system call, three times cheaper than ``os.urandom`` and ten times than ``uuid.uuid4``."""
    return getrandbits(128).to_bytes(16).hex()


CURRENT: ContextVar[RequestContext | None] = ContextVar("modelserve_request", default=None)


def current_request_id() -> str:
    """The id of the request being served, or a fresh one outside any request."""
    ctx = CURRENT.get()
    return ctx.request_id if ctx is not None else new_request_id()


def header_values(source: HeaderSource, names: Collection[str]) -> dict[str, str]:
    """The values of the headers ``names`` (lower case) that ``source`` carries; binary gRPC
    metadata (``-bin`` keys) is left out."""
    if not source or not names:
        return {}
    if isinstance(source, Mapping):
        return {name: source[name] for name in names if name in source}
    found: dict[str, str] = {}
    for key, value in source:
        if key in names and isinstance(value, str):
            found[key] = value
    return found
