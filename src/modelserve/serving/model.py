"""A loaded model version: its declared signature (config merged with what the artifact says),
request validation against it, and its Triton model-configuration document.

A version is served by a ``Scheduler``: the batcher for a model with a runtime, or whatever a
model kind brings (a pipeline runs its graph of steps). A version may depend on other models
(a pipeline's model steps): the lifecycle keeps it out of service while they are not READY.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from modelserve.codecs.tensors import V2_TO_NUMPY, V2_TO_TRITON, v2_datatype
from modelserve.config.model import DynamicBatching, ModelConfig, TensorConfig
from modelserve.errors import InternalError, InvalidArgument, ModelLoadError
from modelserve.runtimes.base import Arrays, LoadContext, Runtime
from modelserve.scheduling.batcher import Batcher, BatchPolicy, Completed
from modelserve.scheduling.cache import CachePartition
from modelserve.scheduling.executor import usable_cores
from modelserve.scheduling.sequences import Sequences
from modelserve.serving.classification import classify, load_labels, requested_classes
from modelserve.types import InferenceRequest, RequestedOutput, Tensor, TensorSpec, shape_of

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "Dependency",
    "LoadedModel",
    "ModelKind",
    "Scheduler",
    "build_loaded_model",
    "max_batch_size",
]

log = logging.getLogger("modelserve.serving.model")

Predict = Callable[[Arrays], Arrays]

DEFAULT_MAX_BATCH_SIZE = 64
"""max_batch_size given to a model whose artifact has a variable first dimension everywhere and
whose config says nothing."""
GPU_PROVIDERS = frozenset({"tensorrt", "cuda"})
"""Execution providers that put a model's instances on a GPU (``instance_group`` KIND_GPU)."""


class Scheduler(Protocol):
    """What serves a loaded version's requests: ``Batcher`` for a runtime's model."""

    @property
    def queue_depth(self) -> int: ...
    @property
    def in_flight(self) -> int: ...

    def check_capacity(self) -> None:
        """ResourceExhausted when a request submitted now would be refused for lack of room."""

    async def submit(
        self,
        arrays: Arrays,
        rows: int,
        deadline: float | None = None,
        outputs: frozenset[str] | None = None,
    ) -> Completed:
        """Run one request (``rows`` on dimension 0) and return its outputs and timings;
        ``outputs``: the only ones it wants (None: all), a hint the scheduler may use."""

    def close(self) -> None:
        """Refuse new work; what is queued or running still completes."""

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running."""


@dataclass(frozen=True, slots=True)
class Dependency:
    """A model another one needs READY to serve (a pipeline's model step)."""

    name: str
    version: str = ""
    """The version it needs; empty: the one a request naming none gets."""
    label: str = ""
    """How the dependent names it in reasons (e.g. "step 'detect'")."""


class ModelKind(Protocol):
    """Builds the version of a model whose ``runtime`` is not a runtime but a kind of model
    served otherwise (``pipeline``); blocking, called from a loader thread."""

    def __call__(self, ctx: LoadContext) -> LoadedModel: ...


@dataclass(slots=True)
class LoadedModel:
    name: str
    version: str
    platform: str
    runtime_name: str
    config: ModelConfig
    runtime: Runtime | None
    """The framework adapter; None for a model kind without one (a pipeline)."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    batcher: Scheduler
    load_ns: int = 0
    """How long loading and warming up this version took (set by the repository)."""
    cache: CachePartition | None = None
    """Its response cache (set by the repository for ``response_cache`` in model.yaml)."""
    stream_slots: asyncio.Semaphore | None = None
    """A decoupled model's executions at once (``instances``); None for other models."""
    sequences: Sequences | None = None
    """A sequence model's sequences (``sequence_batching``): requests go through them."""
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Class labels per output, for the classification extension."""
    predict: Predict | None = None
    """The runtime's predict on the declared shapes (``reshape`` applied): what the batcher
    and warm-up call."""
    notices: tuple[str, ...] = ()
    """What the operator should know while it serves (a fallback from ``accelerate: onnx`` or
    from an execution provider): the repository index's reason for the READY version."""
    _inputs_by_name: dict[str, TensorSpec] = field(init=False)
    _outputs_by_name: dict[str, TensorSpec] = field(init=False)

    def __post_init__(self) -> None:
        self._inputs_by_name = {t.name: t for t in self.inputs}
        self._outputs_by_name = {t.name: t for t in self.outputs}

    # ---- dependencies ------------------------------------------------------------------------

    def dependencies(self) -> tuple[Dependency, ...]:
        """The models this version needs READY to serve (none for a runtime's model)."""
        return ()

    def check_dependencies(self, models: Mapping[Dependency, LoadedModel]) -> str | None:
        """Given the versions serving each dependency, why they do not fit (None: they do)."""
        return None

    def answer_cache(self) -> CachePartition | None:
        """The response cache a request may use now (None: answers are not cached)."""
        return self.cache

    # ---- request checks ----------------------------------------------------------------------

    def check_inputs(self, request: InferenceRequest) -> Arrays:
        """Validate names, datatypes, shapes and batch size; return the arrays by name."""
        arrays: Arrays = {}
        batch: int | None = None
        for tensor in request.inputs:
            cast = self._check_input(tensor.name, tensor.datatype, tensor.shape)
            batch = self._check_rows(tensor.shape, batch)
            data = tensor.data
            arrays[tensor.name] = data if cast is None else data.astype(V2_TO_NUMPY[cast])
        self._check_complete(arrays, batch)
        return arrays

    def check_arrays(self, arrays: Arrays) -> int | None:
        """``check_inputs`` for named arrays (a pipeline step's); returns the batch size (None
        for a model without batching)."""
        batch: int | None = None
        for name, array in list(arrays.items()):
            try:
                datatype = v2_datatype(array.dtype)
            except ValueError as exc:
                raise InvalidArgument(f"input '{name}': {exc}") from None
            shape = shape_of(array)
            cast = self._check_input(name, datatype, shape)
            batch = self._check_rows(shape, batch)
            if cast is not None:
                arrays[name] = array.astype(V2_TO_NUMPY[cast])
        self._check_complete(arrays, batch)
        return batch

    def _check_input(self, name: str, datatype: str, shape: tuple[int, ...]) -> str | None:
        """Check one input; returns the datatype to cast it to (an accepted other datatype,
        ``accept_datatypes``), None when it is the declared one."""
        spec = self._inputs_by_name.get(name)
        if spec is None:
            raise InvalidArgument(
                f"model '{self.name}' has no input '{name}'; "
                f"its inputs are {sorted(self._inputs_by_name)}"
            )
        cast = None
        if datatype != spec.datatype:
            if datatype not in spec.accepts:
                also = f" (or {', '.join(spec.accepts)})" if spec.accepts else ""
                raise InvalidArgument(
                    f"input '{name}': datatype {datatype} given, model expects "
                    f"{spec.datatype}{also}"
                )
            cast = spec.datatype
        if not _shape_fits(shape, spec.shape):
            raise InvalidArgument(
                f"input '{name}': shape {list(shape)} does not match the model's {list(spec.shape)}"
            )
        return cast

    def _check_rows(self, shape: tuple[int, ...], batch: int | None) -> int | None:
        if self.max_batch_size > 0:
            rows = shape[0]
            if batch is not None and rows != batch:
                raise InvalidArgument(f"inputs disagree on the batch size ({batch} and {rows})")
            return rows
        return batch

    def _check_complete(self, arrays: Arrays, batch: int | None) -> None:
        missing = [name for name in self._inputs_by_name if name not in arrays]
        if missing:
            raise InvalidArgument(f"model '{self.name}' needs input(s) {missing}")
        if batch is not None and batch > self.max_batch_size:
            raise InvalidArgument(
                f"batch size {batch} exceeds the model's max_batch_size {self.max_batch_size}"
            )

    def wanted(self, specs: tuple[TensorSpec, ...]) -> frozenset[str] | None:
        """The names of ``specs`` (checked requested outputs) when they are fewer than the
        model's outputs: what the runtime needs to compute; None when all are wanted."""
        if specs is self.outputs or len(specs) >= len(self.outputs):
            return None
        return frozenset(spec.name for spec in specs)

    def check_requested(
        self, requested: tuple[RequestedOutput, ...] | None
    ) -> tuple[TensorSpec, ...]:
        if requested is None:
            return self.outputs
        specs = []
        for out in requested:
            spec = self._outputs_by_name.get(out.name)
            if spec is None:
                raise InvalidArgument(
                    f"model '{self.name}' has no output '{out.name}'; "
                    f"its outputs are {sorted(self._outputs_by_name)}"
                )
            specs.append(spec)
        return tuple(specs)

    def requested_classes(
        self, requested: tuple[RequestedOutput, ...] | None
    ) -> dict[str, int] | None:
        """The class count each output is asked for (the classification extension), None
        when none is; InvalidArgument for a bad count or an output of a type without scores."""
        return requested_classes(requested, self._outputs_by_name)

    def classify(
        self, outputs: tuple[Tensor, ...], classes: Mapping[str, int]
    ) -> tuple[Tensor, ...]:
        """``outputs`` with those asked for classes replaced by their top classes."""
        batched = self.max_batch_size > 0
        answered = []
        for tensor in outputs:
            count = classes.get(tensor.name)
            if count is None:
                answered.append(tensor)
                continue
            labels = self.labels.get(tensor.name, ())
            array = classify(tensor.data, count, batched, labels)
            answered.append(Tensor(tensor.name, "BYTES", shape_of(array), array))
        return tuple(answered)

    def build_outputs(
        self, produced: Arrays, specs: tuple[TensorSpec, ...], batch: int | None
    ) -> tuple[Tensor, ...]:
        """Pick the wanted outputs, cast them to their declared datatype, check row counts."""
        tensors = []
        for spec in specs:
            value = produced.get(spec.name)
            if value is None:
                raise InternalError(f"model '{self.name}' did not produce output '{spec.name}'")
            array = _as_datatype(np.asarray(value), spec.datatype)
            if batch is not None and (array.ndim == 0 or array.shape[0] != batch):
                raise InternalError(
                    f"model '{self.name}' returned {array.shape[0] if array.ndim else 0} rows "
                    f"for output '{spec.name}' but was given {batch}"
                )
            tensors.append(Tensor(spec.name, spec.datatype, shape_of(array), array))
        return tuple(tensors)

    # ---- documents -------------------------------------------------------------------------

    def triton_config(self) -> dict[str, Any]:
        """The Triton model configuration (protobuf-JSON form) perf_analyzer and clients read."""
        skip = 1 if self.max_batch_size > 0 else 0

        declared = {t.name: t for t in [*(self.config.inputs or ()), *(self.config.outputs or ())]}

        def tensor(spec: TensorSpec) -> dict[str, Any]:
            doc: dict[str, Any] = {
                "name": spec.name,
                "data_type": V2_TO_TRITON[spec.datatype],
                "dims": list(spec.shape[skip:]),
            }
            config = declared.get(spec.name)
            if config is not None and config.reshape is not None:
                doc["reshape"] = {"shape": config.reshape}
            if config is not None and config.labels is not None:
                doc["label_filename"] = config.labels
            return doc

        policy = self.config.version_policy
        if policy.all:
            version_policy: dict[str, Any] = {"all": {}}
        elif policy.specific is not None:
            version_policy = {"specific": {"versions": policy.specific}}
        else:
            version_policy = {"latest": {"num_versions": policy.latest}}
        doc: dict[str, Any] = {
            "name": self.name,
            "platform": self.platform,
            "backend": self.runtime_name,
            "version_policy": version_policy,
            "max_batch_size": self.max_batch_size,
            "input": [tensor(s) for s in self.inputs],
            "output": [tensor(s) for s in self.outputs],
            "instance_group": [
                {"name": self.name, "kind": "KIND_CPU", "count": self.config.instances}
            ],
            "parameters": {
                key: {"string_value": str(value)} for key, value in self.config.parameters.items()
            },
        }
        providers = self.runtime.execution_providers() if self.runtime is not None else ()
        if providers:
            doc["parameters"]["execution_providers"] = {"string_value": ",".join(providers)}
            if providers[0] in GPU_PROVIDERS:
                doc["instance_group"][0] |= {
                    "kind": "KIND_GPU",
                    "gpus": [self.config.execution.device_id],
                }
        if self.cache is not None:
            doc["response_cache"] = {"enable": True}
        if self.config.decoupled:
            doc["model_transaction_policy"] = {"decoupled": True}
        if self.config.sequence_batching is not None:
            idle = self.config.sequence_batching.max_sequence_idle_us
            doc["sequence_batching"] = {"max_sequence_idle_microseconds": idle}
        batching = self.config.dynamic_batching
        if batching is not None:
            doc["dynamic_batching"] = {
                "max_queue_delay_microseconds": batching.max_queue_delay_us,
                "preferred_batch_size": batching.preferred_batch_sizes,
                "default_queue_policy": {
                    "max_queue_size": self.config.max_queue_size,
                    "default_timeout_microseconds": self.config.default_timeout_ms * 1000,
                },
            }
        return doc


def _shape_fits(shape: tuple[int, ...], spec: tuple[int, ...]) -> bool:
    if len(shape) != len(spec):
        return False
    return all(want == -1 or got == want for got, want in zip(shape, spec, strict=True))


def _as_datatype(array: npt.NDArray[Any], datatype: str) -> npt.NDArray[Any]:
    dtype = V2_TO_NUMPY[datatype]
    if array.dtype == dtype:
        return array
    if datatype == "BYTES":
        out = np.empty(array.shape, dtype=object)
        for index, item in np.ndenumerate(array):
            out[index] = item if isinstance(item, bytes) else str(item).encode("utf-8")
        return out
    return array.astype(dtype)


def _specs(configured: list[TensorConfig] | None) -> tuple[TensorSpec, ...] | None:
    if configured is None:
        return None
    return tuple(
        TensorSpec(t.name, t.datatype, tuple(t.shape), tuple(t.accept_datatypes or ()))
        for t in configured
    )


def _merge(
    kind: str, declared: list[TensorConfig] | None, found: tuple[TensorSpec, ...]
) -> tuple[TensorSpec, ...]:
    configured = _specs(declared)
    if configured is None:
        if not found:
            raise ModelLoadError(
                f"the artifact does not tell its {kind}; declare them in model.yaml"
            )
        return found
    known = {t.name: t for t in found}
    explicit = {t.name for t in declared or () if t.accept_datatypes is not None}
    merged = []
    for spec in configured:
        other = known.get(spec.name)
        if found and other is None:
            raise ModelLoadError(
                f"model.yaml declares {kind[:-1]} '{spec.name}', but the artifact has "
                f"{sorted(known)}"
            )
        if other is not None and other.datatype != spec.datatype:
            raise ModelLoadError(
                f"model.yaml declares {kind[:-1]} '{spec.name}' as {spec.datatype}, "
                f"but the artifact has {other.datatype}"
            )
        if other is not None and spec.name not in explicit:
            spec = replace(spec, accepts=other.accepts)  # what the runtime accepts
        merged.append(spec)
    return tuple(merged)


def _execution(config: ModelConfig, runtime_name: str) -> str:
    """The batcher's execution mode. ``process`` batches are handed over from a thread. ``auto``
    on a process that may use one core only runs compute-bound runtimes on the loop: a thread
    cannot add parallelism there, only switches (the python runtime may block on I/O, so it
    keeps the adaptive rule)."""
    mode = config.execution.mode
    if mode == "process":
        return "thread"
    if (
        mode == "auto"
        and config.instances == 1
        and runtime_name != "python"
        and usable_cores() == 1
    ):
        return "inline"
    return mode


def max_batch_size(config: ModelConfig, batchable: bool, specs: tuple[TensorSpec, ...]) -> int:
    """The configured max_batch_size, else DEFAULT_MAX_BATCH_SIZE for a ``batchable`` model
    (0 otherwise); a batching model's tensors must all have -1 as first dimension."""
    if config.max_batch_size is not None:
        max_batch = config.max_batch_size
    else:
        max_batch = DEFAULT_MAX_BATCH_SIZE if batchable else 0
    if max_batch > 0:
        for spec in specs:
            if not spec.shape or spec.shape[0] != -1:
                raise ModelLoadError(
                    f"max_batch_size is {max_batch}, so the first dimension of '{spec.name}' "
                    f"must be -1 (the batch), but its shape is {list(spec.shape)}"
                )
    return max_batch


BATCHING_RUNTIMES = frozenset({"sklearn", "xgboost", "lightgbm", "onnx", "torch"})
"""Runtimes whose models the load-time probe may call on zeros (pure functions of their input)."""
PROBE_ROWS = 8
PROBE_CALLS = 5
PROBE_MIN_CALL_NS = 40_000
"""Batching on by default only for a model whose 1-row call takes at least this long..."""
PROBE_MAX_RATIO = 3.0
"""...and whose PROBE_ROWS-row call takes less than this many times as long: the fixed cost of
a call dominates, so merging requests that arrive together saves most of it."""
PROBE_SKIP_NS = 2_000_000
"""A model slower than this per call is not probed further (load time); batching stays off."""
PROBE_BUDGET_NS = 50_000_000
"""Measuring one batch size stops after this long (at least one measured call)."""


def default_batching(
    name: str,
    config: ModelConfig,
    runtime: Runtime,
    runtime_name: str,
    inputs: tuple[TensorSpec, ...],
    max_batch: int,
) -> bool:
    """Whether a model whose model.yaml does not say whether to batch gets dynamic batching:
    its predict is timed on zeros at 1 and PROBE_ROWS rows (docs/batching.md). The decision and
    its figures are logged."""
    if (
        config.batching_chosen()
        or max_batch < PROBE_ROWS
        or runtime_name not in BATCHING_RUNTIMES
        or config.execution.mode == "process"
        or any(spec.datatype == "BYTES" for spec in inputs)
    ):
        return False
    try:
        one = _time_call(runtime, inputs, 1)
        if one > PROBE_SKIP_NS:
            log.info(
                "model '%s': dynamic batching stays off: one call takes %.1f ms, too long to "
                "measure more at load; set dynamic_batching in model.yaml to turn it on",
                name,
                one / 1e6,
            )
            return False
        many = _time_call(runtime, inputs, PROBE_ROWS)
    except Exception as exc:  # a model that refuses zeros: no default, it loads as it is
        log.info("model '%s': dynamic batching stays off (probe failed: %s)", name, exc)
        return False
    on = one >= PROBE_MIN_CALL_NS and many < PROBE_MAX_RATIO * one
    log.info(
        "model '%s': dynamic batching %s: a call takes %.0f µs for 1 row, %.0f µs for %d "
        "(%s); set dynamic_batching in model.yaml to choose",
        name,
        "on by default" if on else "stays off",
        one / 1e3,
        many / 1e3,
        PROBE_ROWS,
        "the fixed cost per call dominates"
        if on
        else "merging would save less than it costs"
        if one < PROBE_MIN_CALL_NS
        else "the cost grows with the rows",
    )
    return on


def _time_call(runtime: Runtime, inputs: tuple[TensorSpec, ...], rows: int) -> int:
    """The cheapest of PROBE_CALLS predict calls on zeros of ``rows`` rows, after one unmeasured
    call (fewer calls once PROBE_BUDGET_NS has passed), in CPU time of the calling thread: a
    busy machine that preempts the probe makes wall-clock timings longer, and the decision
    would then depend on what else ran during the load."""
    arrays = {
        spec.name: np.zeros(
            tuple(rows if i == 0 else max(dim, 1) for i, dim in enumerate(spec.shape)),
            dtype=V2_TO_NUMPY[spec.datatype],
        )
        for spec in inputs
    }
    began = time.perf_counter_ns()
    runtime.predict(arrays)
    best = None
    for _ in range(PROBE_CALLS):
        started = time.thread_time_ns()
        runtime.predict(arrays)
        took = time.thread_time_ns() - started
        best = took if best is None else min(best, took)
        if time.perf_counter_ns() - began > PROBE_BUDGET_NS:
            break
    assert best is not None
    return best


def build_loaded_model(
    ctx: LoadContext, runtime: Runtime, runtime_name: str, executor: Executor
) -> LoadedModel:
    """Merge the config with the runtime's signature and check that they agree."""
    signature = runtime.signature()
    config = ctx.config
    inputs = _merge("inputs", config.inputs, signature.inputs)
    outputs = _merge("outputs", config.outputs, signature.outputs)
    max_batch = max_batch_size(config, signature.batchable, inputs + outputs)
    if default_batching(ctx.model_name, config, runtime, runtime_name, inputs, max_batch):
        config = config.model_copy(update={"dynamic_batching": DynamicBatching()})
    batching = config.dynamic_batching
    policy = BatchPolicy(
        max_batch_size=max_batch,
        dynamic=batching is not None,
        max_queue_delay_us=batching.max_queue_delay_us if batching else 0,
        preferred_batch_sizes=tuple(batching.preferred_batch_sizes) if batching else (),
        max_queue_size=config.max_queue_size,
        instances=config.instances,
        execution=_execution(config, runtime_name),
    )
    predict = _reshaping(runtime.predict, config, max_batch)
    predictor = runtime.predictor
    if predict is not runtime.predict:  # reshaped: so are the predicts for some outputs

        def predictor(outputs: frozenset[str]) -> Predict:
            return _reshaping(runtime.predictor(outputs), config, max_batch)

    return LoadedModel(
        name=ctx.model_name,
        version=ctx.version,
        platform=config.platform or runtime.platform,
        runtime_name=runtime_name.rsplit(":", 1)[-1],
        config=config,
        runtime=runtime,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch,
        batcher=Batcher(ctx.model_name, predict, executor, policy, predictor),
        predict=predict,
        labels=load_labels(ctx.model_dir, config, outputs, signature.labels),
        stream_slots=asyncio.Semaphore(config.instances) if config.decoupled else None,
        sequences=(
            Sequences(
                ctx.model_name,
                config.instances,
                config.sequence_batching.max_sequence_idle_us,
            )
            if config.sequence_batching is not None
            else None
        ),
    )


def _reshaping(predict: Predict, config: ModelConfig, max_batch: int) -> Predict:
    """``predict`` taking the declared shapes where model.yaml (or config.pbtxt) gives a
    ``reshape``: inputs are reshaped to it before the model, outputs back to their declared
    shape after."""
    batched = max_batch > 0
    inputs = {t.name: tuple(t.reshape) for t in config.inputs or () if t.reshape is not None}
    outputs = {
        t.name: tuple(t.shape[1:] if batched else t.shape)
        for t in config.outputs or ()
        if t.reshape is not None
    }
    if not inputs and not outputs:
        return predict

    def shaped(array: npt.NDArray[Any], dims: tuple[int, ...]) -> npt.NDArray[Any]:
        target = (array.shape[0], *dims) if batched else dims
        try:
            return array.reshape(target)
        except ValueError:
            raise InvalidArgument(
                f"a tensor of shape {list(array.shape)} cannot be reshaped to {list(target)}"
            ) from None

    def run(arrays: Arrays) -> Arrays:
        given = {k: shaped(v, inputs[k]) if k in inputs else v for k, v in arrays.items()}
        produced = predict(given)
        return {k: shaped(v, outputs[k]) if k in outputs else v for k, v in produced.items()}

    return run
