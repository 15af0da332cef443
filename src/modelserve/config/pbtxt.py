"""Triton model repositories: a model folder's ``config.pbtxt``, read through Triton's own
``model_config.proto`` (text format; an unknown field is an error, as in Triton), mapped onto
``ModelConfig``.

Every field the file sets is classified: *mapped* (it means the same here), *ignored* (a hint for
Triton's backends or GPUs that changes nothing a client sees; the model loads and the field is
named in a warning) or *unsupported* (it would change what the model answers: the model is refused
with the fields named). ``modelserve repo check`` prints the three lists per model.

The same mapping reads Triton's JSON model configuration, which the load API's ``config``
parameter may carry instead of model.yaml's form (``from_triton_json``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.message import Message

from modelserve.config.model import PIPELINE_RUNTIME, ModelConfig, parse_model_config
from modelserve.errors import ModelLoadError
from modelserve.protocol import model_config_pb2 as mc

__all__ = [
    "PBTXT_FILE",
    "TritonMapping",
    "from_triton_json",
    "load_pbtxt",
    "looks_like_triton_json",
    "map_triton",
    "to_pbtxt",
]

log = logging.getLogger("modelserve.config.pbtxt")

PBTXT_FILE = "config.pbtxt"

TRITON_TO_V2: dict[str, str] = {
    "TYPE_BOOL": "BOOL",
    "TYPE_UINT8": "UINT8",
    "TYPE_UINT16": "UINT16",
    "TYPE_UINT32": "UINT32",
    "TYPE_UINT64": "UINT64",
    "TYPE_INT8": "INT8",
    "TYPE_INT16": "INT16",
    "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64",
    "TYPE_FP16": "FP16",
    "TYPE_FP32": "FP32",
    "TYPE_FP64": "FP64",
    "TYPE_STRING": "BYTES",
}

ONNX_PLATFORM = "onnxruntime_onnx"
ONNX_BACKEND = "onnxruntime"
TORCH_PLATFORM = "pytorch_libtorch"
TORCH_BACKEND = "pytorch"
ENSEMBLE_PLATFORM = "ensemble"

# Field paths (repeated fields without indices) that mean the same in modelserve. A path matches
# a set field when it equals it or is a prefix of it.
_MAPPED: frozenset[str] = frozenset(
    {
        "name",
        "platform",
        "backend",
        "max_batch_size",
        "default_model_filename",
        "version_policy",
        "parameters",
        "input.name",
        "input.data_type",
        "input.dims",
        "input.reshape",
        "output.name",
        "output.data_type",
        "output.dims",
        "output.reshape",
        "output.label_filename",
        "instance_group.count",
        "dynamic_batching.max_queue_delay_microseconds",
        "dynamic_batching.preferred_batch_size",
        "dynamic_batching.default_queue_policy.max_queue_size",
        "dynamic_batching.default_queue_policy.default_timeout_microseconds",
        "dynamic_batching.default_queue_policy.allow_timeout_override",
        "response_cache.enable",
        "sequence_batching.max_sequence_idle_microseconds",
        "model_transaction_policy.decoupled",
        "ensemble_scheduling.step.model_name",
        "ensemble_scheduling.step.model_version",
        "ensemble_scheduling.step.input_map",
        "ensemble_scheduling.step.output_map",
    }
)

# Mapped only as such (their sub-fields are classified on their own).
_MAPPED_EXACT: frozenset[str] = frozenset({"sequence_batching"})

# Fields that are hints to Triton's backends or devices: the model loads, they change nothing a
# client sees. Path -> why.
_IGNORED: dict[str, str] = {
    "input.format": "a layout hint for Triton's backends",
    "instance_group.name": "instance names are not shown",
    "instance_group.kind": "instances run on the CPU",
    "instance_group.gpus": "instances run on the CPU",
    "instance_group.host_policy": "no host policies",
    "instance_group.profile": "TensorRT profiles",
    "instance_group.rate_limiter": "no rate limiter",
    "instance_group.passive": "every instance is active",
    "instance_group.secondary_devices": "no secondary devices",
    "optimization": "accelerator settings of Triton's backends",
    "model_warmup": "use model.yaml's warmup",
    "metric_tags": "metrics carry model and version labels",
    "model_metrics": "metrics carry model and version labels",
    "cc_model_filenames": "per-GPU file names",
    "runtime": "the runtime follows the platform or backend",
    "dynamic_batching.preserve_ordering": "each answer always goes to its own request",
    "sequence_batching.direct": "each sequence runs in order on its instance",
    "sequence_batching.oldest": "each sequence runs in order on its instance",
}


@dataclass(slots=True)
class TritonMapping:
    """What ``config.pbtxt`` became: the ModelConfig (None when refused) and the classification
    of every field it sets."""

    source: Path
    config: ModelConfig | None = None
    mapped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """``field (why)``."""
    unsupported: list[str] = field(default_factory=list)
    error: str = ""

    def require(self) -> ModelConfig:
        """The config, or ModelLoadError with the reason the model is refused."""
        if self.config is None:
            raise ModelLoadError(self.error)
        if self.ignored:
            log.warning("%s: ignored: %s", self.source, ", ".join(self.ignored))
        return self.config


def _set_fields(message: Message, prefix: str = "") -> Iterator[str]:
    """The paths of the fields ``message`` sets, down to the leaves (maps and their entries
    count as one field)."""
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        nested = descriptor.message_type
        if nested is None or nested.GetOptions().map_entry:
            yield path
        elif descriptor.is_repeated:
            for item in value:
                yield from _set_fields(item, f"{path}.") if item.ListFields() else [path]
        else:
            inner = list(_set_fields(value, f"{path}."))
            yield from inner or [path]


def _classify(path: str) -> tuple[str, str]:
    if path in _MAPPED_EXACT:
        return "mapped", ""
    if any(mapped.startswith(path + ".") for mapped in _MAPPED):
        # an empty message of mapped fields (``default_queue_policy {}``): Triton's defaults
        return "mapped", ""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in _MAPPED:
            return "mapped", ""
        if prefix in _IGNORED:
            return "ignored", _IGNORED[prefix]
    return "unsupported", ""


def _runtime(proto: Any, model_dir: Path | None) -> dict[str, Any]:
    platform, backend = proto.platform, proto.backend
    keys: dict[str, Any] = {}
    if platform == ONNX_PLATFORM or backend == ONNX_BACKEND:
        keys = {"runtime": "onnx", "platform": ONNX_PLATFORM}
        keys["artifact"] = proto.default_model_filename or "model.onnx"
        return keys
    if platform == TORCH_PLATFORM or backend == TORCH_BACKEND:
        keys = {"runtime": "torch", "platform": TORCH_PLATFORM}
        keys["artifact"] = proto.default_model_filename or "model.pt"
        return keys
    if platform == ENSEMBLE_PLATFORM:
        return {"runtime": PIPELINE_RUNTIME, "steps": _steps(proto)}
    if backend == "python" or platform == "python":
        entry = proto.parameters.get("entrypoint")
        if entry is None or not entry.string_value:
            raise ModelLoadError(
                "backend 'python': Triton's python backend (TritonPythonModel, "
                "triton_python_backend_utils) is not supported; a python model for modelserve "
                'is a class with predict(inputs) named by parameters { key: "entrypoint" '
                'value: { string_value: "module:Class" } } (docs/triton-compat.md)'
            )
        return {"runtime": "python", "entrypoint": entry.string_value}
    if platform or backend:
        raise ModelLoadError(
            f"platform '{platform or backend}' is not supported: modelserve serves "
            f"'{ONNX_PLATFORM}' (backend '{ONNX_BACKEND}'), '{TORCH_PLATFORM}' (backend "
            f"'{TORCH_BACKEND}'), python models and '{ENSEMBLE_PLATFORM}' from config.pbtxt"
        )
    if proto.default_model_filename:
        keys["artifact"] = proto.default_model_filename
    return keys  # the runtime follows the artifact's file extension


def _steps(proto: Any) -> list[dict[str, Any]]:
    """``ensemble_scheduling.step`` as a pipeline's steps: the same wiring by tensor names
    (``input_map``: the step model's input -> the ensemble's tensor; ``output_map``: its output
    -> a new tensor), ``model_version: -1`` (Triton's latest; 0 when left out) as no version."""
    if not proto.HasField("ensemble_scheduling") or not proto.ensemble_scheduling.step:
        raise ModelLoadError("platform 'ensemble' needs ensemble_scheduling with steps")
    steps: list[dict[str, Any]] = []
    for step in proto.ensemble_scheduling.step:
        entry: dict[str, Any] = {
            "model": step.model_name,
            "input_map": dict(step.input_map),
            "output_map": dict(step.output_map),
        }
        if step.model_version > 0:
            entry["version"] = str(step.model_version)
        elif step.model_version < -1:
            raise ModelLoadError(
                f"ensemble step '{step.model_name}': model_version {step.model_version} "
                "is neither a version (1 or more) nor -1 (the latest)"
            )
        steps.append(entry)
    return steps


def _tensor(tensor: Any, batched: bool, kind: str) -> dict[str, Any]:
    datatype = mc.DataType.Name(tensor.data_type)
    if datatype not in TRITON_TO_V2:
        raise ModelLoadError(f"{kind} '{tensor.name}': data_type {datatype} is not supported")
    dims = [int(d) for d in tensor.dims]
    out: dict[str, Any] = {
        "name": tensor.name,
        "datatype": TRITON_TO_V2[datatype],
        "shape": [-1, *dims] if batched else dims,
    }
    if tensor.HasField("reshape"):
        out["reshape"] = [int(d) for d in tensor.reshape.shape]
    if kind == "output" and tensor.label_filename:
        out["labels"] = tensor.label_filename
    return out


def _version_policy(policy: Any) -> dict[str, Any]:
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return {"all": True}
    if choice == "specific":
        return {"specific": [int(v) for v in policy.specific.versions]}
    if choice == "latest":
        return {"latest": int(policy.latest.num_versions)}
    return {"latest": 1}


def _to_model_yaml(proto: Any, model_dir: Path | None) -> dict[str, Any]:
    """The model.yaml form of a Triton configuration (only mapped fields are read)."""
    data: dict[str, Any] = _runtime(proto, model_dir)
    batched = proto.max_batch_size > 0
    data["max_batch_size"] = int(proto.max_batch_size)
    if proto.input:
        data["inputs"] = [_tensor(t, batched, "input") for t in proto.input]
    if proto.output:
        data["outputs"] = [_tensor(t, batched, "output") for t in proto.output]
    if proto.HasField("version_policy"):
        data["version_policy"] = _version_policy(proto.version_policy)
    if proto.instance_group:
        data["instances"] = max(1, sum(max(1, g.count) for g in proto.instance_group))
    parameters = {k: v.string_value for k, v in proto.parameters.items() if k != "entrypoint"}
    if parameters:
        data["parameters"] = parameters
    if proto.HasField("dynamic_batching"):
        batching = proto.dynamic_batching
        data["dynamic_batching"] = {
            "max_queue_delay_us": int(batching.max_queue_delay_microseconds),
            "preferred_batch_sizes": [int(s) for s in batching.preferred_batch_size],
        }
        queue = batching.default_queue_policy
        data["max_queue_size"] = int(queue.max_queue_size)
        data["default_timeout_ms"] = math.ceil(queue.default_timeout_microseconds / 1000)
    if proto.HasField("sequence_batching"):
        idle = proto.sequence_batching.max_sequence_idle_microseconds
        data["sequence_batching"] = {"max_sequence_idle_us": int(idle) or 1_000_000}
    if proto.model_transaction_policy.decoupled:
        data["decoupled"] = True
    if proto.response_cache.enable:
        data["response_cache"] = {"max_mb": 64}
    return data


def map_triton(proto: Any, source: Path, model_dir: Path | None = None) -> TritonMapping:
    """Classify every field ``proto`` (an ``inference.ModelConfig``) sets and, when none is
    unsupported, build the ModelConfig."""
    mapping = TritonMapping(source)
    seen: set[str] = set()
    for path in _set_fields(proto):
        if path in seen:
            continue
        seen.add(path)
        status, why = _classify(path)
        if status == "mapped":
            mapping.mapped.append(path)
        elif status == "ignored":
            mapping.ignored.append(f"{path} ({why})")
        else:
            mapping.unsupported.append(path)
    if model_dir is not None and proto.name and proto.name != model_dir.name:
        mapping.error = (
            f"{source}: name '{proto.name}' does not match the model folder '{model_dir.name}'"
        )
        return mapping
    if mapping.unsupported:
        mapping.error = (
            f"{source}: not supported by modelserve: {', '.join(mapping.unsupported)} "
            "(docs/triton-compat.md)"
        )
        return mapping
    try:
        mapping.config = parse_model_config(_to_model_yaml(proto, model_dir), source)
    except ModelLoadError as exc:
        text = str(exc)
        mapping.error = text if text.startswith(str(source)) else f"{source}: {text}"
    return mapping


def read_pbtxt(path: Path) -> Any:
    """The ``inference.ModelConfig`` a config.pbtxt holds; ModelLoadError naming the line of a
    syntax error or an unknown field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read it: {exc}") from None
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def load_pbtxt(model_dir: Path) -> TritonMapping:
    """Read and map ``<model_dir>/config.pbtxt``; a file that does not parse is a mapping with
    the error."""
    path = model_dir / PBTXT_FILE
    try:
        proto = read_pbtxt(path)
    except ModelLoadError as exc:
        return TritonMapping(path, error=str(exc))
    return map_triton(proto, path, model_dir)


def looks_like_triton_json(document: dict[str, Any]) -> bool:
    """True when a config document uses Triton's JSON names and none of model.yaml's own."""
    own = set(ModelConfig.model_fields)
    triton = {f.name for f in mc.ModelConfig.DESCRIPTOR.fields}
    keys = set(document)
    return bool(keys) and keys <= triton and not keys <= own


def from_triton_json(document: dict[str, Any], source: Path) -> ModelConfig:
    """A ModelConfig from Triton's JSON model configuration (the load API's ``config``)."""
    try:
        proto = json_format.ParseDict(document, mc.ModelConfig())
    except json_format.ParseError as exc:
        raise ModelLoadError(f"{source}: not a Triton model configuration: {exc}") from None
    return map_triton(proto, source).require()


def to_pbtxt(document: dict[str, Any]) -> str:
    """Triton's JSON model configuration (``LoadedModel.triton_config``) as config.pbtxt text."""
    proto = json_format.ParseDict(document, mc.ModelConfig())
    return str(text_format.MessageToString(proto))
