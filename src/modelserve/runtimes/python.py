"""Models written in Python: ``entrypoint: module:Class`` where ``module.py`` (or the package
``module/``) lives in the version folder or the model folder.

The user class needs ``predict(inputs: dict[str, ndarray]) -> dict[str, ndarray]`` (a model
with ``sequence_batching``: ``predict(inputs, sequence)``, ``sequence`` a ``SequenceContext``);
it may have ``load(version_dir: Path, parameters: dict)``, ``unload()``, and class attributes
``inputs`` / ``outputs`` (lists of ``{name, datatype, shape}``) describing its tensors.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelserve.codecs.tensors import DATATYPES
from modelserve.errors import InternalError, ModelLoadError
from modelserve.runtimes.base import SEQUENCE_KEY, Arrays, LoadContext, Runtime
from modelserve.types import RuntimeSignature, TensorSpec

_PACKAGE = "modelserve_user"
_counter = itertools.count(1)


def _safe(part: str) -> str:
    return re.sub(r"\W", "_", part)


def _check_package(ctx: LoadContext, folder: Path, package: Path) -> None:
    """Every folder and Python file of ``package``, links followed, must be inside ``folder``."""
    seen: set[Path] = set()
    for root, dirs, files in os.walk(package, followlinks=True):
        here = Path(root)
        real = ctx.inside(here, folder, f"package folder '{here.relative_to(folder)}'")
        if real in seen:  # a link back to a folder already checked
            dirs.clear()
            continue
        seen.add(real)
        for name in files:
            if name.endswith(".py"):
                path = here / name
                ctx.inside(path, folder, f"module file '{path.relative_to(folder)}'")


def _find_source(ctx: LoadContext, top: str) -> Path:
    """The module's file (a package's ``__init__.py``); its files, followed through symbolic
    links, must be in the folder they are found in."""
    for folder in (ctx.version_dir, ctx.model_dir):
        package = folder / top / "__init__.py"
        if package.is_file():
            _check_package(ctx, folder, folder / top)
            return ctx.inside(package, folder, f"module '{top}'")
        module = folder / f"{top}.py"
        if module.is_file():
            return ctx.inside(module, folder, f"module '{top}'")
    raise ModelLoadError(
        f"module '{top}' not found: no {top}.py or {top}/__init__.py in "
        f"{ctx.version_dir} or {ctx.model_dir}"
    )


def _import_user_module(ctx: LoadContext, module_path: str) -> tuple[ModuleType, str]:
    """Import the user's module under a unique name; returns it and that name's prefix."""
    top, _, rest = module_path.partition(".")
    source = _find_source(ctx, top)
    unique = f"{_PACKAGE}.{_safe(ctx.model_name)}.v{_safe(ctx.version)}.n{next(_counter)}.{top}"
    is_package = source.name == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        unique, source, submodule_search_locations=[str(source.parent)] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # needed while executing (dataclasses, relative imports)
    try:
        spec.loader.exec_module(module)
        if rest:
            if not is_package:
                raise ModelLoadError(f"'{top}' is the module {source.name}, not a package")
            module = importlib.import_module(f"{unique}.{rest}")
    except BaseException:
        _forget_modules(unique)
        raise
    return module, unique


def _forget_modules(prefix: str) -> None:
    # list() copies the keys in one step under the GIL: another thread may import meanwhile
    for name in [n for n in list(sys.modules) if n == prefix or n.startswith(prefix + ".")]:
        sys.modules.pop(name, None)


def _specs(owner: type, attribute: str) -> tuple[TensorSpec, ...]:
    declared = getattr(owner, attribute, None)
    if declared is None:
        return ()
    if not isinstance(declared, list | tuple):
        raise ModelLoadError(f"{owner.__name__}.{attribute} must be a list of dicts")
    specs = []
    for item in declared:
        if not isinstance(item, Mapping):
            raise ModelLoadError(f"{owner.__name__}.{attribute}: {item!r} is not a dict")
        try:
            name, datatype, shape = item["name"], item["datatype"], item["shape"]
        except KeyError as exc:
            raise ModelLoadError(f"{owner.__name__}.{attribute}: {item!r} lacks {exc}") from None
        if not isinstance(name, str) or datatype not in DATATYPES:
            raise ModelLoadError(f"{owner.__name__}.{attribute}: bad name or datatype in {item!r}")
        if not isinstance(shape, list | tuple) or not all(isinstance(d, int) for d in shape):
            raise ModelLoadError(f"{owner.__name__}.{attribute}: bad shape in {item!r}")
        specs.append(TensorSpec(name=name, datatype=datatype, shape=tuple(shape)))
    return tuple(specs)


class PythonRuntime(Runtime):
    platform = "python"
    artifact_suffixes = (".py",)

    def __init__(
        self, model: Any, signature: RuntimeSignature, module_prefix: str, sequences: bool = False
    ) -> None:
        self._model = model
        self._signature = signature
        self._module_prefix = module_prefix
        self._sequences = sequences

    @classmethod
    def load(cls, ctx: LoadContext) -> PythonRuntime:
        entrypoint = ctx.config.entrypoint
        if not entrypoint:
            raise ModelLoadError("python runtime: set 'entrypoint: module:Class' in model.yaml")
        module_path, _, class_name = entrypoint.partition(":")
        prefix = ""
        try:
            module, prefix = _import_user_module(ctx, module_path)
            user_class = getattr(module, class_name, None)
            if not isinstance(user_class, type):
                raise ModelLoadError(f"'{entrypoint}': {module_path} has no class {class_name}")
            if not callable(getattr(user_class, "predict", None)):
                raise ModelLoadError(f"'{entrypoint}' has no predict method")
            sequences = ctx.config.sequence_batching is not None
            predict = getattr(user_class, "predict")  # noqa: B009 - checked callable above
            if sequences and "sequence" not in inspect.signature(predict).parameters:
                raise ModelLoadError(
                    f"'{entrypoint}': a model with sequence_batching takes "
                    "predict(self, inputs, sequence) (docs/triton-compat.md)"
                )
            inputs = _specs(user_class, "inputs")
            outputs = _specs(user_class, "outputs")
            model = user_class()
            if callable(getattr(model, "load", None)):
                model.load(ctx.version_dir, dict(ctx.config.parameters))
        except ModelLoadError:
            if prefix:
                _forget_modules(prefix)
            raise
        except BaseException as exc:  # user code may raise anything, SystemExit included
            if prefix:
                _forget_modules(prefix)
            if isinstance(exc, KeyboardInterrupt):
                raise
            detail = f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(f"python model '{entrypoint}' failed to load: {detail}") from exc
        specs = inputs + outputs
        batchable = bool(specs) and all(len(s.shape) >= 1 and s.shape[0] == -1 for s in specs)
        signature = RuntimeSignature(inputs=inputs, outputs=outputs, batchable=batchable)
        return cls(model, signature, prefix, sequences)

    def signature(self) -> RuntimeSignature:
        return self._signature

    def predict(self, inputs: Arrays) -> Arrays:
        if self._sequences:
            holder = inputs.pop(SEQUENCE_KEY, None)
            if holder is None:
                raise InternalError("a sequence model was called without its sequence")
            result = self._model.predict(inputs, sequence=holder.item())
        else:
            result = self._model.predict(inputs)
        return self._arrays(result)

    def stream(self, inputs: Arrays) -> Iterator[Arrays]:
        """A decoupled model's responses (``decoupled: true``): what its predict yields, each a
        dict of outputs like predict's; zero, one or many."""
        result = self._model.predict(inputs)
        if isinstance(result, Mapping) or not isinstance(result, Iterable):
            raise TypeError(
                f"{type(self._model).__name__}.predict of a decoupled model must yield its "
                f"responses (a generator), not return a {type(result).__name__}"
            )
        for item in result:
            yield self._arrays(item)

    def _arrays(self, result: Any) -> Arrays:
        if not isinstance(result, Mapping):
            raise TypeError(
                f"{type(self._model).__name__}.predict returned {type(result).__name__}, "
                "expected a dict of name -> numpy array"
            )
        out: Arrays = {}
        for name, value in result.items():
            if not isinstance(name, str):
                raise TypeError(f"output names must be str, got {name!r}")
            if isinstance(value, np.ndarray):
                out[name] = value
            elif isinstance(value, list | tuple | int | float | bool | np.generic):
                out[name] = np.asarray(value)
            else:
                raise TypeError(
                    f"output '{name}' is a {type(value).__name__}, expected a numpy array"
                )
        return out

    def unload(self) -> None:
        try:
            unload = getattr(self._model, "unload", None)
            if callable(unload):
                unload()
        finally:
            _forget_modules(self._module_prefix)
