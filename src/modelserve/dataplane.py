"""The transport-neutral use cases both REST and gRPC call: health, metadata, config, infer,
repository index. Nothing here knows about HTTP or gRPC.

A model with a response cache (scheduling/cache.py) is looked up before its queue: a hit is
answered at once, a miss runs as usual and its answer is stored."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from modelserve.config.model import parse_model_config
from modelserve.errors import (
    ErrorCode,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    ModelLoadError,
    NotFound,
    ServerError,
    Unavailable,
)
from modelserve.monitoring.events import EventBus
from modelserve.observability import ModelSample, ModelStatistics, Observability
from modelserve.observability.metrics import UNKNOWN_MODEL
from modelserve.routing.router import Router
from modelserve.runtimes.base import Arrays
from modelserve.scheduling.batcher import Completed
from modelserve.scheduling.cache import CachePartition, requested_key
from modelserve.scheduling.sequences import sequence_request
from modelserve.serving.lifecycle import Lifecycle
from modelserve.serving.model import LoadedModel
from modelserve.serving.repository import ModelRepository
from modelserve.serving.shared_memory import REGION, SharedMemory, read_inputs, write_outputs
from modelserve.types import (
    IndexEntry,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Parameters,
    ServerMetadata,
    Tensor,
)

EXTENSIONS: tuple[str, ...] = (
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "parameters",
    "statistics",
)


class DataPlane:
    def __init__(
        self,
        repository: ModelRepository,
        router: Router,
        lifecycle: Lifecycle,
        server_name: str = "modelserve",
        server_version: str = "0.0.0",
        observability: Observability | None = None,
        events: EventBus | None = None,
        shared_memory: SharedMemory | None = None,
    ) -> None:
        """``events``: where one InferenceEvent per inference request is published (payload
        logging and monitoring subscribe to it); nothing is built while it has no consumer."""
        self._repository = repository
        self.shared_memory = shared_memory if shared_memory is not None else SharedMemory()
        self._router = router
        self._lifecycle = lifecycle
        self._accepting = True
        extensions = EXTENSIONS + (("system_shared_memory",) if self.shared_memory.enabled else ())
        self._metadata = ServerMetadata(server_name, server_version, tuple(sorted(extensions)))
        self._ready = False
        self._observability = observability if observability is not None else Observability()
        self._observability.watch_models(self._model_samples)
        self.events = events if events is not None else EventBus()

    # ---- server ------------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self._ready

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def stop_accepting(self) -> None:
        """From now on inference is refused cleanly (503 / UNAVAILABLE): the server drains."""
        self._accepting = False

    @property
    def accepting(self) -> bool:
        return self._accepting

    def server_metadata(self) -> ServerMetadata:
        return self._metadata

    # ---- models ------------------------------------------------------------------------------

    def model_ready(self, name: str, version: str = "") -> bool:
        """False for a known model without a READY version; NotFound for an unknown one."""
        return self._router.is_ready(name, version)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self._router.resolve(name, version)
        versions = (version,) if version else tuple(self._repository.ready_versions(name))
        return ModelMetadata(model.name, versions, model.platform, model.inputs, model.outputs)

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        return self._router.resolve(name, version).triton_config()

    def validation_report(self, name: str, version: str = "") -> dict[str, Any]:
        """The latest validation gate's report of a version (docs/validation.md)."""
        return self._repository.validation_report(name, version).to_dict()

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self._repository.index(ready_only)

    # ---- inference ---------------------------------------------------------------------------

    async def load_model(self, name: str, config_json: str | None = None) -> None:
        """The repository extension's load: (re)load a model, optionally with a config
        override: a JSON document in model.yaml's schema, or Triton's JSON model configuration
        (``{"max_batch_size": 16, "input": [...]}``). Explicit model-control mode only."""
        self._check_control("load")
        override = None
        if config_json:
            try:
                document = orjson.loads(config_json)
            except orjson.JSONDecodeError as exc:
                raise InvalidArgument(f"the 'config' parameter is not valid JSON: {exc}") from None
            source = Path(name) / "config parameter"
            # Triton's format (protobuf's json_format) only when a load request brings a config
            from modelserve.config.pbtxt import from_triton_json, looks_like_triton_json

            try:
                if isinstance(document, dict) and looks_like_triton_json(document):
                    override = from_triton_json(document, source)
                else:
                    override = parse_model_config(document, source)
            except ModelLoadError as exc:
                raise InvalidArgument(str(exc)) from None
            if (
                override.trust
                or (override.runtime is not None and ":" in override.runtime)
                or override.logging is not None
                or override.monitoring is not None
            ):
                # Whoever holds an API token must not turn on unpickling, import arbitrary
                # modules or make the server write files and connect to hosts (payload
                # logging, monitoring's reference files and webhooks): only the operator, in
                # model.yaml on disk (docs/security.md).
                raise InvalidArgument(
                    "a config given through the API may not set 'trust', 'logging' or "
                    "'monitoring' or name a 'module:Class' runtime; put those in model.yaml "
                    "on disk"
                )
        await self._lifecycle.load_on_request(name, override)

    async def unload_model(self, name: str) -> None:
        self._check_control("unload")
        self._repository.get_entry(name)
        await self._lifecycle.unload(name)

    def _check_control(self, action: str) -> None:
        if self._lifecycle.mode != "explicit":
            raise FailedPrecondition(
                f"model {action} is not allowed in model control mode "
                f"'{self._lifecycle.mode}'; start the server with --model-control-mode explicit"
            )

    def check_capacity(self, name: str, version: str = "") -> None:
        """Refuse (ResourceExhausted, counted like a refused inference) a request for a version
        whose queue is full, before the transport decodes its body: decoding a large body only
        to refuse it costs what an overloaded server lacks. Anything else wrong with the
        request is left to ``infer``."""
        try:
            model = self._router.resolve(name, version)
        except ServerError:
            return
        try:
            model.batcher.check_capacity()
        except ServerError as exc:
            self._record_failure(name, version, model, exc.code, time.perf_counter_ns())
            if self.events.active:
                request = InferenceRequest(name, (), version)
                self.events.failed(request, model.version, exc.code, exc.message, None)
            raise

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Run one inference; its outcome and timings go to the statistics and metrics."""
        # Requests in flight (modelserve_inflight_requests): queued, running or being answered.
        self._observability.inflight += 1
        try:
            return await self._infer(request)
        finally:
            self._observability.inflight -= 1

    async def _infer(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        model: LoadedModel | None = None
        arm: str | None = None
        try:
            if not self._accepting:
                raise Unavailable("the server is shutting down")
            model, arm = self._router.route(
                request.model_name, request.model_version, request.parameters
            )
            if any(t.parameters and REGION in t.parameters for t in request.inputs):
                request.inputs = read_inputs(self.shared_memory, request.inputs)
            if model.stream_slots is not None:
                raise InvalidArgument(
                    f"a unary inference request doesn't support models with decoupled "
                    f"transaction policy: model '{model.name}' answers with zero, one or many "
                    "responses; send its requests on a gRPC stream (ModelStreamInfer)"
                )
            arrays = model.check_inputs(request)
            specs = model.check_requested(request.outputs)
            classes = model.requested_classes(request.outputs)
            batch = request.inputs[0].shape[0] if model.max_batch_size > 0 else None
            deadline = _deadline(request.parameters, model.config.default_timeout_ms)
            sequence = None
            if model.sequences is not None:  # stateful: in order, never cached
                sequence = sequence_request(model.name, request.parameters)
                lookup = None
            else:
                lookup = _Lookup.start(model.answer_cache(), arrays, requested_key(request.outputs))
            if lookup is not None and lookup.found is not None:
                outputs = model.build_outputs(lookup.found, specs, batch)
                if classes:
                    outputs = model.classify(outputs, classes)
                if request.outputs is not None and any(
                    REGION in o.parameters for o in request.outputs
                ):
                    outputs = write_outputs(self.shared_memory, outputs, request.outputs)
                self._observability.infer_cached(
                    model.name, model.version, batch or 1, started, lookup.took(), request.id
                )
                if arm is not None:
                    self._router.observe(model.name, model.version, arm, None, _ms(started))
                if self.events.active:
                    self.events.succeeded(request, model.version, outputs, started, arm)
                response = InferenceResponse(model.name, model.version, outputs, request.id)
                self._router.shadow(request, response)
                return response
            submitted = time.perf_counter_ns()
            if sequence is None:
                done = await model.batcher.submit(arrays, batch or 1, deadline, model.wanted(specs))
            else:
                assert model.sequences is not None
                done = await model.sequences.submit(
                    model.batcher.submit, arrays, batch or 1, deadline, sequence
                )
            received = time.perf_counter_ns()
            outputs = model.build_outputs(done.outputs, specs, batch)
            miss_ns = lookup.store(outputs) if lookup is not None else None
            if classes:
                outputs = model.classify(outputs, classes)
            if request.outputs is not None and any(REGION in o.parameters for o in request.outputs):
                outputs = write_outputs(self.shared_memory, outputs, request.outputs)
            response = InferenceResponse(model.name, model.version, outputs, request.id)
        except Exception as exc:
            code = exc.code if isinstance(exc, ServerError) else InternalError.code
            self._record_failure(
                request.model_name, request.model_version, model, code, started, request.id
            )
            if arm is not None and model is not None:
                self._router.observe(model.name, model.version, arm, code, _ms(started))
            if self.events.active:
                message = exc.message if isinstance(exc, ServerError) else "internal server error"
                version = model.version if model is not None else ""
                self.events.failed(request, version, code, message, started, arm)
            raise
        self._observability.infer_succeeded(
            model.name,
            model.version,
            batch or 1,
            done,
            started,
            submitted,
            received,
            request.id,
            cache_miss_ns=miss_ns,
        )
        if arm is not None:
            self._router.observe(model.name, model.version, arm, None, _ms(started))
        if self.events.active:
            self.events.succeeded(request, model.version, response.outputs, started, arm)
        self._router.shadow(request, response)
        return response

    async def infer_shadow(self, request: InferenceRequest, version: str) -> InferenceResponse:
        """A shadow copy of an answered request, on ``version`` of the same model (serving,
        or held after failing its validation gate with ``on_fail: shadow``): through that
        version's batcher like any request, never cached, never mirrored again. Its answer
        goes on the event bus with arm ``shadow`` (so the monitoring store keeps the shadow's
        predictions under the primary's request id, and labels score it too)."""
        started = time.perf_counter_ns()
        model = self._repository.mirror_target(request.model_name, version)
        if model.sequences is not None or model.stream_slots is not None:
            raise InvalidArgument(f"model '{model.name}' keeps state or streams: not mirrored")
        arrays = model.check_inputs(request)
        specs = model.check_requested(request.outputs)
        classes = model.requested_classes(request.outputs)
        batch = request.inputs[0].shape[0] if model.max_batch_size > 0 else None
        done = await model.batcher.submit(arrays, batch or 1, None, model.wanted(specs))
        outputs = model.build_outputs(done.outputs, specs, batch)
        if classes:
            outputs = model.classify(outputs, classes)
        if self.events.active:
            self.events.succeeded(request, model.version, outputs, started, "shadow")
        return InferenceResponse(model.name, model.version, outputs, request.id)

    def is_decoupled(self, name: str, version: str = "") -> bool:
        """True when (name, version) is served by a decoupled model (False when unknown: the
        request then fails as any other would)."""
        try:
            return self._router.resolve(name, version).stream_slots is not None
        except ServerError:
            return False

    async def infer_stream(self, request: InferenceRequest) -> AsyncIterator[InferenceResponse]:
        """A decoupled model's responses to one request, as its predict yields them (zero, one
        or many), each with the request's id; counted as one inference when the last is out,
        and in ``modelserve_inflight_requests`` until then."""
        self._observability.inflight += 1
        try:
            async for response in self._infer_stream(request):
                yield response
        finally:
            self._observability.inflight -= 1

    async def _infer_stream(self, request: InferenceRequest) -> AsyncIterator[InferenceResponse]:
        started = time.perf_counter_ns()
        model: LoadedModel | None = None
        try:
            if not self._accepting:
                raise Unavailable("the server is shutting down")
            model = self._router.resolve(request.model_name, request.model_version)
            slots = model.stream_slots
            if slots is None or model.runtime is None:
                raise InvalidArgument(f"model '{model.name}' is not decoupled")
            if any(t.parameters and REGION in t.parameters for t in request.inputs):
                request.inputs = read_inputs(self.shared_memory, request.inputs)
            if request.outputs is not None and any(REGION in o.parameters for o in request.outputs):
                raise InvalidArgument(
                    "a decoupled model's outputs cannot go to shared memory: each of its "
                    "responses is streamed"
                )
            arrays = model.check_inputs(request)
            specs = model.check_requested(request.outputs)
            classes = model.requested_classes(request.outputs)
            batch = request.inputs[0].shape[0] if model.max_batch_size > 0 else None
            loop = asyncio.get_running_loop()
            async with slots:
                submitted = time.perf_counter_ns()
                responses = model.runtime.stream(arrays)
                while True:
                    produced = await loop.run_in_executor(None, _next_response, model, responses)
                    if produced is None:
                        break
                    outputs = model.build_outputs(produced, specs, batch)
                    if classes:
                        outputs = model.classify(outputs, classes)
                    yield InferenceResponse(model.name, model.version, outputs, request.id)
                received = time.perf_counter_ns()
        except Exception as exc:
            code = exc.code if isinstance(exc, ServerError) else InternalError.code
            self._record_failure(
                request.model_name, request.model_version, model, code, started, request.id
            )
            raise
        timing = Completed({}, batch or 1, 0, received - submitted)
        self._observability.infer_succeeded(
            model.name, model.version, batch or 1, timing, started, submitted, received, request.id
        )

    async def run_step(
        self, name: str, version: str, arrays: Arrays, deadline: float | None
    ) -> Completed:
        """A pipeline's model step: a request to that model (router, input checks, batcher),
        counted in its statistics and metrics as its own; returns every output it declares,
        in its declared datatypes. The request's context stays the pipeline's."""
        started = time.perf_counter_ns()
        model: LoadedModel | None = None
        try:
            model = self._router.resolve(name, version)
            if model.sequences is not None:
                raise InvalidArgument(
                    f"model '{name}' serves sequences (sequence_batching): not a pipeline step"
                )
            batch = model.check_arrays(arrays)
            lookup = _Lookup.start(model.answer_cache(), arrays, None)
            if lookup is not None and lookup.found is not None:
                tensors = model.build_outputs(lookup.found, model.outputs, batch)
                self._observability.infer_cached(
                    model.name, model.version, batch or 1, started, lookup.took(), None, True
                )
                return Completed({t.name: t.data for t in tensors}, 0, 0, 0, leads_batch=False)
            submitted = time.perf_counter_ns()
            done = await model.batcher.submit(arrays, batch or 1, deadline)
            received = time.perf_counter_ns()
            tensors = model.build_outputs(done.outputs, model.outputs, batch)
            miss_ns = lookup.store(tensors) if lookup is not None else None
        except Exception as exc:
            code = exc.code if isinstance(exc, ServerError) else InternalError.code
            self._record_failure(name, version, model, code, started, nested=True)
            raise
        self._observability.infer_succeeded(
            model.name,
            model.version,
            batch or 1,
            done,
            started,
            submitted,
            received,
            None,
            nested=True,
            cache_miss_ns=miss_ns,
        )
        done.outputs = {tensor.name: tensor.data for tensor in tensors}
        return done

    def record_rejected(self, name: str, version: str, code: ErrorCode, message: str = "") -> None:
        """An inference request the transport could not decode (it never reached ``infer``)."""
        self._record_failure(name, version, None, code, None)
        if self.events.active:
            self.events.failed(InferenceRequest(name, (), version), "", code, message, None)

    def _record_failure(
        self,
        name: str,
        version: str,
        model: LoadedModel | None,
        code: ErrorCode,
        started: int | None,
        request_id: str | None = None,
        nested: bool = False,
    ) -> None:
        """Labels name only what the repository knows, so clients cannot grow the series; the
        Triton statistics count the failure when a serving version is found."""
        if model is None:
            with contextlib.suppress(ServerError):
                model = self._router.resolve(name, version)
        if model is not None:
            label = (model.name, model.version)
        else:
            try:
                known = self._repository.get_entry(name).versions
            except NotFound:
                label = (UNKNOWN_MODEL, "")
            else:
                label = (name, version if version in known else "")
        self._observability.infer_failed(
            label, (name, version), code, started, request_id, model is not None, nested
        )

    # ---- statistics --------------------------------------------------------------------------

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        """Triton's statistics of every READY version (of one model when ``name`` is given,
        or of one version); NotFound / Unavailable as for inference otherwise."""
        if name and version:
            model = self._router.resolve(name, version)
            keys = [(model.name, model.version)]
        elif name:
            ready = self._repository.ready_versions(name)
            if not ready:
                self._router.resolve(name)  # raises Unavailable with the reason
            keys = [(name, v) for v in ready]
        else:
            models = self._repository.loaded_models()
            keys = sorted({(m.name, m.version) for m in models}, key=lambda k: (k[0], int(k[1])))
        return [self._observability.stats.snapshot(n, v) for n, v in keys]

    def loaded_models(self) -> list[LoadedModel]:
        """Every built model version (the dashboard shows their runtimes)."""
        return self._repository.loaded_models()

    def _model_samples(self) -> list[ModelSample]:
        """Every version the repository knows, with its batcher's state when it is loaded."""
        loaded = {(m.name, m.version): m for m in self._repository.loaded_models()}
        samples = []
        for row in self._repository.index():
            model = loaded.get((row.name, row.version))
            if model is None:
                samples.append(ModelSample(row.name, row.version, row.state.value))
            else:
                cache = model.cache
                samples.append(
                    ModelSample(
                        row.name,
                        row.version,
                        row.state.value,
                        model.batcher.queue_depth,
                        model.batcher.in_flight,
                        model.load_ns / 1e9,
                        cache.bytes if cache is not None else None,
                        len(cache.entries) if cache is not None else 0,
                    )
                )
        return samples


class _Lookup:
    """One request's trip through a response cache: the lookup, then storing a miss."""

    __slots__ = ("began", "cache", "found", "generation", "key", "looked_ns")

    def __init__(self, cache: CachePartition, arrays: Arrays, requested: Any) -> None:
        self.began = time.perf_counter_ns()
        self.cache = cache
        self.generation = cache.generation
        self.key = cache.key(arrays, requested)
        self.found = cache.get(self.key)
        self.looked_ns = time.perf_counter_ns() - self.began

    @classmethod
    def start(cls, cache: CachePartition | None, arrays: Arrays, requested: Any) -> _Lookup | None:
        return None if cache is None else cls(cache, arrays, requested)

    def took(self) -> int:
        """A hit: the time to find it and make the answer's tensors from it."""
        return time.perf_counter_ns() - self.began

    def store(self, outputs: tuple[Tensor, ...]) -> int:
        """A miss: keep the computed answer; returns the lookup and insertion time."""
        began = time.perf_counter_ns()
        self.cache.put(self.key, {t.name: t.data for t in outputs}, self.generation)
        return self.looked_ns + time.perf_counter_ns() - began


def _next_response(model: LoadedModel, responses: Iterator[Arrays]) -> Arrays | None:
    """The next response a decoupled model yields (None when it is done), in a worker thread;
    what the model raises becomes the request's error."""
    try:
        return next(responses)
    except StopIteration:
        return None
    except ValueError as exc:
        raise InvalidArgument(f"model '{model.name}' rejected the input: {exc}") from exc
    except Exception as exc:
        raise InternalError(f"model '{model.name}' failed: {type(exc).__name__}: {exc}") from exc


def _ms(started_ns: int) -> float:
    return (time.perf_counter_ns() - started_ns) / 1e6


def _deadline(parameters: Parameters, default_timeout_ms: int) -> float | None:
    """A monotonic deadline from the request's ``timeout`` parameter (microseconds, as Triton)
    or the model's default."""
    timeout = parameters.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise InvalidArgument("parameter 'timeout' must be a non-negative integer (µs)")
        if timeout > 0:
            return time.monotonic() + timeout / 1e6
    if default_timeout_ms > 0:
        return time.monotonic() + default_timeout_ms / 1e3
    return None
