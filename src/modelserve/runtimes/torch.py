"""PyTorch models on the CPU: TorchScript (``torch.jit.save``, ``.pt``), ``torch.export``
programs (``torch.export.save``, ``.pt2``), and whole modules pickled with ``torch.save`` (only
with ``trust: true``: unpickling runs arbitrary code).

An exported program tells its inputs and outputs (names, datatypes, shapes; a dynamic dimension
is -1). TorchScript and pickled modules record only their arguments' names, so their inputs are
declared in model.yaml; their outputs are found by one call on zeros at load, unless declared.
Each call runs under ``torch.inference_mode()`` with ``torch.set_num_threads`` set from the
``num_threads`` parameter on the calling thread. This is the only module that imports torch.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy.typing as npt
import torch

from modelserve.errors import ConversionError, InternalError, ModelLoadError
from modelserve.runtimes.base import (
    Arrays,
    LoadContext,
    OnnxExport,
    OnnxOutput,
    Precision,
    Runtime,
    distribution_versions,
)
from modelserve.types import RuntimeSignature, TensorSpec

logger = logging.getLogger("modelserve.runtimes.torch")

Kind = Literal["export", "script", "pickle"]

TORCH_TO_V2: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "UINT8",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FP16",
    torch.float32: "FP32",
    torch.float64: "FP64",
}
"""torch dtypes with a V2 datatype (bfloat16 outputs are answered as FP32)."""

V2_TO_TORCH = {datatype: dtype for dtype, datatype in TORCH_TO_V2.items()}

INPUT_ERRORS = (RuntimeError, ValueError, IndexError, AssertionError)
"""What torch raises for a tensor it cannot take (shapes that do not multiply, a guard of an
exported program, a dtype a kernel refuses): the client's input, answered 400."""


def artifact_kind(path: Path) -> Kind:
    """How a file is loaded: ``.pt2`` is a ``torch.export`` archive; a zip archive with TorchScript
    code is TorchScript; anything else is a ``torch.save`` pickle."""
    if path.name.endswith(".pt2"):
        return "export"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/__torch__/" in name for name in names):
            return "script"
    return "pickle"


def _datatype(dtype: torch.dtype, what: str) -> str:
    if dtype == torch.bfloat16:
        return "FP32"
    datatype = TORCH_TO_V2.get(dtype)
    if datatype is None:
        raise ModelLoadError(f"{what} has dtype {dtype}, which has no V2 datatype")
    return datatype


def _dims(shape: Sequence[Any]) -> tuple[int, ...]:
    """Concrete sizes as they are, symbolic ones (dynamic dimensions) as -1."""
    return tuple(d if isinstance(d, int) else -1 for d in shape)


def _first_line(exc: BaseException) -> str:
    """The line of torch's message that says what went wrong: the first, or for an error
    raised inside TorchScript code (which opens with the interpreter's traceback) the last."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if "TorchScript interpreter" in lines[0]:
        return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])
    return lines[0]


def _leaf_names(result: Any) -> list[str]:
    """The output names a forward's result gives: a dict's keys, ``output0``... for a tuple or
    list, ``output`` for one tensor."""
    if isinstance(result, dict):
        return [str(key) for key in result]
    if isinstance(result, tuple | list):
        return [f"output{i}" for i in range(len(result))]
    return ["output"]


def _leaves(result: Any) -> list[Any]:
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, tuple | list):
        return list(result)
    return [result]


def _to_numpy(value: Any, name: str) -> npt.NDArray[Any]:
    if not isinstance(value, torch.Tensor):
        raise InternalError(
            f"the model's output '{name}' is a {type(value).__name__}, not a tensor"
        )
    if value.dtype == torch.bfloat16:
        value = value.float()
    array: npt.NDArray[Any] = value.detach().cpu().numpy()
    return array


def _to_tensor(array: npt.NDArray[Any]) -> torch.Tensor:
    """A tensor sharing the array's memory (copied first when read-only, as arrays decoded
    straight from a request's bytes are: torch tensors are always writable)."""
    if array.dtype == object:
        raise ValueError("BYTES tensors cannot be given to a torch model")
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _load_pickle(path: Path, trust: bool) -> torch.nn.Module:
    if not trust:
        raise ModelLoadError(
            f"refusing to load {path.name}: it is a module pickled with torch.save, and "
            "unpickling can run arbitrary code; set 'trust: true' in model.yaml if you trust it, "
            "or save the model with torch.jit.save (TorchScript) or torch.export.save (.pt2)"
        )
    logger.warning(
        "loading pickled torch module %s because the model config sets 'trust: true'", path
    )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelLoadError(f"torch.load cannot load {path.name}: {_first_line(exc)}") from None
    if not isinstance(loaded, torch.nn.Module):
        hint = (
            "; weights (a state_dict) need their module: serve them with the python runtime "
            "(docs/runtimes.md#pytorch-weights-with-your-own-module)"
            if isinstance(loaded, dict)
            else ""
        )
        raise ModelLoadError(f"{path.name} holds a {type(loaded).__name__}, not a module{hint}")
    return loaded


class TorchRuntime(Runtime):
    platform = "pytorch_libtorch"
    artifact_suffixes = (".pt2", ".pt", ".pth")

    def __init__(
        self,
        module: Callable[..., Any],
        kind: Kind,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        keywords: bool,
        threads: int,
        program: Any = None,
    ) -> None:
        self._module = module
        self.kind = kind
        self._inputs = inputs
        self._outputs = outputs
        self._input_names = tuple(spec.name for spec in inputs)
        self._output_names = tuple(spec.name for spec in outputs)
        self._keywords = keywords
        """Inputs are passed by name (they are forward's argument names), else by position."""
        self._threads = threads
        self.program = program
        """The ExportedProgram of a ``.pt2`` artifact (None otherwise)."""
        self.path: Path | None = None
        """The artifact."""

    @classmethod
    def load(cls, ctx: LoadContext) -> TorchRuntime:
        path = ctx.find_artifact(cls.artifact_suffixes)
        threads = ctx.int_parameter("num_threads", 1) or 1
        kind = artifact_kind(path)
        program = None
        try:
            if kind == "export":
                program = torch.export.load(path)
                module: Any = program.module()
            elif kind == "script":
                module = torch.jit.load(str(path), map_location="cpu")
            else:
                module = _load_pickle(path, ctx.config.trust)
        except ModelLoadError:
            raise
        except Exception as exc:  # torch raises many types for a bad file
            raise ModelLoadError(f"torch cannot load {path.name}: {_first_line(exc)}") from None
        if kind != "export":
            module.eval()
        if program is not None:
            inputs, found_outputs = _program_specs(program)
            keywords = False
        else:
            inputs, keywords = _declared_inputs(ctx, module, path.name)
            found_outputs = ()
        runtime = cls(module, kind, inputs, (), keywords, threads, program)
        runtime.path = path
        outputs = found_outputs or _declared_outputs(ctx) or runtime._probe_outputs(path.name)
        runtime._outputs = _named_like_declared(ctx, outputs)
        runtime._output_names = tuple(spec.name for spec in runtime._outputs)
        return runtime

    def signature(self) -> RuntimeSignature:
        batchable = all(
            len(spec.shape) >= 1 and spec.shape[0] == -1 for spec in self._inputs + self._outputs
        )
        return RuntimeSignature(inputs=self._inputs, outputs=self._outputs, batchable=batchable)

    def _call(self, tensors: list[torch.Tensor]) -> Any:
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)  # the calling thread's intra-op pool
        with torch.inference_mode():
            if self._keywords:
                return self._module(**dict(zip(self._input_names, tensors, strict=True)))
            return self._module(*tensors)

    def predict(self, inputs: Arrays) -> Arrays:
        try:
            tensors = [_to_tensor(inputs[name]) for name in self._input_names]
        except KeyError as exc:
            raise ValueError(f"missing input {exc}") from None
        try:
            result = self._call(tensors)
        except INPUT_ERRORS as exc:
            raise ValueError(_first_line(exc)) from None
        leaves = _leaves(result)
        if len(leaves) != len(self._output_names):
            raise InternalError(
                f"the model answered {len(leaves)} outputs, its signature has "
                f"{len(self._output_names)}"
            )
        if isinstance(result, dict) and all(name in result for name in self._output_names):
            return {name: _to_numpy(result[name], name) for name in self._output_names}
        return {
            name: _to_numpy(value, name)
            for name, value in zip(self._output_names, leaves, strict=True)
        }

    def _probe_outputs(self, artifact: str) -> tuple[TensorSpec, ...]:
        """The outputs of one call on zeros of the declared inputs (one row where the first
        dimension is the batch): their names, datatypes, and shapes (-1 where an input's
        variable dimension may change them)."""
        zeros = [
            torch.zeros(
                tuple(1 if dim == -1 else dim for dim in spec.shape),
                dtype=V2_TO_TORCH[spec.datatype],
            )
            for spec in self._inputs
        ]
        try:
            result = self._call(zeros)
        except Exception as exc:  # the model's own code
            raise ModelLoadError(
                f"{artifact}: a call on zeros of the declared inputs failed "
                f"({_first_line(exc)}); check the inputs in model.yaml, or declare the outputs"
            ) from None
        batched = all(spec.shape and spec.shape[0] == -1 for spec in self._inputs)
        fixed = all(dim != -1 for spec in self._inputs for dim in spec.shape[1:])
        specs = []
        for name, value in zip(_leaf_names(result), _leaves(result), strict=True):
            if not isinstance(value, torch.Tensor):
                raise ModelLoadError(
                    f"{artifact}: output '{name}' is a {type(value).__name__}; a torch model "
                    "must answer a tensor, a tuple or list of tensors, or a dict of tensors"
                )
            dims = [int(d) for d in value.shape]
            if not fixed:
                dims = [-1] * len(dims)
            if batched and dims:
                dims[0] = -1
            specs.append(TensorSpec(name, _datatype(value.dtype, f"output '{name}'"), tuple(dims)))
        return tuple(specs)

    # ---- ONNX --------------------------------------------------------------------------------

    def export_onnx(self, opset: int | None, precision: Precision, sample: Arrays) -> OnnxExport:
        """torch.onnx.export: an exported program or a pickled module through the torch.export
        based exporter (onnxscript), TorchScript through the TorchScript exporter (the only one
        that takes a ScriptModule). The graph keeps the model's own dtypes (``precision`` is not
        a choice here) and, for a batching model, a dynamic first dimension."""
        names = self._export_order()
        args = tuple(_to_tensor(np_rows(sample[name], 2)) for name in names)
        batched = self.signature().batchable
        buffer = io.BytesIO()
        versions = distribution_versions("torch", "onnx")
        try:
            with _quiet_exporter():
                if self.kind == "script":
                    converter = "torch.onnx (TorchScript exporter)"
                    axes = {name: {0: "batch"} for name in (*names, *self._output_names)}
                    torch.onnx.export(
                        self._fresh_script(),
                        args,
                        buffer,
                        dynamo=False,
                        input_names=list(names),
                        output_names=list(self._output_names),
                        dynamic_axes=axes if batched else None,
                        opset_version=opset or DEFAULT_OPSET_TORCHSCRIPT,
                    )
                    model = buffer.getvalue()
                else:
                    converter = "torch.onnx (torch.export exporter)"
                    versions |= distribution_versions("onnxscript")
                    target = self.program if self.program is not None else self._module
                    shapes = (
                        tuple({0: torch.export.Dim.DYNAMIC} for _ in names)
                        if batched and self.program is None
                        else None
                    )
                    program = torch.onnx.export(
                        target,
                        args,
                        dynamo=True,
                        verbose=False,
                        input_names=list(names),
                        output_names=list(self._output_names),
                        dynamic_shapes=shapes,
                        opset_version=opset,
                    )
                    model = program.model_proto.SerializeToString()
        except ImportError as exc:
            raise ConversionError(
                f"torch.onnx needs {exc.name or exc}: install modelserve[convert]"
            ) from None
        except Exception as exc:  # the exporters raise many types
            raise ConversionError(f"torch.onnx: {type(exc).__name__}: {_first_line(exc)}") from None
        return OnnxExport(
            model=model,
            converter=converter,
            versions=versions,
            outputs=tuple(OnnxOutput(name, name) for name in self._output_names),
            precision=precision,
        )

    def _fresh_script(self) -> Any:
        """The TorchScript module loaded again for the exporter: exporting leaves state in the
        module it traces (its graph executor's profile) that makes later inference-mode calls
        of the same module fail."""
        if self.path is None:
            raise ConversionError("the TorchScript file is not known")
        return torch.jit.load(str(self.path), map_location="cpu").eval()

    def _export_order(self) -> tuple[str, ...]:
        """The inputs in the order forward takes them (exporters pass them by position)."""
        if not self._keywords:
            return self._input_names
        forward = _forward_arguments(self._module)[0]
        ordered = sorted(self._input_names, key=forward.index)
        if ordered != forward[: len(ordered)]:
            raise ConversionError(
                f"the inputs {list(self._input_names)} are not forward's first arguments "
                f"({', '.join(forward)}); exporters pass inputs by position"
            )
        return tuple(ordered)

    def unload(self) -> None:
        self._module = _unloaded
        self.program = None


DEFAULT_OPSET_TORCHSCRIPT = 17
"""The TorchScript exporter's opset unless told otherwise (the torch.export exporter chooses
its own, 18 or newer)."""


def np_rows(array: npt.NDArray[Any], count: int) -> npt.NDArray[Any]:
    """The first ``count`` rows: example inputs for the exporters' tracing."""
    return array[:count] if array.ndim else array


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters print their steps, warn about their own deprecations and log about
    optional packages (torchvision); the conversion's progress and report say what matters."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        registration.setLevel(level)


def _unloaded(*args: Any, **kwargs: Any) -> Any:
    raise InternalError("the model was unloaded")


def _program_specs(program: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """An exported program's user inputs and outputs, from the example values it recorded."""
    signature = program.graph_signature
    user_inputs = list(signature.user_inputs)
    nodes = {node.name: node for node in program.graph.nodes}
    inputs = []
    for name in user_inputs:
        value = nodes[name].meta.get("val") if name in nodes else None
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(
                f"input '{name}' of the exported program is not a tensor; only tensor inputs "
                "are served"
            )
        inputs.append(
            TensorSpec(name, _datatype(value.dtype, f"input '{name}'"), _dims(value.shape))
        )
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    values = [arg.meta.get("val") if hasattr(arg, "meta") else arg for arg in output_node.args[0]][
        -len(signature.user_outputs) :
    ]
    names = _program_output_names(program, len(values))
    outputs = []
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"output '{name}' of the exported program is not a tensor")
        outputs.append(
            TensorSpec(name, _datatype(value.dtype, f"output '{name}'"), _dims(value.shape))
        )
    return tuple(inputs), tuple(outputs)


def _program_output_names(program: Any, count: int) -> list[str]:
    """A dict's keys when forward answers a dict, else ``output`` / ``output0``..."""
    spec = program.call_spec.out_spec
    if spec is not None and spec.type is dict:
        keys = [str(key) for key in spec.context]
        if len(keys) == count:
            return keys
    if count == 1 and (spec is None or spec.type not in (tuple, list)):
        return ["output"]
    return [f"output{i}" for i in range(count)]


def _forward_arguments(module: Any) -> tuple[list[str], int]:
    """forward's argument names (self left out) and how many of them are required."""
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:  # TorchScript
        arguments = list(schema.arguments)[1:]
        names = [argument.name for argument in arguments]
        required = sum(1 for argument in arguments if not argument.has_default_value())
        return names, required
    parameters = [
        p
        for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
    return [p.name for p in parameters], required


def _declared_inputs(
    ctx: LoadContext, module: Any, artifact: str
) -> tuple[tuple[TensorSpec, ...], bool]:
    """The inputs model.yaml declares, and whether they go to forward by name (they are its
    argument names) or by position (in declared order)."""
    names, required = _forward_arguments(module)
    declared = ctx.config.inputs
    if not declared:
        raise ModelLoadError(
            f"{artifact} does not record the datatypes and shapes of forward({', '.join(names)}): "
            "declare 'inputs' in model.yaml (name, datatype, shape; -1 for the batch)"
        )
    specs = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in declared)
    for spec in specs:
        if spec.datatype not in V2_TO_TORCH:
            raise ModelLoadError(f"input '{spec.name}': {spec.datatype} has no torch dtype")
    if not required <= len(specs) <= len(names):
        raise ModelLoadError(
            f"model.yaml declares {len(specs)} inputs, but forward takes "
            f"{required if required == len(names) else f'{required} to {len(names)}'} "
            f"({', '.join(names)})"
        )
    keywords = all(spec.name in names for spec in specs)
    return specs, keywords


def _declared_outputs(ctx: LoadContext) -> tuple[TensorSpec, ...]:
    """The outputs model.yaml declares (in the order forward answers them, or by a dict's
    keys); none: found by a call on zeros."""
    return tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in ctx.config.outputs or ())


def _named_like_declared(ctx: LoadContext, found: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Outputs found positionally (``output``, ``output0``...) take the names model.yaml
    declares for them, in order; named ones (a dict's keys) keep theirs."""
    declared = ctx.config.outputs
    if not declared or len(declared) != len(found):
        return found
    if not all(re.fullmatch(r"output[0-9]*", spec.name) for spec in found):
        return found
    return tuple(
        TensorSpec(config.name, spec.datatype, spec.shape)
        for config, spec in zip(declared, found, strict=True)
    )
