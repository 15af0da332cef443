"""What payload sinks write about an inference event: V2 JSON documents, built off the hot path.

- ``record_bytes``: the payload-log record (one JSON line of the file sink, one Kafka or Redis
  message, one dead-letter entry): ``id``, ``model``, ``version``, ``time`` (RFC 3339, UTC),
  ``status``, ``latency_ms``, ``transport``, then ``parameters``, ``headers``, ``inputs`` and
  ``outputs`` (V2 JSON tensors), ``error`` and ``arm`` when there are some.
- ``request_document`` / ``response_document`` / ``error_document``: the V2 JSON inference
  request and response (the bodies of the CloudEvents sink).

A ``LogPolicy`` (a model's ``logging:`` mode, redaction and headers) decides what is left out.
Tensors are written in V2 JSON form: flat ``data`` in row-major order; BYTES elements as UTF-8
strings, or, when one is not UTF-8, all base64 with the tensor parameter
``content_encoding: base64``.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelserve.config.payload import PayloadLoggingConfig
from modelserve.errors import http_status
from modelserve.monitoring.events import InferenceEvent
from modelserve.types import Tensor

__all__ = [
    "LogPolicy",
    "error_document",
    "record",
    "record_bytes",
    "request_document",
    "response_document",
    "rfc3339",
    "status_code",
]

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True, eq=False)
class LogPolicy:
    """What of a model's events is written: ``mode`` (all, request, response) and what is
    redacted (never written). Compared by identity: it keys the encodings cached on events, and
    every sink of a model shares the model's one policy."""

    mode: str = "all"
    inputs: frozenset[str] = frozenset()
    outputs: frozenset[str] = frozenset()
    parameters: frozenset[str] = frozenset()
    headers: frozenset[str] = frozenset()
    wanted_headers: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: PayloadLoggingConfig) -> LogPolicy:
        redact: dict[str, set[str]] = {"inputs": set(), "outputs": set(), "parameters": set()}
        redact["headers"] = set()
        for item in config.redact:
            kind, name = item.split(".", 1)
            redact[kind].add(name.lower() if kind == "headers" else name)
        return cls(
            mode=config.mode,
            inputs=frozenset(redact["inputs"]),
            outputs=frozenset(redact["outputs"]),
            parameters=frozenset(redact["parameters"]),
            headers=frozenset(redact["headers"]),
            wanted_headers=tuple(h for h in config.headers if h not in redact["headers"]),
        )

    @property
    def logs_inputs(self) -> bool:
        return self.mode != "response"

    @property
    def logs_outputs(self) -> bool:
        return self.mode != "request"


def rfc3339(wall_ns: int) -> str:
    """``2026-11-22T10:11:12.123456Z``."""
    seconds, rest = divmod(wall_ns, 1_000_000_000)
    return f"{_second(seconds)}.{rest // 1000:06d}Z"


@functools.lru_cache(maxsize=16)
def _second(seconds: int) -> str:
    """``2026-11-22T10:11:12``: events come in time order, so this is mostly a cache hit."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def status_code(event: InferenceEvent) -> int:
    """The HTTP status the request was answered with (its gRPC twin for gRPC requests)."""
    return 200 if event.code is None else http_status(event.code)


def tensor_document(tensor: Tensor) -> dict[str, Any]:
    """One tensor in V2 JSON form."""
    datatype = tensor.datatype
    if datatype != "BYTES":
        doc: dict[str, Any] = {
            "name": tensor.name,
            "datatype": datatype,
            "shape": tensor.shape,
            "data": np.ascontiguousarray(tensor.data).reshape(-1),
        }
        if tensor.parameters:
            doc["parameters"] = dict(tensor.parameters)
        return doc
    params = dict(tensor.parameters)
    items = [x if isinstance(x, bytes) else str(x).encode() for x in tensor.data.reshape(-1)]
    try:
        data = [item.decode("utf-8") for item in items]
    except UnicodeDecodeError:
        data = [base64.b64encode(item).decode("ascii") for item in items]
        params["content_encoding"] = "base64"
    doc = {"name": tensor.name, "datatype": datatype, "shape": tensor.shape, "data": data}
    if params:
        doc["parameters"] = params
    return doc


def _tensors(tensors: tuple[Tensor, ...], redacted: frozenset[str]) -> list[dict[str, Any]]:
    if redacted:
        return [tensor_document(t) for t in tensors if t.name not in redacted]
    return [tensor_document(t) for t in tensors]


def _parameters(event: InferenceEvent, policy: LogPolicy) -> dict[str, Any]:
    if not event.parameters:
        return {}
    return {k: v for k, v in event.parameters.items() if k not in policy.parameters}


def _headers(event: InferenceEvent, policy: LogPolicy) -> dict[str, str]:
    if not event.headers:
        return {}
    return {h: event.headers[h] for h in policy.wanted_headers if h in event.headers}


def request_document(event: InferenceEvent, policy: LogPolicy) -> dict[str, Any]:
    """The V2 JSON inference request."""
    doc: dict[str, Any] = {"id": event.id}
    parameters = _parameters(event, policy)
    if parameters:
        doc["parameters"] = parameters
    doc["inputs"] = _tensors(event.inputs, policy.inputs)
    return doc


def response_document(event: InferenceEvent, policy: LogPolicy) -> dict[str, Any]:
    """The V2 JSON inference response."""
    return {
        "id": event.id,
        "model_name": event.model,
        "model_version": event.version,
        "outputs": _tensors(event.outputs, policy.outputs),
    }


def error_document(event: InferenceEvent) -> dict[str, Any]:
    """What a failed request was answered (as the REST API answers errors), with its id."""
    return {"id": event.id, "error": event.error or "", "code": event.status}


def record(event: InferenceEvent, policy: LogPolicy) -> dict[str, Any]:
    """The payload-log record of ``event``."""
    doc: dict[str, Any] = {
        "id": event.id,
        "model": event.model,
        "version": event.version,
        "time": rfc3339(event.arrived_ns),
        "status": event.status,
        "latency_ms": round(event.latency_ns / 1e6, 3),
        "transport": event.transport,
    }
    if event.arm is not None:
        doc["arm"] = event.arm
    parameters = _parameters(event, policy)
    if parameters:
        doc["parameters"] = parameters
    headers = _headers(event, policy)
    if headers:
        doc["headers"] = headers
    if policy.logs_inputs:
        doc["inputs"] = _tensors(event.inputs, policy.inputs)
    if policy.logs_outputs and event.code is None:
        doc["outputs"] = _tensors(event.outputs, policy.outputs)
    if event.code is not None:
        doc["status_code"] = status_code(event)
        doc["error"] = event.error or ""
    return doc


def record_bytes(event: InferenceEvent, policy: LogPolicy) -> bytes:
    """``record`` as JSON (no newline), made once per event and policy and shared by sinks."""
    cache = event.encoded
    if cache is None:
        cache = event.encoded = {}
    encoded: bytes | None = cache.get(policy)
    if encoded is None:
        encoded = cache[policy] = dumps(record(event, policy))
    return encoded


def dumps(document: Mapping[str, Any]) -> bytes:
    """JSON with numpy arrays written as lists."""
    return orjson.dumps(document, option=_JSON_OPTIONS)
