"""The seam between what the client asks and how a protocol carries it.

Each protocol gives an ``Api`` that turns a question into a ``Call`` (what to send, and how to
read the answer: pure, no I/O) and transports that run a call (sync and async). ``Client`` and
``AsyncClient`` only put the two together with the retry policy, so a new server call is one
``Api`` method per protocol, and the sync and async clients cannot drift apart.

Protocols: ``rest.py`` (HTTP/1.1: http_pool.py for ``Client``, httpx for ``AsyncClient``),
``grpc.py`` (grpcio) and ``local.py`` (the server's own dataplane in this process).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from modelserve.client.results import RepositoryModel
from modelserve.types import InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata

__all__ = [
    "Api",
    "AsyncTransport",
    "Call",
    "ExperimentMethod",
    "Label",
    "SyncTransport",
    "new_request_id",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

ExperimentMethod = Literal["GET", "PUT", "DELETE"]
Label = tuple[str, Any]
"""(request id, true label) for ``send_labels``."""


def new_request_id() -> str:
    """32 random hex digits, the server's own format."""
    return os.urandom(16).hex()


@dataclass(slots=True, kw_only=True)
class Call(Generic[T_co]):
    """One request, ready for a transport of its protocol."""

    what: str
    """For error messages: ``infer iris_onnx``."""
    request_id: str
    """Sent as ``x-request-id``; the same on every retry."""
    idempotent: bool = True
    """Safe to send again when the connection broke after it may have reached the server."""


class Api(Protocol):
    """The calls of the V2 API and modelserve's extensions, as one protocol builds them."""

    def server_metadata(self, rid: str) -> Call[ServerMetadata]: ...
    def live(self, rid: str) -> Call[bool]: ...
    def ready(self, rid: str) -> Call[bool]: ...
    def model_ready(self, model: str, version: str, rid: str) -> Call[bool]: ...
    def model_metadata(self, model: str, version: str, rid: str) -> Call[ModelMetadata]: ...
    def index(self, ready_only: bool, rid: str) -> Call[list[RepositoryModel]]: ...
    def load(self, model: str, config: Mapping[str, Any] | None, rid: str) -> Call[None]: ...
    def unload(self, model: str, rid: str) -> Call[None]: ...
    def infer(self, request: InferenceRequest, rid: str) -> Call[tuple[InferenceResponse, str]]: ...
    def labels(self, model: str, labels: Sequence[Label], rid: str) -> Call[dict[str, Any]]: ...
    def monitoring(self, model: str, rid: str) -> Call[dict[str, Any]]: ...
    def experiment(
        self, model: str, method: ExperimentMethod, body: Mapping[str, Any] | None, rid: str
    ) -> Call[dict[str, Any]]: ...


class SyncTransport(Protocol):
    def call(self, call: Call[T]) -> T: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    def call(self, call: Call[T]) -> Awaitable[T]: ...
    async def close(self) -> None: ...
