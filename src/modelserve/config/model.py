"""The per-model ``model.yaml`` as ``ModelConfig``, validated by pydantic; errors name the file
and the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelserve.config.execution import Execution, mode_or_mapping
from modelserve.config.experiment import ExperimentConfig
from modelserve.config.monitoring import MonitoringConfig
from modelserve.config.payload import PayloadLoggingConfig
from modelserve.config.validation import Validation
from modelserve.errors import ModelLoadError

MODEL_CONFIG_FILE = "model.yaml"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def valid_model_name(name: str) -> bool:
    """Model names reach the filesystem and URLs: letters, digits, '_', '.', '-' only."""
    return bool(NAME_PATTERN.match(name)) and ".." not in name


Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


class TensorConfig(BaseModel):
    """One input or output. ``shape`` is the full shape a request carries, -1 for a variable dim;
    for a batchable model (max_batch_size > 0) the first dimension is the batch and must be -1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    datatype: Datatype
    shape: list[int] = Field(min_length=0)
    accept_datatypes: list[Datatype] | None = Field(
        default=None,
        description="Inputs only: other datatypes a request may send for this input, cast to "
        "'datatype' before the model sees them (e.g. [FP32] for an FP64 scikit-learn model). "
        "Only casts that keep every value exactly (FP32 to FP64, INT32 to FP64, INT8 to INT32, "
        "...) are allowed. Left out: what the runtime accepts (scikit-learn and LightGBM FP64 "
        "inputs accept FP32, FP16 and integers up to 32 bits); [] accepts 'datatype' only.",
    )

    @field_validator("accept_datatypes")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted(set(value))

    @model_validator(mode="after")
    def _widening_only(self) -> TensorConfig:
        for other in self.accept_datatypes or ():
            if not safe_cast(other, self.datatype):
                raise ValueError(
                    f"accept_datatypes: {other} cannot be cast to {self.datatype} without "
                    "changing values; only widening casts are allowed"
                )
        return self

    reshape: list[int] | None = Field(
        default=None,
        description="The shape the model itself takes or gives, when it differs from `shape` "
        "(as Triton's `reshape`): without the batch dimension when the model batches; -1 at "
        "most once.",
    )
    labels: str | None = Field(
        default=None,
        description="Outputs: a file in the model folder with one class label per line, for "
        "the classification extension (default: labels.txt when present, else the classes "
        "the artifact names).",
    )

    @field_validator("reshape")
    @classmethod
    def _reshape_dims(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (any(d < -1 or d == 0 for d in value) or value.count(-1) > 1):
            raise ValueError("reshape: positive sizes, and -1 at most once")
        return value

    @field_validator("labels")
    @classmethod
    def _labels_file(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value or value[0] == "."):
            raise ValueError("labels: a file name in the model folder")
        return value

    @field_validator("shape")
    @classmethod
    def _dims(cls, value: list[int]) -> list[int]:
        for dim in value:
            if dim < -1 or dim == 0:
                raise ValueError(f"dimension {dim} is not allowed: use a positive size or -1")
        return value


def safe_cast(source: str, target: str) -> bool:
    """Whether every value of V2 datatype ``source`` is exactly a value of ``target`` (numpy's
    'safe' casting, BYTES excluded)."""
    if source == target:
        return True
    if "BYTES" in (source, target):
        return False
    return bool(np.can_cast(_NUMPY_NAMES[source], _NUMPY_NAMES[target], casting="safe"))


_NUMPY_NAMES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}


def _false_allowed(schema: dict[str, Any]) -> None:
    """The schema editors check model.yaml with says that ``false`` is accepted too
    (ModelConfig._batching_off)."""
    schema.setdefault("anyOf", []).insert(1, {"type": "boolean", "const": False})


class VersionPolicy(BaseModel):
    """Which versions of the model are served: exactly one of ``latest``, ``all``, ``specific``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latest: int | None = Field(default=None, ge=1)
    all: bool | None = None
    specific: list[int] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        chosen = [k for k in ("latest", "all", "specific") if getattr(self, k) not in (None, False)]
        if len(chosen) != 1:
            raise ValueError("give exactly one of 'latest: N', 'all: true' or 'specific: [..]'")
        return self

    def select(self, versions: list[int]) -> list[int]:
        ordered = sorted(versions)
        if self.all:
            return ordered
        if self.specific is not None:
            wanted = set(self.specific)
            return [v for v in ordered if v in wanted]
        assert self.latest is not None
        return ordered[-self.latest :]


ParamScalar = str | int | float | bool


class DynamicBatching(BaseModel):
    """Present in model.yaml = merge queued requests into one execution (see docs/batching.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_queue_delay_us: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Longest a batch smaller than the smallest preferred size is held back "
        "while another instance of the model is still executing; never applies to an idle "
        "model.",
    )
    preferred_batch_sizes: list[int] = Field(
        default_factory=list, description="Batch sizes to cut batches to when reachable."
    )

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError("preferred batch sizes must be positive")
        return sorted(set(value))


class SequenceBatching(BaseModel):
    """Present in model.yaml = a stateful model served sequence by sequence (Triton's sequence
    batcher; docs/triton-compat.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_sequence_idle_us: int = Field(
        default=1_000_000,
        ge=1,
        le=86_400_000_000,
        description="A sequence without a request for this long is dropped, with its state.",
    )


class Warmup(BaseModel):
    """Requests run through a version before it turns READY."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=1, ge=1, le=1000, description="How many warmup requests to run.")
    sample_file: str | None = Field(
        default=None,
        description="An .npz file in the model folder with one array per input (no pickle); "
        "when left out, inputs are zeros built from the metadata (variable dims = 1).",
    )


PIPELINE_RUNTIME = "pipeline"
"""``runtime: pipeline``: a graph of steps (docs/pipelines.md), not an artifact."""


class PipelineStep(BaseModel):
    """One step of a pipeline: another model of the repository or a built-in transform, wired
    by tensor names as Triton's ``ensemble_scheduling.step``: ``input_map`` maps each input of
    the step to a pipeline tensor, ``output_map`` each output it produces to a new one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$",
        description="The step's name in errors and statistics (default: its model or "
        "transform, numbered when it repeats).",
    )
    model: str | None = Field(
        default=None, description="A model of the repository this step runs (any runtime)."
    )
    version: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]*$",
        description="The model's version (default: the one a request naming none gets).",
    )
    transform: str | None = Field(
        default=None,
        description="A built-in transform: image_decode, resize, normalize, layout, topk, nms, "
        "threshold.",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The transform's parameters (docs/pipelines.md)."
    )
    input_map: dict[str, str] = Field(
        default_factory=dict, description="Step input name -> pipeline tensor name."
    )
    output_map: dict[str, str] = Field(
        default_factory=dict, description="Step output name -> pipeline tensor name."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> PipelineStep:
        if (self.model is None) == (self.transform is None):
            raise ValueError("a step names exactly one of 'model' or 'transform'")
        if self.model is not None:
            if not valid_model_name(self.model):
                raise ValueError(f"'{self.model}' is not a valid model name")
            if self.parameters:
                raise ValueError("'parameters' are for transforms; a model step has none")
        elif self.version is not None:
            raise ValueError("'version' is for model steps")
        if not self.output_map:
            raise ValueError("a step needs an 'output_map' (what it produces)")
        return self


class ResponseCache(BaseModel):
    """Answers to identical requests served from memory (docs/response-cache.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_mb: float = Field(
        gt=0,
        le=1_048_576,
        description="Most megabytes (MiB) this model's cached answers may hold; the least "
        "recently used go first.",
    )


class ModelConfig(BaseModel):
    """The contents of ``<repo>/<model>/model.yaml``. Every key is optional where the artifact
    says enough."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str | None = Field(
        default=None,
        description="onnx | sklearn | xgboost | lightgbm | torch | python | pipeline, or "
        "'package.module:Class'. Inferred from the artifact's file extension when left out.",
    )
    artifact: str | None = Field(
        default=None, description="File name of the artifact inside each version folder."
    )
    platform: str | None = Field(default=None, description="Platform reported in metadata.")
    max_batch_size: int | None = Field(
        default=None,
        ge=0,
        description="Largest batch (first dimension) a request may carry; 0 = not batchable.",
    )
    inputs: list[TensorConfig] | None = None
    outputs: list[TensorConfig] | None = None
    version_policy: VersionPolicy = Field(default_factory=lambda: VersionPolicy(latest=1))
    parameters: dict[str, ParamScalar] = Field(default_factory=dict)
    trust: bool = Field(
        default=False,
        description="Allow loading pickle/joblib artifacts, which can run arbitrary code.",
    )
    entrypoint: str | None = Field(
        default=None,
        description="python runtime: 'module:Class' where module.py lives in the version "
        "folder or the model folder.",
    )
    instances: int = Field(default=1, ge=1, le=64, description="Parallel executions.")
    default_version: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]*$",
        description="Version served to requests that name none (default: newest READY).",
    )
    warmup: Warmup | None = None
    execution: Execution = Field(
        default_factory=Execution,
        description="Where predict runs: 'thread' on the executor pool, 'inline' on the event "
        "loop, 'auto' inline once predict reliably takes under 100 µs (one instance only), "
        "'process' in `instances` worker processes (for GIL-bound models); or a mapping with "
        "that as `mode` and, for ONNX graphs, `providers` (tensorrt, cuda, cpu) and `tensorrt` "
        "options (docs/runtimes.md#gpu-execution-providers).",
        json_schema_extra=mode_or_mapping,
    )
    dynamic_batching: DynamicBatching | None = Field(
        default=None,
        description="Merge queued requests into batches (needs max_batch_size > 0). Left out: "
        "on (with no delay) for a scikit-learn, XGBoost, LightGBM or ONNX model whose call "
        "costs about the same for 8 rows as for 1, measured at load (docs/batching.md); "
        "'false' (or null): off.",
        json_schema_extra=_false_allowed,
    )
    max_queue_size: int = Field(
        default=0, ge=0, description="Requests that may wait for the model; 0 = unbounded."
    )
    default_timeout_ms: int = Field(
        default=0,
        ge=0,
        description="Deadline for requests that set none; 0 = none. A request past its deadline "
        "while queued is answered 504 without running.",
    )

    logging: PayloadLoggingConfig | None = Field(
        default=None,
        description="Payload logging: sample rate, mode, redaction and sinks "
        "(docs/payload-logging.md); when left out, the server's payload_logging setting.",
    )
    monitoring: MonitoringConfig | None = Field(
        default=None,
        description="Model monitoring: stored predictions, delayed labels and accuracy per "
        "version, input drift, alerts (docs/monitoring.md). Left out: not monitored.",
    )

    sequence_batching: SequenceBatching | None = Field(
        default=None,
        description="A stateful python model: requests carry sequence_id, sequence_start and "
        "sequence_end; each sequence runs in order on one instance (docs/triton-compat.md).",
    )
    decoupled: bool = Field(
        default=False,
        description="A python model whose predict yields zero, one or many responses per "
        "request (Triton's decoupled mode), streamed over gRPC ModelStreamInfer.",
    )
    steps: list[PipelineStep] | None = Field(
        default=None,
        min_length=1,
        description="runtime: pipeline: the steps, wired by tensor names (docs/pipelines.md).",
    )
    deterministic: bool = Field(
        default=True,
        description="false for a model whose answer may differ for the same inputs (sampling, "
        "clock, state): its answers are never cached, nor those of a pipeline using it.",
    )
    response_cache: ResponseCache | None = Field(
        default=None,
        description="Cache answers by a hash of model, version, inputs and requested outputs "
        "(docs/response-cache.md).",
    )
    accelerate: Literal["none", "onnx"] | None = Field(
        default=None,
        description="onnx: serve a scikit-learn, XGBoost or LightGBM version through its ONNX "
        "conversion when it passes the parity gate (docs/convert.md); none: never. Left out: "
        "the server's --accelerate.",
    )
    validation: Validation | None = Field(
        default=None,
        description="Held-out data a version must do well enough on, while it loads, before it "
        "takes traffic (docs/validation.md).",
    )
    experiment: ExperimentConfig | None = Field(
        default=None,
        description="A traffic experiment between versions: a fixed split, sticky routing, "
        "shadow traffic, a canary that promotes or rolls back by itself (docs/experiments.md).",
    )

    @model_validator(mode="after")
    def _pipeline_keys(self) -> ModelConfig:
        if self.runtime != PIPELINE_RUNTIME:
            if self.steps is not None:
                raise ValueError("'steps' need 'runtime: pipeline'")
            return self
        if not self.steps:
            raise ValueError("runtime: pipeline needs 'steps'")
        if self.inputs is None or self.outputs is None:
            raise ValueError("runtime: pipeline needs 'inputs' and 'outputs' declared")
        unused = [
            key
            for key, unset in (
                ("artifact", self.artifact is None),
                ("entrypoint", self.entrypoint is None),
                ("trust", not self.trust),
                ("warmup", self.warmup is None),
                ("validation", self.validation is None),
                ("dynamic_batching", self.dynamic_batching is None),
                ("execution", self.execution == Execution()),
                ("instances", self.instances == 1),
            )
            if not unset
        ]
        if unused:
            raise ValueError(
                f"{', '.join(unused)}: not used by a pipeline (its model steps batch and run "
                "as their own model.yaml says)"
            )
        return self

    @model_validator(mode="after")
    def _decoupled(self) -> ModelConfig:
        if not self.decoupled:
            return self
        if self.runtime != "python":
            raise ValueError("decoupled needs 'runtime: python' (a predict that yields)")
        for key, unset in (
            ("dynamic_batching", self.dynamic_batching is None),
            ("sequence_batching", self.sequence_batching is None),
            ("response_cache", self.response_cache is None),
            ("warmup", self.warmup is None),
            ("execution: process", self.execution.mode != "process"),
        ):
            if not unset:
                raise ValueError(f"a decoupled model cannot have {key}")
        return self

    @model_validator(mode="after")
    def _sequences(self) -> ModelConfig:
        if self.sequence_batching is None:
            return self
        if self.runtime != "python":
            raise ValueError("sequence_batching needs 'runtime: python' (a model that keeps state)")
        if self.dynamic_batching is not None:
            raise ValueError("sequence_batching and dynamic_batching exclude each other")
        if self.response_cache is not None:
            raise ValueError("a model with sequence_batching keeps state: no response_cache")
        if self.execution.mode == "process":
            raise ValueError(
                "sequence_batching runs in the server process, not 'execution: process'"
            )
        return self

    @model_validator(mode="after")
    def _accelerate_in_threads(self) -> ModelConfig:
        if self.accelerate == "onnx" and self.execution.mode == "process":
            raise ValueError(
                "accelerate: onnx serves through onnxruntime, which runs in threads; "
                "execution: process does not apply to it"
            )
        return self

    @model_validator(mode="after")
    def _cache_needs_determinism(self) -> ModelConfig:
        if self.response_cache is not None and not self.deterministic:
            raise ValueError("response_cache needs a deterministic model (deterministic: false)")
        return self

    @model_validator(mode="after")
    def _batching_needs_batch_dim(self) -> ModelConfig:
        if self.dynamic_batching is not None and self.max_batch_size == 0:
            raise ValueError("dynamic_batching needs max_batch_size > 0")
        sizes = self.dynamic_batching.preferred_batch_sizes if self.dynamic_batching else []
        if self.max_batch_size and any(size > self.max_batch_size for size in sizes):
            raise ValueError("preferred_batch_sizes cannot exceed max_batch_size")
        return self

    @field_validator("dynamic_batching", mode="before")
    @classmethod
    def _batching_off(cls, value: Any) -> Any:
        return None if value is False else value

    def batching_chosen(self) -> bool:
        """Whether model.yaml says whether to batch (``dynamic_batching`` given, even as
        false/null): the load-time default (docs/batching.md) applies only when it does not."""
        return "dynamic_batching" in self.model_fields_set

    @field_validator("inputs", "outputs")
    @classmethod
    def _unique_names(cls, value: list[TensorConfig] | None) -> list[TensorConfig] | None:
        if value is not None:
            names = [t.name for t in value]
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate tensor names in {names}")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs_convert_nothing(
        cls, value: list[TensorConfig] | None
    ) -> list[TensorConfig] | None:
        for tensor in value or ():
            if tensor.accept_datatypes:
                raise ValueError(f"output '{tensor.name}': accept_datatypes is for inputs only")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_form(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", value):
            raise ValueError("entrypoint must look like 'module:ClassName'")
        return value


def _format_validation_error(path: Path, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        problems.append(f"{key}: {item['msg']}")
    return f"{path}: " + "; ".join(problems)


def parse_model_config(data: Any, source: Path) -> ModelConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ModelLoadError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ModelLoadError(_format_validation_error(source, exc)) from None


def load_model_config(model_dir: Path) -> ModelConfig:
    """Read ``model.yaml`` (absent means all defaults); errors name the file and the key. A
    folder with Triton's ``config.pbtxt`` and no model.yaml is read through config/pbtxt.py."""
    path = model_dir / MODEL_CONFIG_FILE
    if not path.exists():
        if (model_dir / "config.pbtxt").is_file():
            from modelserve.config.pbtxt import load_pbtxt

            return load_pbtxt(model_dir).require()
        return ModelConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid YAML: {exc}") from None
    return parse_model_config(data, path)
