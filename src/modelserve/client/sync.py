"""``Client``: the blocking client. Thread-safe: one client (one connection pool) can serve
every thread of an application."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from modelserve.client.calls import Call, SyncTransport, new_request_id
from modelserve.client.connection import Protocol, Tls, parse_endpoint
from modelserve.client.core import ClientCore, ExperimentAction, check_id, open_sync
from modelserve.client.errors import ClientError, InvalidInputError, NotFoundError
from modelserve.client.inputs import mirror
from modelserve.client.results import RepositoryModel
from modelserve.client.retry import RetryPolicy
from modelserve.types import ModelMetadata, ServerMetadata

__all__ = ["Client"]

T = TypeVar("T")


def _version(version: str | int | None) -> str:
    return "" if version is None else str(version)


class Client:
    """A modelserve (or any V2: Triton, KServe) server.

    ``Client("127.0.0.1:8000")`` speaks REST; ``Client("127.0.0.1:8001", protocol="grpc")`` (or
    ``"grpc://127.0.0.1:8001"``) gRPC; ``https://``/``grpcs://`` or ``tls=Tls(...)`` turn on TLS.
    ``token`` is sent as ``Authorization: Bearer``. ``timeout`` is per try, in seconds;
    ``retries`` tries again on 503 / UNAVAILABLE and lost connections, never on 4xx;
    ``binary`` (REST): Triton's binary tensor extension when the server lists it (asked once,
    at the first ``predict``), JSON tensors otherwise; ``True``/``False`` decide without asking.
    """

    def __init__(
        self,
        url: str,
        protocol: Protocol | None = None,
        *,
        token: str | None = None,
        tls: Tls | bool | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        binary: bool | None = None,
    ) -> None:
        endpoint = parse_endpoint(url, protocol, tls)
        api, transport = open_sync(endpoint, token, timeout, binary)
        self._setup(api, transport, RetryPolicy(retries), endpoint.protocol)

    def _setup(self, api: Any, transport: SyncTransport, policy: RetryPolicy, kind: str) -> None:
        self._core = ClientCore(api)
        self._transport = transport
        self._policy = policy
        self.protocol = kind
        """``http``, ``grpc`` or ``local``."""

    @classmethod
    def local(cls, repository: str | Path, *, retries: int = 3, **settings: Any) -> Client:
        """The same API on a model repository served in this process, with no server: the
        server's own repository, runtimes, model.yaml and batching, and no socket. ``settings``
        are server settings by name (docs/configuration.md: ``load_models=["iris_onnx"]``,
        ``model_control_mode="explicit"``…). Returns once the models are loaded; ``close()``
        unloads them."""
        from modelserve.client.local import LocalApi, LocalEngine, LocalTransport

        engine = LocalEngine.start(repository, settings)
        client = cls.__new__(cls)
        client._setup(LocalApi(), LocalTransport(engine), RetryPolicy(retries), "local")
        return client

    def _run(self, call: Call[T]) -> T:
        return self._policy.run(lambda: self._transport.call(call), call.idempotent)

    # ---- inference ---------------------------------------------------------------------------

    def predict(
        self,
        model: str,
        data: Any,
        version: str | int | None = None,
        outputs: Iterable[str] | None = None,
        id: str | None = None,
        parameters: Mapping[str, str | int | float | bool] | None = None,
    ) -> Any:
        """Run ``model`` on ``data``: a numpy array, a dict of arrays, a pandas DataFrame or a
        list of rows; the answer comes back in the same kind (``modelserve.client.inputs``),
        with ``.id`` (the request id, for ``send_labels``) and ``.model_version``. ``outputs``
        picks outputs by name; ``id`` is the V2 request id (and ``x-request-id``)."""
        check_id(id)
        v = _version(version)
        meta = self._core.cached(model, v) or self.metadata(model, v)
        if self._core.needs_extensions:
            self._learn_extensions()
        prepared, call = self._core.infer(model, data, meta, v, outputs, id, parameters)
        try:
            response, answered_id = self._run(call)
        except (InvalidInputError, NotFoundError):
            self._core.forget(model, v)  # the model may have changed since its metadata
            raise
        return mirror(prepared, response, answered_id or call.request_id)

    def _learn_extensions(self) -> None:
        try:
            server: ServerMetadata | ClientError = self.server_metadata()
        except ClientError as exc:
            server = exc
        self._core.use_extensions(server)

    # ---- models ------------------------------------------------------------------------------

    def metadata(self, model: str, version: str | int | None = None) -> ModelMetadata:
        """The model's inputs, outputs, versions and platform."""
        v = _version(version)
        meta = self._run(self._core.api.model_metadata(model, v, new_request_id()))
        return self._core.remember(model, v, meta)

    def ready(self, model: str | None = None, version: str | int | None = None) -> bool:
        """Whether the server (no ``model``) or the model (version) is ready."""
        if model is None:
            return self._run(self._core.api.ready(new_request_id()))
        return self._run(self._core.api.model_ready(model, _version(version), new_request_id()))

    def live(self) -> bool:
        return self._run(self._core.api.live(new_request_id()))

    def server_metadata(self) -> ServerMetadata:
        return self._run(self._core.api.server_metadata(new_request_id()))

    def models(self, ready_only: bool = False) -> list[RepositoryModel]:
        """Every version the repository knows (``POST /v2/repository/index``)."""
        return self._run(self._core.api.index(ready_only, new_request_id()))

    def load(self, model: str, config: Mapping[str, Any] | None = None) -> None:
        """Load or reload ``model`` (the server must run with ``--model-control-mode
        explicit``); ``config`` overrides its model.yaml."""
        self._core.forget(model, None)
        self._run(self._core.api.load(model, config, new_request_id()))

    def unload(self, model: str) -> None:
        self._core.forget(model, None)
        self._run(self._core.api.unload(model, new_request_id()))

    # ---- monitoring and experiments (modelserve's own endpoints) ------------------------------

    def send_labels(
        self, model: str, ids: Sequence[str], labels: Sequence[Any] | Any
    ) -> dict[str, Any]:
        """The true labels of earlier predictions, by their ``.id``:
        ``{"accepted": n, "unknown": k}`` (docs/monitoring.md)."""
        return self._run(self._core.labels(model, ids, labels))

    def monitoring(self, model: str) -> dict[str, Any]:
        """Predictions, labels, accuracy and drift per version (docs/monitoring.md)."""
        return self._run(self._core.api.monitoring(model, new_request_id()))

    def experiment(
        self,
        model: str,
        spec: Mapping[str, Any] | None = None,
        *,
        action: ExperimentAction | None = None,
    ) -> dict[str, Any]:
        """The model's traffic experiment (docs/experiments.md): its status; with ``spec``,
        start one; ``action="promote"|"rollback"|"stop"`` ends it."""
        return self._run(self._core.experiment(model, spec, action))

    # ---- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
