"""``Client.local(repository)``: the client's API on a model repository served in this process.

The engine is the server's own serving core (``modelserve.server.core``: repository, runtimes,
model.yaml, warm-up, batching, the dataplane) on an event loop in a thread of its own, with no
transport and no socket: a call hands the neutral request to the dataplane and gets the neutral
response back, no encoding either way. This module is the one place the client imports the
server side (the import contract lists it as the exception), and it is imported only by
``Client.local``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import orjson

from modelserve.client.calls import Call, ExperimentMethod, Label
from modelserve.client.errors import ClientError, UnsupportedError, error_for_http
from modelserve.client.results import RepositoryModel
from modelserve.codecs.tensors import to_bytes_element
from modelserve.errors import ErrorCode, ServerError, http_status
from modelserve.types import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
    Tensor,
    as_object_array,
)

if TYPE_CHECKING:
    from modelserve.server.core import ServingCore

__all__ = ["AsyncLocalTransport", "LocalApi", "LocalCall", "LocalEngine", "LocalTransport"]

T = TypeVar("T")
START_TIMEOUT_S = 600.0
"""Longest the models may take to load before ``Client.local`` gives up."""


@dataclass(slots=True, kw_only=True)
class LocalCall(Call[T]):
    run: Callable[[ServingCore], Awaitable[T]]
    """Given the serving core, on the engine's loop."""


class LocalEngine:
    """The serving core on its own event loop in a daemon thread."""

    def __init__(
        self, core: ServingCore, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        self.core = core
        self._loop = loop
        self._thread = thread
        self._closed = False

    @classmethod
    def start(cls, repository: str | Path, settings: Mapping[str, Any]) -> LocalEngine:
        """Build the core from server settings and load the models; blocks until done."""
        from modelserve.server.core import ServingCore

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="modelserve-local", daemon=True)
        thread.start()

        async def build() -> ServingCore:
            core = ServingCore.from_options(repository, settings)
            try:
                await core.telemetry.start()
                await core.load_models()
            except BaseException:
                await core.close()
                raise
            return core

        try:
            core = asyncio.run_coroutine_threadsafe(build(), loop).result(START_TIMEOUT_S)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            if not thread.is_alive():
                loop.close()  # its selector and self-pipe, else left to the garbage collector
            raise
        engine = cls(core, loop, thread)
        atexit.register(engine.stop)
        return engine

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coro.close()
            raise ClientError("the local client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def stop(self) -> None:
        """Drain, unload the models and end the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.stop)

        async def shut() -> None:
            await self.core.drain()
            await self.core.close()

        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()


def _error(exc: ServerError, request_id: str, what: str) -> ClientError:
    retry_after = 1.0 if exc.code is ErrorCode.RESOURCE_EXHAUSTED else None
    return error_for_http(http_status(exc.code), f"{what}: {exc.message}", request_id, retry_after)


def _bytes_tensor(tensor: Tensor) -> Tensor:
    """BYTES as the server's decoders make them: an object array of ``bytes``."""
    flat = [to_bytes_element(item) for item in tensor.data.reshape(-1)]
    return Tensor(
        tensor.name,
        tensor.datatype,
        tensor.shape,
        as_object_array(flat).reshape(tensor.shape),
        tensor.parameters,
    )


def _neutral(request: InferenceRequest) -> InferenceRequest:
    """The request as a transport would hand it over: contiguous arrays, BYTES as bytes."""
    inputs = tuple(
        _bytes_tensor(t)
        if t.datatype == "BYTES"
        else Tensor(t.name, t.datatype, t.shape, np.ascontiguousarray(t.data), t.parameters)
        for t in request.inputs
    )
    return InferenceRequest(
        request.model_name,
        inputs,
        request.model_version,
        request.id,
        request.parameters,
        request.outputs,
    )


class LocalApi:
    """Builds in-process calls (calls.Api): each one a coroutine on the dataplane."""

    def _call(
        self, what: str, rid: str, body: Callable[[ServingCore], Any], idempotent: bool = True
    ) -> LocalCall[Any]:
        async def run(core: ServingCore) -> Any:
            try:
                result = body(core)
                return await result if asyncio.iscoroutine(result) else result
            except ServerError as exc:
                raise _error(exc, rid, what) from None

        return LocalCall(what=what, request_id=rid, idempotent=idempotent, run=run)

    def server_metadata(self, rid: str) -> LocalCall[ServerMetadata]:
        return self._call("server metadata", rid, lambda core: core.dataplane.server_metadata())

    def live(self, rid: str) -> LocalCall[bool]:
        return self._call("server live", rid, lambda core: core.dataplane.live())

    def ready(self, rid: str) -> LocalCall[bool]:
        return self._call("server ready", rid, lambda core: core.dataplane.ready())

    def model_ready(self, model: str, version: str, rid: str) -> LocalCall[bool]:
        return self._call(
            f"ready {model}", rid, lambda core: core.dataplane.model_ready(model, version)
        )

    def model_metadata(self, model: str, version: str, rid: str) -> LocalCall[ModelMetadata]:
        return self._call(
            f"metadata {model}", rid, lambda core: core.dataplane.model_metadata(model, version)
        )

    def index(self, ready_only: bool, rid: str) -> LocalCall[list[RepositoryModel]]:
        def rows(core: ServingCore) -> list[RepositoryModel]:
            return [
                RepositoryModel(r.name, r.version, r.state.value, r.reason)
                for r in core.dataplane.repository_index(ready_only)
            ]

        return self._call("repository index", rid, rows)

    def load(self, model: str, config: Mapping[str, Any] | None, rid: str) -> LocalCall[None]:
        document = orjson.dumps(dict(config)).decode() if config is not None else None
        return self._call(
            f"load {model}",
            rid,
            lambda core: core.dataplane.load_model(model, document),
            idempotent=False,
        )

    def unload(self, model: str, rid: str) -> LocalCall[None]:
        return self._call(
            f"unload {model}", rid, lambda core: core.dataplane.unload_model(model), False
        )

    def infer(
        self, request: InferenceRequest, rid: str
    ) -> LocalCall[tuple[InferenceResponse, str]]:
        neutral = _neutral(request)

        async def infer(core: ServingCore) -> tuple[InferenceResponse, str]:
            observability = core.telemetry.observability
            ctx = observability.begin("local", "ModelInfer", request.model_name, rid)
            status = "OK"
            try:
                response = await core.dataplane.infer(neutral)
            except ServerError as exc:
                status = exc.code.value
                raise
            except BaseException:
                status = "INTERNAL"
                raise
            finally:
                observability.end(ctx, status)
            return response, ctx.request_id

        return self._call(f"infer {request.model_name}", rid, infer)

    def _in_process(self, what: str) -> UnsupportedError:
        return UnsupportedError(
            f"{what} is a REST endpoint of a running modelserve; a local client has no server"
        )

    def labels(self, model: str, labels: Sequence[Label], rid: str) -> LocalCall[dict[str, Any]]:
        raise self._in_process("labels")

    def monitoring(self, model: str, rid: str) -> LocalCall[dict[str, Any]]:
        raise self._in_process("monitoring")

    def experiment(
        self, model: str, method: ExperimentMethod, body: Mapping[str, Any] | None, rid: str
    ) -> LocalCall[dict[str, Any]]:
        raise self._in_process("experiment")


def _local(call: Call[T]) -> LocalCall[T]:
    if not isinstance(call, LocalCall):
        raise TypeError(f"a local transport cannot run {type(call).__name__}")
    return cast("LocalCall[T]", call)


class LocalTransport:
    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine

    def call(self, call: Call[T]) -> T:
        local = _local(call)
        return self._engine.submit(_run(local, self._engine.core)).result()

    def close(self) -> None:
        self._engine.stop()


class AsyncLocalTransport:
    """The engine's loop does the work; the caller's loop only awaits the result."""

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine

    def call(self, call: Call[T]) -> Awaitable[T]:
        local = _local(call)
        return asyncio.wrap_future(self._engine.submit(_run(local, self._engine.core)))

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.stop)


async def _run(call: LocalCall[T], core: ServingCore) -> T:
    return await call.run(core)
