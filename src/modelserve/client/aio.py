"""``AsyncClient``: the asyncio client, with the methods of ``Client`` as coroutines. One client
(one connection pool) serves every task of an event loop."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from modelserve.client.calls import AsyncTransport, Call, new_request_id
from modelserve.client.connection import Protocol, Tls, parse_endpoint
from modelserve.client.core import ClientCore, ExperimentAction, check_id, open_async
from modelserve.client.errors import ClientError, InvalidInputError, NotFoundError
from modelserve.client.inputs import mirror
from modelserve.client.results import RepositoryModel
from modelserve.client.retry import RetryPolicy
from modelserve.types import ModelMetadata, ServerMetadata

__all__ = ["AsyncClient"]

T = TypeVar("T")


def _version(version: str | int | None) -> str:
    return "" if version is None else str(version)


class AsyncClient:
    """``Client`` for asyncio: the same arguments, the same methods, awaited; use it as
    ``async with AsyncClient(url) as client:`` or ``await client.close()``."""

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
        api, transport = open_async(endpoint, token, timeout, binary)
        self._setup(api, transport, RetryPolicy(retries), endpoint.protocol)

    def _setup(self, api: Any, transport: AsyncTransport, policy: RetryPolicy, kind: str) -> None:
        self._core = ClientCore(api)
        self._transport = transport
        self._policy = policy
        self.protocol = kind
        """``http``, ``grpc`` or ``local``."""

    @classmethod
    async def local(
        cls, repository: str | Path, *, retries: int = 3, **settings: Any
    ) -> AsyncClient:
        """``Client.local`` for asyncio: ``await AsyncClient.local(repository)``. The models
        load in the engine's thread while this coroutine waits; inference runs on the engine's
        event loop, not the caller's."""
        import asyncio

        from modelserve.client.local import AsyncLocalTransport, LocalApi, LocalEngine

        engine = await asyncio.to_thread(LocalEngine.start, repository, settings)
        client = cls.__new__(cls)
        client._setup(LocalApi(), AsyncLocalTransport(engine), RetryPolicy(retries), "local")
        return client

    async def _run(self, call: Call[T]) -> T:
        return await self._policy.run_async(lambda: self._transport.call(call), call.idempotent)

    # ---- inference ---------------------------------------------------------------------------

    async def predict(
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
        meta = self._core.cached(model, v) or await self.metadata(model, v)
        if self._core.needs_extensions:
            await self._learn_extensions()
        prepared, call = self._core.infer(model, data, meta, v, outputs, id, parameters)
        try:
            response, answered_id = await self._run(call)
        except (InvalidInputError, NotFoundError):
            self._core.forget(model, v)  # the model may have changed since its metadata
            raise
        return mirror(prepared, response, answered_id or call.request_id)

    async def _learn_extensions(self) -> None:
        try:
            server: ServerMetadata | ClientError = await self.server_metadata()
        except ClientError as exc:
            server = exc
        self._core.use_extensions(server)

    # ---- models ------------------------------------------------------------------------------

    async def metadata(self, model: str, version: str | int | None = None) -> ModelMetadata:
        """The model's inputs, outputs, versions and platform."""
        v = _version(version)
        meta = await self._run(self._core.api.model_metadata(model, v, new_request_id()))
        return self._core.remember(model, v, meta)

    async def ready(self, model: str | None = None, version: str | int | None = None) -> bool:
        """Whether the server (no ``model``) or the model (version) is ready."""
        if model is None:
            return await self._run(self._core.api.ready(new_request_id()))
        return await self._run(
            self._core.api.model_ready(model, _version(version), new_request_id())
        )

    async def live(self) -> bool:
        return await self._run(self._core.api.live(new_request_id()))

    async def server_metadata(self) -> ServerMetadata:
        return await self._run(self._core.api.server_metadata(new_request_id()))

    async def models(self, ready_only: bool = False) -> list[RepositoryModel]:
        """Every version the repository knows (``POST /v2/repository/index``)."""
        return await self._run(self._core.api.index(ready_only, new_request_id()))

    async def load(self, model: str, config: Mapping[str, Any] | None = None) -> None:
        """Load or reload ``model`` (the server must run with ``--model-control-mode
        explicit``); ``config`` overrides its model.yaml."""
        self._core.forget(model, None)
        await self._run(self._core.api.load(model, config, new_request_id()))

    async def unload(self, model: str) -> None:
        self._core.forget(model, None)
        await self._run(self._core.api.unload(model, new_request_id()))

    # ---- monitoring and experiments (modelserve's own endpoints) ------------------------------

    async def send_labels(
        self, model: str, ids: Sequence[str], labels: Sequence[Any] | Any
    ) -> dict[str, Any]:
        """The true labels of earlier predictions, by their ``.id``:
        ``{"accepted": n, "unknown": k}`` (docs/monitoring.md)."""
        return await self._run(self._core.labels(model, ids, labels))

    async def monitoring(self, model: str) -> dict[str, Any]:
        """Predictions, labels, accuracy and drift per version (docs/monitoring.md)."""
        return await self._run(self._core.api.monitoring(model, new_request_id()))

    async def experiment(
        self,
        model: str,
        spec: Mapping[str, Any] | None = None,
        *,
        action: ExperimentAction | None = None,
    ) -> dict[str, Any]:
        """The model's traffic experiment (docs/experiments.md): its status; with ``spec``,
        start one; ``action="promote"|"rollback"|"stop"`` ends it."""
        return await self._run(self._core.experiment(model, spec, action))

    # ---- lifetime ----------------------------------------------------------------------------

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
