"""The Runtime contract every model adapter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy.typing as npt

from modelserve.config.model import ModelConfig
from modelserve.errors import ModelLoadError
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
            p for p in self.version_dir.iterdir() if p.is_file() and p.name.endswith(suffixes)
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
