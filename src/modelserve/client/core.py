"""What ``Client`` and ``AsyncClient`` share: opening a protocol, the model metadata cache, and
turning the arguments of each method into a ``Call`` (calls.py). Nothing here does I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from modelserve.client.calls import Api, AsyncTransport, Call, Label, SyncTransport, new_request_id
from modelserve.client.connection import Endpoint
from modelserve.client.errors import (
    ClientError,
    ConnectionFailedError,
    DeadlineError,
    InvalidInputError,
    UnavailableError,
)
from modelserve.client.inputs import Prepared, prepare
from modelserve.types import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RequestedOutput,
    ServerMetadata,
)

if TYPE_CHECKING:
    from modelserve.client.rest import RestApi

__all__ = ["ClientCore", "ExperimentAction", "check_id", "open_async", "open_sync"]

ExperimentAction = Literal["promote", "rollback", "stop"]
MAX_ID_LENGTH = 128
"""The longest request id a modelserve server keeps (it makes its own for a longer one)."""


def usable_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and value.isprintable()


def check_id(request_id: str | None) -> None:
    """InvalidInputError, before anything is sent, for an id the server could not keep."""
    if request_id is not None and not usable_id(request_id):
        raise InvalidInputError(
            f"id {request_id[:40]!r}: a request id is printable ASCII, at most "
            f"{MAX_ID_LENGTH} characters (it travels in headers and log lines)"
        )


def open_sync(
    endpoint: Endpoint, token: str | None, timeout: float, binary: bool | None
) -> tuple[Api, SyncTransport]:
    """The Api and a blocking transport for ``endpoint`` (imports grpc only now)."""
    if endpoint.protocol == "grpc":
        from modelserve.client.grpc import GrpcApi, GrpcOptions, GrpcTransport

        return GrpcApi(), GrpcTransport(GrpcOptions(endpoint, token, timeout))
    from modelserve.client.http_pool import HttpTransport
    from modelserve.client.rest import HttpOptions, RestApi

    return RestApi(binary), HttpTransport(HttpOptions(endpoint, token, timeout))


def open_async(
    endpoint: Endpoint, token: str | None, timeout: float, binary: bool | None
) -> tuple[Api, AsyncTransport]:
    """The Api and an asyncio transport for ``endpoint`` (imports httpx or grpc only now)."""
    if endpoint.protocol == "grpc":
        from modelserve.client.grpc import AsyncGrpcTransport, GrpcApi, GrpcOptions

        return GrpcApi(), AsyncGrpcTransport(GrpcOptions(endpoint, token, timeout))
    from modelserve.client.http_async import AsyncHttpTransport
    from modelserve.client.rest import HttpOptions, RestApi

    return RestApi(binary), AsyncHttpTransport(HttpOptions(endpoint, token, timeout))


def _plain(value: Any) -> Any:
    """A label as JSON takes it (numpy scalars and arrays become Python values)."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


class ClientCore:
    """Builds every call; keeps the metadata of the models predicted on (one request the first
    time a model is used, forgotten when the server says the request no longer fits)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._metadata: dict[tuple[str, str], ModelMetadata] = {}

    # ---- metadata ----------------------------------------------------------------------------

    def cached(self, model: str, version: str | None) -> ModelMetadata | None:
        return self._metadata.get((model, version or ""))

    def remember(self, model: str, version: str | None, meta: ModelMetadata) -> ModelMetadata:
        self._metadata[(model, version or "")] = meta
        return meta

    def forget(self, model: str, version: str | None) -> None:
        self._metadata.pop((model, version or ""), None)

    # ---- the server's extensions -------------------------------------------------------------

    @property
    def needs_extensions(self) -> bool:
        """REST with ``binary=None`` before its first inference: whether the server has Triton's
        binary tensor extension is not known yet (rest.py)."""
        return getattr(self.api, "binary", False) is None

    def use_extensions(self, server: ServerMetadata | ClientError) -> None:
        """Binary tensors or JSON from the server's metadata; a server that does not answer
        ``GET /v2`` (a 4xx, 500, not V2) gets JSON tensors, which every V2 server reads. An
        error that may pass (no connection, 503, no answer in time) goes to the caller, and the
        next inference asks again."""
        if isinstance(server, ConnectionFailedError | DeadlineError | UnavailableError):
            raise server
        known = server if isinstance(server, ServerMetadata) else None
        cast("RestApi", self.api).use_extensions(known)

    # ---- calls -------------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        data: Any,
        meta: ModelMetadata,
        version: str | None,
        outputs: Iterable[str] | None,
        request_id: str | None,
        parameters: Mapping[str, str | int | float | bool] | None,
    ) -> tuple[Prepared, Call[tuple[InferenceResponse, str]]]:
        check_id(request_id)
        prepared = prepare(data, meta)
        if isinstance(outputs, str):
            outputs = [outputs]
        request = InferenceRequest(
            model_name=model,
            inputs=tuple(prepared.inputs),
            model_version=version or "",
            id=request_id,
            parameters=dict(parameters or {}),
            outputs=tuple(RequestedOutput(name) for name in outputs)
            if outputs is not None
            else None,
        )
        return prepared, self.api.infer(request, request_id or new_request_id())

    def labels(
        self, model: str, ids: Sequence[str], labels: Sequence[Any] | Any
    ) -> Call[dict[str, Any]]:
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a list of request ids, not one string")
        values = _plain(labels)
        if not isinstance(values, list):
            values = list(values)
        ids = [str(ident) for ident in _plain(ids)]
        if len(ids) != len(values):
            raise InvalidInputError(f"{len(ids)} ids but {len(values)} labels")
        if not ids:
            raise InvalidInputError("no labels given")
        pairs: list[Label] = list(zip(ids, values, strict=True))
        return self.api.labels(model, pairs, new_request_id())

    def experiment(
        self,
        model: str,
        spec: Mapping[str, Any] | None,
        action: ExperimentAction | None,
    ) -> Call[dict[str, Any]]:
        rid = new_request_id()
        if spec is not None and action is not None:
            raise InvalidInputError("give an experiment spec or an action, not both")
        if spec is not None:
            return self.api.experiment(model, "PUT", spec, rid)
        if action == "stop":
            return self.api.experiment(model, "DELETE", None, rid)
        if action in ("promote", "rollback"):
            return self.api.experiment(model, "PUT", {"action": action}, rid)
        if action is not None:
            raise InvalidInputError(f"unknown experiment action {action!r}")
        return self.api.experiment(model, "GET", None, rid)
