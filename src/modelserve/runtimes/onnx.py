"""ONNX models through onnxruntime: on the CPU, or on the execution providers model.yaml asks for
(``execution.providers``: tensorrt, cuda, cpu; runtimes/onnx_providers.py plans them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from modelserve.codecs.tensors import V2_TO_NUMPY
from modelserve.errors import ConversionError, ModelLoadError
from modelserve.runtimes.base import Arrays, LoadContext, Runtime
from modelserve.runtimes.onnx_providers import (
    ProviderPlan,
    engine_dir,
    fallback_notices,
    plan_providers,
    short_names,
    tensorrt_profile,
)
from modelserve.types import RuntimeSignature, TensorSpec

log = logging.getLogger("modelserve.runtimes.onnx")

# ONNX element type (as onnxruntime spells it inside "tensor(...)") -> V2 datatype.
ONNX_TO_V2: dict[str, str] = {
    "float": "FP32",
    "double": "FP64",
    "float16": "FP16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
    "string": "BYTES",
}


def _spec(node: Any, kind: str) -> TensorSpec:
    """A TensorSpec from an onnxruntime NodeArg; non-tensor types are refused."""
    type_str: str = node.type
    if not (type_str.startswith("tensor(") and type_str.endswith(")")):
        hint = ""
        if type_str.startswith(("seq(", "map(")):
            hint = (
                "; a classifier converted with skl2onnx needs "
                "options={'zipmap': False} so that probabilities are a plain tensor"
            )
        raise ModelLoadError(f"{kind} '{node.name}' has type {type_str}, not a tensor{hint}")
    element = type_str[len("tensor(") : -1]
    datatype = ONNX_TO_V2.get(element)
    if datatype is None:
        raise ModelLoadError(f"{kind} '{node.name}' has unsupported element type {element}")
    shape = node.shape if node.shape is not None else []
    dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)
    return TensorSpec(name=node.name, datatype=datatype, shape=dims)


def _declared_inputs(ctx: LoadContext) -> list[TensorSpec]:
    """The inputs model.yaml declares (for TensorRT's optimisation profile)."""
    return [TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in ctx.config.inputs or ()]


def _graph_inputs(path: Path) -> list[TensorSpec]:
    """The graph's inputs, read through a CPU session without optimisations (the providers'
    options must be known before the real session exists)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return [_spec(node, "input") for node in session.get_inputs()]
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"onnxruntime cannot load {path.name}: {exc}") from None


def _to_str_array(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """BYTES arrive as object arrays of bytes; onnxruntime string tensors want str."""
    flat = [
        item.decode("utf-8") if isinstance(item, bytes | bytearray) else str(item)
        for item in array.ravel()
    ]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _to_bytes_array(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    flat = [item.encode("utf-8") if isinstance(item, str) else item for item in array.ravel()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


class OnnxRuntime(Runtime):
    platform = "onnxruntime_onnx"
    artifact_suffixes = (".onnx",)

    def __init__(
        self,
        session: Any,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        notices: tuple[str, ...] = (),
    ) -> None:
        self._session = session
        self._notices = notices
        self._providers = short_names(session.get_providers())
        self._inputs = tuple(inputs)
        self._outputs = tuple(outputs)
        self._output_names = [spec.name for spec in outputs]
        self._string_inputs = frozenset(s.name for s in inputs if s.datatype == "BYTES")
        self._string_outputs = frozenset(s.name for s in outputs if s.datatype == "BYTES")
        self._input_names = frozenset(spec.name for spec in inputs)
        self._plain = not self._string_inputs and not self._string_outputs
        """No string tensors: arrays go in and come out as they are."""

    @classmethod
    def load(cls, ctx: LoadContext) -> OnnxRuntime:
        path = ctx.find_artifact(cls.artifact_suffixes)
        options = ort.SessionOptions()
        options.intra_op_num_threads = ctx.int_parameter("intra_op_num_threads", 1)
        options.inter_op_num_threads = ctx.int_parameter("inter_op_num_threads", 1)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        execution = ctx.config.execution
        plan = None
        providers: list[Any] = ["CPUExecutionProvider"]
        if execution.gpu:
            available = ort.get_available_providers()
            profile = None
            if "tensorrt" in execution.providers and "TensorrtExecutionProvider" in available:
                specs = _declared_inputs(ctx) or _graph_inputs(path)
                profile = tensorrt_profile(specs, ctx.config.max_batch_size)
            cache = engine_dir(ctx.version_dir)
            plan = plan_providers(execution, available, cache, profile)
            providers = list(plan.providers)
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot load {path.name}: {exc}") from None
        inputs = [_spec(node, "input") for node in session.get_inputs()]
        outputs = [_spec(node, "output") for node in session.get_outputs()]
        notices: tuple[str, ...] = ()
        if plan is not None:
            notices = tuple(fallback_notices(plan, session.get_providers()))
            for notice in notices:
                log.warning("model %s version %s: %s", ctx.model_name, ctx.version, notice)
        runtime = cls(session, inputs, outputs, notices)
        if plan is not None:
            runtime._build_engines(plan, ctx)
        return runtime

    def _build_engines(self, plan: ProviderPlan, ctx: LoadContext) -> None:
        """One call on zeros at load, so that TensorRT builds (or reads from its cache) the
        engine and CUDA picks its kernels now, never on a live request. With an optimisation
        profile (fixed dimensions past the batch) the engine covers every batch size."""
        if not set(self._session.get_providers()) & {
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
        }:
            return
        if any(spec.datatype == "BYTES" for spec in self._inputs):
            return
        feed = {
            spec.name: np.zeros(
                tuple(1 if dim == -1 else dim for dim in spec.shape),
                dtype=V2_TO_NUMPY[spec.datatype],
            )
            for spec in self._inputs
        }
        try:
            self._session.run(None, feed)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(
                f"building the {', '.join(plan.names)} session on zeros failed: {exc}"
            ) from None
        log.info(
            "model %s version %s: engines built on %s",
            ctx.model_name,
            ctx.version,
            ", ".join(self._session.get_providers()),
        )

    def notices(self) -> tuple[str, ...]:
        return self._notices

    def execution_providers(self) -> tuple[str, ...]:
        return self._providers

    @classmethod
    def optimize_file(cls, source: Path, target: Path) -> None:
        """Save onnxruntime's fully optimised graph of ``source`` (constant folding, fusions;
        the fused operators are onnxruntime's own, so the file is for onnxruntime)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(target)
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ConversionError(f"onnxruntime cannot optimise {source.name}: {exc}") from None

    @classmethod
    def quantize_int8_file(cls, source: Path, target: Path) -> None:
        """Dynamic quantisation: int8 weights, activations quantised at run time."""
        from onnxruntime.quantization import QuantType, quantize_dynamic

        try:
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ConversionError(f"onnxruntime cannot quantise {source.name}: {exc}") from None

    def signature(self) -> RuntimeSignature:
        batchable = all(
            len(spec.shape) >= 1 and spec.shape[0] == -1 for spec in self._inputs + self._outputs
        )
        return RuntimeSignature(inputs=self._inputs, outputs=self._outputs, batchable=batchable)

    def predict(self, inputs: Arrays) -> Arrays:
        if self._plain:
            # run(None) answers every output in the session's order (= _output_names), a few
            # µs cheaper per call than naming them; that is much of a small model's cost.
            feed = inputs if inputs.keys() == self._input_names else self._known(inputs)
            return dict(zip(self._output_names, self._session.run(None, feed), strict=True))
        feed = {
            spec.name: (
                _to_str_array(inputs[spec.name])
                if spec.name in self._string_inputs
                else inputs[spec.name]
            )
            for spec in self._inputs
            if spec.name in inputs
        }
        results = self._session.run(self._output_names, feed)
        out: Arrays = {}
        for name, value in zip(self._output_names, results, strict=True):
            array = np.asarray(value)
            out[name] = _to_bytes_array(array) if name in self._string_outputs else array
        return out

    def _known(self, inputs: Arrays) -> Arrays:
        return {name: array for name, array in inputs.items() if name in self._input_names}
