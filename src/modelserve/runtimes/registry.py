"""Lazy registry of runtimes: short names map to 'module:Class' strings imported on first use.

Besides the built-in runtimes, installed packages may add their own through the entry-point
group ``modelserve.runtimes`` (``name = "package.module:Class"`` in their pyproject's
``[project.entry-points."modelserve.runtimes"]``). The entry points are read when the registry is
built, and nothing is imported until a model asks for the runtime by name. A name that is taken
twice (by a built-in or another package) is an error, never a silent overwrite.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import RESERVED_FILES, Runtime

BUILTIN_RUNTIMES: Mapping[str, str] = {
    "onnx": "modelserve.runtimes.onnx:OnnxRuntime",
    "sklearn": "modelserve.runtimes.sklearn:SklearnRuntime",
    "xgboost": "modelserve.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "modelserve.runtimes.lightgbm:LightGBMRuntime",
    "python": "modelserve.runtimes.python:PythonRuntime",
    "torch": "modelserve.runtimes.torch:TorchRuntime",
}

# File endings that name their runtime without a config. Ambiguous ones (.json, .txt) need
# ``runtime:`` in model.yaml.
SUFFIX_RUNTIMES: tuple[tuple[str, str], ...] = (
    (".onnx", "onnx"),
    (".skops", "sklearn"),
    (".joblib", "sklearn"),
    (".pkl", "sklearn"),
    (".pickle", "sklearn"),
    (".ubj", "xgboost"),
    (".xgb.json", "xgboost"),
    (".lgb.txt", "lightgbm"),
    (".pt2", "torch"),
    (".pt", "torch"),
    (".pth", "torch"),
)


ENTRY_POINT_GROUP = "modelserve.runtimes"


def installed_runtimes() -> list[EntryPoint]:
    """The runtimes installed packages declare (entry-point group ``modelserve.runtimes``)."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


class RuntimeRegistry:
    def __init__(
        self,
        builtins: Mapping[str, str] = BUILTIN_RUNTIMES,
        plugins: Iterable[EntryPoint] | None = None,
    ) -> None:
        """``plugins``: entry points to add (default: those installed)."""
        self._targets: dict[str, str] = dict(builtins)
        self._loaded: dict[str, type[Runtime]] = {}
        for point in installed_runtimes() if plugins is None else plugins:
            self.register(point.name, point.value)

    def register(self, name: str, target: str) -> None:
        """Add a runtime under ``name``; a name already taken is a ModelLoadError."""
        if name in self._targets:
            raise ModelLoadError(
                f"runtime '{name}' ({target}) is already registered as {self._targets[name]}"
            )
        if ":" not in target:
            raise ModelLoadError(f"runtime '{name}': '{target}' is not a 'module:Class' target")
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def resolve(self, name: str) -> type[Runtime]:
        """The Runtime class for a short name or a 'module:Class' string."""
        if name in self._loaded:
            return self._loaded[name]
        target = self._targets.get(name, name)
        if ":" not in target:
            raise ModelLoadError(
                f"unknown runtime '{name}'; expected one of {self.names()} or 'module:Class'"
            )
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = f" (install modelserve[{name}])" if name in BUILTIN_RUNTIMES else ""
            raise ModelLoadError(f"runtime '{name}' cannot be imported: {exc}{extra}") from None
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Runtime)):
            raise ModelLoadError(f"'{target}' is not a modelserve Runtime class")
        self._loaded[name] = cls
        return cls


def runtime_for_file(name: str) -> str | None:
    """The runtime a file's ending names, if any."""
    for suffix, runtime in SUFFIX_RUNTIMES:
        if name.endswith(suffix):
            return runtime
    return None


def artifact_runtimes(version_dir: Path) -> dict[str, str]:
    """The files of a version folder whose ending names a runtime (file name -> runtime), in
    name order; the server's own files (validation and conversion reports) are left out."""
    found: dict[str, str] = {}
    for path in sorted(version_dir.iterdir()):
        if path.is_file() and path.name not in RESERVED_FILES:
            runtime = runtime_for_file(path.name)
            if runtime is not None:
                found[path.name] = runtime
    return found


def infer_runtime_name(version_dir: Path) -> str:
    """Guess the runtime from the files of a version folder."""
    matches = set(artifact_runtimes(version_dir).values())
    if len(matches) == 1:
        return matches.pop()
    if not matches:
        files = [p.name for p in version_dir.iterdir() if p.is_file()]
        raise ModelLoadError(
            f"cannot tell the runtime of {version_dir} from its files "
            f"({', '.join(files) or 'none'}); set 'runtime:' in model.yaml"
        )
    raise ModelLoadError(
        f"files in {version_dir} fit several runtimes ({', '.join(sorted(matches))});"
        " set 'runtime:' in model.yaml"
    )
