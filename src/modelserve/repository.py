"""The model repository on disk: ``<root>/<model>/<version>/<artifact>`` plus ``model.yaml``.

Scans the folders, loads the versions the version policy selects, and keeps each version's
state (LOADING, READY, UNLOADING, UNAVAILABLE + reason). A model that fails to load never stops
the others from serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modelserve.config import ModelConfig, load_model_config, valid_model_name
from modelserve.errors import ModelLoadError, NotFound, Unavailable
from modelserve.model import LoadedModel, build_loaded_model
from modelserve.runtimes.base import LoadContext
from modelserve.runtimes.registry import RuntimeRegistry, infer_runtime_name
from modelserve.types import IndexEntry, ModelState

log = logging.getLogger("modelserve.repository")

__all__ = ["ModelRepository", "VersionSlot"]


@dataclass(slots=True)
class VersionSlot:
    """One version of one model: its state and, when READY, the loaded model."""

    version: str
    state: ModelState = ModelState.LOADING
    reason: str = ""
    model: LoadedModel | None = None


@dataclass(slots=True)
class ModelEntry:
    name: str
    versions: dict[str, VersionSlot] = field(default_factory=dict)
    reason: str = ""
    """A reason that concerns the whole model (bad model.yaml, no versions)."""


class ModelRepository:
    def __init__(
        self,
        root: Path,
        registry: RuntimeRegistry,
        executor: Executor,
        load_threads: int = 4,
    ) -> None:
        self.root = root
        self._executor = executor
        self._registry = registry
        self._load_threads = load_threads
        self._lock = threading.Lock()
        self._models: dict[str, ModelEntry] = {}

    # ---- discovery and loading -------------------------------------------------------------

    def model_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            raise ModelLoadError(f"model repository {self.root} is not a directory")
        dirs = []
        for path in sorted(self.root.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            if not valid_model_name(path.name):
                log.warning("skipping %s: not a valid model name", path)
                continue
            dirs.append(path)
        return dirs

    def load_all(self) -> None:
        """Load every model found in the repository (blocking; run it off the event loop)."""
        dirs = self.model_dirs()
        with ThreadPoolExecutor(max_workers=self._load_threads, thread_name_prefix="load") as pool:
            list(pool.map(self.load_model, dirs))

    def load_model(self, model_dir: Path) -> None:
        name = model_dir.name
        entry = ModelEntry(name)
        with self._lock:
            self._models[name] = entry
        try:
            config = load_model_config(model_dir)
            versions = self._select_versions(model_dir, config)
        except ModelLoadError as exc:
            entry.reason = str(exc)
            log.error("model %s is unavailable: %s", name, exc)
            return
        for version in versions:
            entry.versions[version] = VersionSlot(version)
        for version in versions:
            self._load_version(entry, model_dir, config, version)

    def _select_versions(self, model_dir: Path, config: ModelConfig) -> list[str]:
        numbers = []
        for path in model_dir.iterdir():
            if path.is_dir() and path.name.isdigit() and not path.name.startswith("0"):
                numbers.append(int(path.name))
            elif path.is_dir() and not path.name.startswith((".", "_")):
                log.warning("ignoring %s: version folders are positive integers", path)
        chosen = config.version_policy.select(numbers)
        if not chosen:
            raise ModelLoadError(
                f"{model_dir}: no version folder matches the version policy "
                f"(found {sorted(numbers) or 'none'})"
            )
        return [str(v) for v in chosen]

    def _load_version(
        self, entry: ModelEntry, model_dir: Path, config: ModelConfig, version: str
    ) -> None:
        slot = entry.versions[version]
        version_dir = model_dir / version
        try:
            runtime_name = config.runtime or infer_runtime_name(version_dir)
            runtime_cls = self._registry.resolve(runtime_name)
            ctx = LoadContext(entry.name, version, model_dir, version_dir, config)
            runtime = runtime_cls.load(ctx)
            loaded = build_loaded_model(ctx, runtime, runtime_name, self._executor)
        except ModelLoadError as exc:
            slot.state, slot.reason = ModelState.UNAVAILABLE, str(exc)
            log.error("model %s version %s failed to load: %s", entry.name, version, exc)
            return
        except Exception as exc:  # a framework raised something unexpected while loading
            slot.state = ModelState.UNAVAILABLE
            slot.reason = f"{type(exc).__name__}: {exc}"
            log.exception("model %s version %s failed to load", entry.name, version)
            return
        slot.model, slot.state, slot.reason = loaded, ModelState.READY, ""
        log.info("model %s version %s is READY (%s)", entry.name, version, loaded.platform)

    def unload_all(self) -> None:
        with self._lock:
            entries = list(self._models.values())
        for entry in entries:
            for slot in entry.versions.values():
                if slot.model is not None:
                    slot.state = ModelState.UNLOADING
                    slot.model.runtime.unload()
                    slot.model, slot.state, slot.reason = None, ModelState.UNAVAILABLE, "unloaded"

    # ---- lookups ---------------------------------------------------------------------------

    def _entry(self, name: str) -> ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(f"unknown model '{name}'")
        return entry

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The model to serve for (name, version); version "" means the newest READY one."""
        entry = self._entry(name)
        if version:
            slot = entry.versions.get(version)
            if slot is None:
                raise NotFound(f"model '{name}' has no version '{version}'")
            if slot.model is None or slot.state is not ModelState.READY:
                why = f": {slot.reason}" if slot.reason else ""
                raise Unavailable(f"model '{name}' version {version} is {slot.state.value}{why}")
            return slot.model
        ready = self.ready_versions(name)
        if not ready:
            reason = entry.reason or "; ".join(
                f"version {s.version} {s.state.value}" + (f": {s.reason}" if s.reason else "")
                for s in entry.versions.values()
            )
            raise Unavailable(f"model '{name}' has no READY version ({reason})")
        model = entry.versions[ready[-1]].model
        assert model is not None
        return model

    def ready_versions(self, name: str) -> list[str]:
        entry = self._entry(name)
        return sorted(
            (v for v, s in entry.versions.items() if s.state is ModelState.READY and s.model),
            key=int,
        )

    def is_ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except Unavailable:
            return False
        return True

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        with self._lock:
            entries = sorted(self._models.values(), key=lambda e: e.name)
        rows: list[IndexEntry] = []
        for entry in entries:
            if not entry.versions:
                if not ready_only:
                    rows.append(IndexEntry(entry.name, "", ModelState.UNAVAILABLE, entry.reason))
                continue
            for slot in sorted(entry.versions.values(), key=lambda s: int(s.version)):
                if ready_only and slot.state is not ModelState.READY:
                    continue
                rows.append(IndexEntry(entry.name, slot.version, slot.state, slot.reason))
        return rows

    def names(self) -> Iterable[str]:
        return sorted(self._models)
