"""The model a job runs, as the server runs it: the version chosen as the server chooses it
(``NAME:VERSION``, else ``default_version``, else the newest under the version policy), loaded
by the server's repository (model.yaml, runtime, signature merge, warm-up), checked with the
server's request checks (names, shapes, batch size) and its output checks (every output, as
many rows as inputs, cast to the declared datatype).

A ``Predictor`` is what the shard runner calls; ``ModelPredictor`` is the in-process one (the
local engine and every Dask worker).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelserve.config.model import VersionPolicy, load_model_config, valid_model_name
from modelserve.errors import InternalError, InvalidArgument, ModelLoadError
from modelserve.offline.batch.errors import BatchError
from modelserve.runtimes.base import Arrays
from modelserve.types import InferenceRequest, Tensor, TensorSpec, shape_of

__all__ = ["ModelPredictor", "ModelSource", "Predictor", "load_predictor", "parse_model_ref"]


class Predictor(Protocol):
    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batched: bool
    """False for a model without a batch dimension: its rows run one by one."""
    max_batch_size: int
    concurrency: int
    """How many batches may run at once (the model's ``instances``)."""

    def check(self, arrays: Arrays) -> None:
        """The server's request checks on a batch's worth of rows; raises InvalidArgument."""

    def predict(self, arrays: Arrays) -> Arrays:
        """One batch; raises when the model refuses it or answers with the wrong rows."""

    def finish(self, arrays: Arrays, rows: int) -> Arrays:
        """Outputs cast to their declared datatypes."""

    def identity(self) -> dict[str, Any]:
        """What identifies the model's files (the job's fingerprint includes it)."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a worker loads the model from: the repository and the exact version."""

    repository: str
    name: str
    version: str


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:VERSION``."""
    name, _, version = ref.partition(":")
    if not valid_model_name(name):
        raise BatchError(f"'{name}' is not a valid model name")
    if ":" in ref and not (version.isdigit() and not version.startswith("0")):
        raise BatchError(f"'{ref}': a version is a positive integer, as in {name}:2")
    return name, version or None


def choose_version(repository: Path, name: str, version: str | None) -> str:
    """The version a job runs: the pinned one (any version folder, served or not), else the
    one the server answers with when a request names none."""
    model_dir = repository / name
    if not model_dir.is_dir():
        raise BatchError(f"no model '{name}' in the repository {repository}")
    numbers = sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isdigit() and not p.name.startswith("0")
    )
    if version is not None:
        if int(version) not in numbers:
            raise BatchError(f"model '{name}' has no version {version} (versions: {numbers})")
        return version
    try:
        config = load_model_config(model_dir)
    except ModelLoadError as exc:
        raise BatchError(str(exc)) from None
    selected = config.version_policy.select(numbers)
    if not selected:
        raise BatchError(f"model '{name}' has no version folder under its version policy")
    if config.default_version is not None and int(config.default_version) in selected:
        return config.default_version
    return str(selected[-1])


def _fingerprint(model_dir: Path, version: str) -> str:
    """Paths, sizes and modification times of model.yaml, the shared files and the version's
    files (as the server's repository notices changes)."""
    digest = hashlib.sha256()
    roots = [p for p in sorted(model_dir.iterdir()) if not p.name.isdigit()]
    for root in [*roots, model_dir / version]:
        for item in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if item.is_file() and "__pycache__" not in item.parts:
                stat = item.stat()
                relative = item.relative_to(model_dir)
                digest.update(f"{relative}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_predictor(source: ModelSource) -> ModelPredictor:
    """Load exactly ``source.version`` through the server's repository."""
    from modelserve.runtimes.registry import RuntimeRegistry
    from modelserve.serving.repository import ModelRepository

    root = Path(source.repository)
    model_dir = root / source.name
    try:
        config = load_model_config(model_dir)
    except ModelLoadError as exc:
        raise BatchError(str(exc)) from None
    pinned = config.model_copy(
        update={
            "version_policy": VersionPolicy(specific=[int(source.version)]),
            "default_version": None,
        }
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-unused")
    repository = ModelRepository(root, RuntimeRegistry(), executor)
    plan = repository.prepare(source.name, pinned)
    repository.begin(plan)
    repository.build(plan)
    reason = plan.error or plan.failed.get(source.version)
    if reason or source.version not in plan.loaded:
        executor.shutdown()
        raise BatchError(f"model '{source.name}' version {source.version} failed to load: {reason}")
    loaded = plan.loaded[source.version][0]
    return ModelPredictor(loaded, executor, _fingerprint(model_dir, source.version), source)


class ModelPredictor:
    """A loaded version, called directly: the runtime's ``predict`` with the server's checks
    around it (no event loop, no queue: the runner feeds it batches itself)."""

    def __init__(
        self, model: Any, executor: ThreadPoolExecutor, fingerprint: str, source: ModelSource
    ) -> None:
        self.model = model
        self.source = source
        self._closed = False
        self._executor = executor
        self._fingerprint = fingerprint
        self.name: str = model.name
        self.version: str = model.version
        self.inputs: tuple[TensorSpec, ...] = model.inputs
        self.outputs: tuple[TensorSpec, ...] = model.outputs
        self.max_batch_size: int = model.max_batch_size
        self.batched = self.max_batch_size > 0
        self.concurrency: int = model.config.instances
        self._predict = model.runtime.predict
        self._output_names = [spec.name for spec in self.outputs]

    def check(self, arrays: Arrays) -> None:
        specs = {s.name: s for s in self.inputs}
        tensors = tuple(
            Tensor(name, specs[name].datatype, shape_of(array), array)
            for name, array in arrays.items()
        )
        self.model.check_inputs(InferenceRequest(self.name, tensors))

    def predict(self, arrays: Arrays) -> Arrays:
        if not self.batched:
            return self._one_by_one(arrays)
        rows = len(next(iter(arrays.values())))
        try:
            produced: Arrays = self._predict(arrays)
        except ValueError as exc:  # what frameworks raise for input they cannot take
            raise InvalidArgument(f"model '{self.name}' rejected the input: {exc}") from exc
        for name in self._output_names:
            value = produced.get(name)
            if not isinstance(value, np.ndarray) or not value.shape or value.shape[0] != rows:
                self._check_output(name, value, rows)
        return produced

    def _check_output(self, name: str, value: Any, rows: int) -> None:
        """The slow look at an output that is not an array with ``rows`` rows."""
        if value is None:
            raise InternalError(f"model '{self.name}' did not produce output '{name}'")
        got = np.shape(value)
        if not got or got[0] != rows:
            raise InternalError(
                f"model '{self.name}' returned {got[0] if got else 0} rows for output '{name}' "
                f"but was given {rows}"
            )

    def _one_by_one(self, arrays: Arrays) -> Arrays:
        rows = len(next(iter(arrays.values())))
        results = []
        for row in range(rows):
            try:
                results.append(self._predict({n: a[row] for n, a in arrays.items()}))
            except ValueError as exc:
                raise InvalidArgument(f"model '{self.name}' rejected the input: {exc}") from exc
        out: Arrays = {}
        for spec in self.outputs:
            if any(spec.name not in r for r in results):
                raise InternalError(f"model '{self.name}' did not produce output '{spec.name}'")
            out[spec.name] = np.stack([np.asarray(r[spec.name]) for r in results])
        return out

    def finish(self, arrays: Arrays, rows: int) -> Arrays:
        tensors = self.model.build_outputs(arrays, self.outputs, rows)
        return {t.name: t.data for t in tensors}

    def identity(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": self.version,
            "files": self._fingerprint,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.model.runtime.unload()
        finally:
            self._executor.shutdown(wait=False)
