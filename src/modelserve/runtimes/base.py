"""The Runtime contract every model adapter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy.typing as npt

from modelserve.config.model import ModelConfig
from modelserve.errors import ConversionError, ModelLoadError
from modelserve.types import RuntimeSignature

Arrays = dict[str, npt.NDArray[Any]]

WIDENING_TO_FP64 = ("FP16", "FP32", "INT8", "INT16", "INT32", "UINT8", "UINT16", "UINT32")
"""What a runtime's FP64 input accepts unless model.yaml says otherwise (TensorSpec.accepts):
every datatype whose values FP64 holds exactly; clients commonly send FP32."""

SEQUENCE_KEY = "\x00sequence"
"""The key under which a sequence model's request carries its ``SequenceContext`` (a 0-d
object array) to the runtime; no tensor name can be it, as no input may contain NUL."""


@dataclass(slots=True)
class SequenceContext:
    """What a sequence model (``sequence_batching``) gets with each request: the sequence's id
    (int or str), whether this request starts or ends it, the instance the sequence runs on,
    and ``state``, a dict kept for the sequence until it ends or goes idle."""

    id: int | str
    start: bool
    end: bool
    instance: int
    state: dict[str, Any]


CACHE_DIR = ".modelserve"
"""Folder inside a version folder where the server keeps what it derives from the artifact
(the ONNX conversion, TensorRT engines); never part of the model's fingerprint."""

RESERVED_FILES = frozenset({"validation_report.json", "conversion_report.json"})
"""Files the server writes into version folders; never taken for an artifact."""

Precision = Literal["float32", "float64"]


@dataclass(frozen=True, slots=True)
class OnnxOutput:
    """Where one output of the native model is found among the ONNX graph's outputs."""

    name: str
    """The native output's name."""
    source: str
    """The ONNX output it is read from."""
    column: int | None = None
    """Take this column of a 2-D ONNX output (e.g. the positive class's probability)."""
    flatten: bool = False
    """Reshape an ``[N, 1]`` ONNX output to ``[N]``."""


@dataclass(frozen=True, slots=True)
class OnnxExport:
    """A native model converted to an ONNX graph, and how to read the native outputs from it.
    The graph's inputs carry the native inputs' names."""

    model: bytes
    converter: str
    """The converting library: skl2onnx, onnxmltools."""
    versions: dict[str, str] = field(default_factory=dict)
    """Framework and converter versions (and the opsets) that produced the graph."""
    outputs: tuple[OnnxOutput, ...] = ()
    precision: Precision = "float32"
    trees: bool = False
    """Decisions at split thresholds: a float32 graph that disagrees with the native model is
    worth retrying in float64."""


@dataclass(frozen=True, slots=True)
class LoadContext:
    """Everything a runtime needs to load one version of one model."""

    model_name: str
    version: str
    model_dir: Path
    version_dir: Path
    config: ModelConfig

    def int_parameter(self, key: str, default: int) -> int:
        """A non-negative integer from the config's ``parameters`` (int or numeric string)."""
        value = self.config.parameters.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ModelLoadError(f"parameter '{key}' must be an integer, got {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise ModelLoadError(f"parameter '{key}' must be an integer, got {value!r}") from None
        if number < 0:
            raise ModelLoadError(f"parameter '{key}' must be >= 0, got {number}")
        return number

    def find_artifact(self, suffixes: tuple[str, ...]) -> Path:
        """The artifact named in the config, else the single file in the version folder whose
        name ends with one of ``suffixes``. Either way it must really be in the version folder:
        a path or a symbolic link leading out of it is refused."""
        if self.config.artifact is not None:
            path = self.inside(
                self.version_dir / self.config.artifact,
                self.version_dir,
                f"artifact '{self.config.artifact}'",
            )
            if not path.is_file():
                raise ModelLoadError(
                    f"artifact '{self.config.artifact}' not found in {self.version_dir}"
                )
            return path
        found = sorted(
            p
            for p in self.version_dir.iterdir()
            if p.is_file() and p.name.endswith(suffixes) and p.name not in RESERVED_FILES
        )
        if not found:
            raise ModelLoadError(
                f"no artifact ending with {' or '.join(suffixes)} in {self.version_dir}"
            )
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ModelLoadError(
                f"several artifacts in {self.version_dir} ({names}); name one with 'artifact:'"
            )
        return self.inside(found[0], self.version_dir, f"artifact '{found[0].name}'")

    @staticmethod
    def inside(path: Path, folder: Path, what: str) -> Path:
        """``path`` resolved (symbolic links followed), when that is inside ``folder``; else
        ModelLoadError naming ``what``."""
        resolved = path.resolve()
        if folder.resolve() not in resolved.parents:
            link = " (a symbolic link)" if resolved != path.absolute() else ""
            raise ModelLoadError(f"{what}{link} leads outside {folder}; refusing to load it")
        return resolved


class Runtime(ABC):
    """One loaded model version. ``predict`` may be called from several threads at once when
    the model config asks for several instances, so implementations must be thread-safe or
    keep ``instances: 1``."""

    platform: ClassVar[str] = ""
    """Reported as ``platform`` in metadata and the Triton model configuration."""

    artifact_suffixes: ClassVar[tuple[str, ...]] = ()
    """File endings this runtime loads; used to infer the runtime when the config names none."""

    @classmethod
    @abstractmethod
    def load(cls, ctx: LoadContext) -> Runtime:
        """Load the artifact; raise ModelLoadError with a reason on failure."""

    @abstractmethod
    def signature(self) -> RuntimeSignature:
        """Inputs and outputs as far as the artifact tells them."""

    @abstractmethod
    def predict(self, inputs: Arrays) -> Arrays:
        """Run the model on named arrays and return named arrays."""

    def predictor(self, outputs: frozenset[str]) -> Callable[[Arrays], Arrays]:
        """A predict for requests that want only ``outputs`` (a strict subset of the
        signature's): it may skip computing the others, and must produce at least those.
        Default: ``predict``, which computes everything."""
        return self.predict

    def stream(self, inputs: Arrays) -> Iterator[Arrays]:
        """A decoupled model's responses (``decoupled: true``), zero, one or many; only runtimes
        that serve decoupled models (python) have it."""
        raise ModelLoadError(f"the {type(self).__name__} runtime cannot serve decoupled models")

    def unload(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release resources held by the model."""

    def notices(self) -> tuple[str, ...]:
        """Things about how the model runs that its operator should know (a fallback from the
        execution provider asked for, for instance): logged, and shown in the repository index
        while the version serves."""
        return ()

    def execution_providers(self) -> tuple[str, ...]:
        """The execution providers the model really runs on, in onnxruntime's order of
        preference (``tensorrt``, ``cuda``, ``cpu``), after any fallback; empty for a runtime
        without them. The model configuration's ``parameters.execution_providers``."""
        return ()

    def export_onnx(self, opset: int | None, precision: Precision, sample: Arrays) -> OnnxExport:
        """The model as an ONNX graph (``modelserve convert``, ``accelerate: onnx``).
        ``precision`` is the graph's floating-point type where the converter offers a choice;
        ``sample`` holds a few input rows (tracing converters need them)."""
        raise ConversionError(
            f"the {self.platform or type(self).__name__} runtime has no ONNX converter"
        )

    def feature_ranges(self) -> list[tuple[float, float]] | None:
        """Per feature of the single input, the range of values the model distinguishes (for
        tree models: around their split thresholds); None when the model does not tell."""
        return None


def distribution_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (read from their metadata, nothing is
    imported); absent ones are left out."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def threshold_ranges(
    thresholds: Mapping[int, list[float]], n_features: int
) -> list[tuple[float, float]]:
    """Per feature, the span of a tree model's split thresholds widened by a quarter on each
    side ([-1, 1] for a feature it never splits on)."""
    ranges = []
    for feature in range(n_features):
        values = thresholds.get(feature)
        if not values:
            ranges.append((-1.0, 1.0))
            continue
        low, high = min(values), max(values)
        margin = max((high - low) / 4, 1e-3 * max(abs(low), abs(high), 1.0))
        ranges.append((low - margin, high + margin))
    return ranges


@runtime_checkable
class OnnxTools(Protocol):
    """What the onnx runtime offers conversion besides serving (reached through the registry, so
    that no other module imports onnxruntime)."""

    def optimize_file(self, source: Path, target: Path) -> None:
        """Save onnxruntime's fully optimised graph of ``source`` to ``target``."""

    def quantize_int8_file(self, source: Path, target: Path) -> None:
        """Dynamic int8 quantisation of ``source``'s weights into ``target``."""
