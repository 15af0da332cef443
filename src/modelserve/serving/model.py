"""A loaded model version: its declared signature (config merged with what the artifact says),
request validation against it, and its Triton model-configuration document.

A version is served by a ``Scheduler``: the batcher for a model with a runtime, or whatever a
model kind brings (a pipeline runs its graph of steps). A version may depend on other models
(a pipeline's model steps): the lifecycle keeps it out of service while they are not READY.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from modelserve.codecs.tensors import V2_TO_NUMPY, V2_TO_TRITON, v2_datatype
from modelserve.config.model import ModelConfig, TensorConfig
from modelserve.errors import InternalError, InvalidArgument, ModelLoadError
from modelserve.runtimes.base import Arrays, LoadContext, Runtime
from modelserve.scheduling.batcher import Batcher, BatchPolicy, Completed
from modelserve.scheduling.cache import CachePartition
from modelserve.scheduling.executor import usable_cores
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

DEFAULT_MAX_BATCH_SIZE = 64
"""max_batch_size given to a model whose artifact has a variable first dimension everywhere and
whose config says nothing."""


class Scheduler(Protocol):
    """What serves a loaded version's requests: ``Batcher`` for a runtime's model."""

    @property
    def queue_depth(self) -> int: ...
    @property
    def in_flight(self) -> int: ...

    def check_capacity(self) -> None:
        """ResourceExhausted when a request submitted now would be refused for lack of room."""

    async def submit(self, arrays: Arrays, rows: int, deadline: float | None = None) -> Completed:
        """Run one request (``rows`` on dimension 0) and return its outputs and timings."""

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
            batch = self._check_input(tensor.name, tensor.datatype, tensor.shape, batch)
            arrays[tensor.name] = tensor.data
        self._check_complete(arrays, batch)
        return arrays

    def check_arrays(self, arrays: Arrays) -> int | None:
        """``check_inputs`` for named arrays (a pipeline step's); returns the batch size (None
        for a model without batching)."""
        batch: int | None = None
        for name, array in arrays.items():
            try:
                datatype = v2_datatype(array.dtype)
            except ValueError as exc:
                raise InvalidArgument(f"input '{name}': {exc}") from None
            batch = self._check_input(name, datatype, shape_of(array), batch)
        self._check_complete(arrays, batch)
        return batch

    def _check_input(
        self, name: str, datatype: str, shape: tuple[int, ...], batch: int | None
    ) -> int | None:
        spec = self._inputs_by_name.get(name)
        if spec is None:
            raise InvalidArgument(
                f"model '{self.name}' has no input '{name}'; "
                f"its inputs are {sorted(self._inputs_by_name)}"
            )
        if datatype != spec.datatype:
            raise InvalidArgument(
                f"input '{name}': datatype {datatype} given, model expects {spec.datatype}"
            )
        if not _shape_fits(shape, spec.shape):
            raise InvalidArgument(
                f"input '{name}': shape {list(shape)} does not match the model's {list(spec.shape)}"
            )
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
            if "classification" in out.parameters:
                raise InvalidArgument(
                    f"output '{out.name}': the classification extension is not supported"
                )
            specs.append(spec)
        return tuple(specs)

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

        def tensor(spec: TensorSpec) -> dict[str, Any]:
            return {
                "name": spec.name,
                "data_type": V2_TO_TRITON[spec.datatype],
                "dims": list(spec.shape[skip:]),
            }

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
        if self.cache is not None:
            doc["response_cache"] = {"enable": True}
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
    return tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in configured)


def _merge(
    kind: str, configured: tuple[TensorSpec, ...] | None, found: tuple[TensorSpec, ...]
) -> tuple[TensorSpec, ...]:
    if configured is None:
        if not found:
            raise ModelLoadError(
                f"the artifact does not tell its {kind}; declare them in model.yaml"
            )
        return found
    known = {t.name: t for t in found}
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
    return configured


def _execution(config: ModelConfig, runtime_name: str) -> str:
    """The batcher's execution mode. ``process`` batches are handed over from a thread. ``auto``
    on a process that may use one core only runs compute-bound runtimes on the loop: a thread
    cannot add parallelism there, only switches (the python runtime may block on I/O, so it
    keeps the adaptive rule)."""
    if config.execution == "process":
        return "thread"
    if (
        config.execution == "auto"
        and config.instances == 1
        and runtime_name != "python"
        and usable_cores() == 1
    ):
        return "inline"
    return config.execution


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


def build_loaded_model(
    ctx: LoadContext, runtime: Runtime, runtime_name: str, executor: Executor
) -> LoadedModel:
    """Merge the config with the runtime's signature and check that they agree."""
    signature = runtime.signature()
    config = ctx.config
    inputs = _merge("inputs", _specs(config.inputs), signature.inputs)
    outputs = _merge("outputs", _specs(config.outputs), signature.outputs)
    max_batch = max_batch_size(config, signature.batchable, inputs + outputs)
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
        batcher=Batcher(ctx.model_name, runtime.predict, executor, policy),
    )
