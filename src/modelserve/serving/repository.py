"""The model repository on disk: ``<root>/<model>/<version>/<artifact>`` plus ``model.yaml``.

It knows which versions exist and their state (LOADING, READY, UNLOADING, UNAVAILABLE + reason).
Loading happens in steps so that a new version never replaces a serving one before it is READY,
and so that the records the event loop reads (index, router, metrics) change only on the loop:
``prepare`` (in a worker thread) reads the model's folder and config into a ``LoadPlan``;
``begin`` (on the loop) picks the versions that are new or changed and shows them LOADING;
``build`` (in a worker thread) loads and warms them up beside the serving ones, filling only the
plan; ``commit`` (on the loop) swaps them in at once and hands back the replaced models, which
the lifecycle drains and unloads. A model that fails to load never stops the others from
serving, and a version that fails to load leaves the serving one untouched.

Reasons (in the index, in errors) name files relative to the repository root
(``iris/1/model.onnx``), never by the server's absolute paths.

With ``single_model`` (``--model-name``) the root is one model's folder instead, as KServe mounts
it at ``/mnt/models``: version folders as usual, or, when there are none, the artifact (and
``model.yaml``, ``model.py``) directly in the folder, served as version 1.

A version whose model.yaml has a ``validation`` block runs the gate (serving/gates.py) in
``build``, after its warm-up and before ``commit`` could swap it in: a failed gate unloads it and
fails it like a load error (the serving version keeps serving), with the failed thresholds as the
reason. Every gate's report is kept for ``GET /v2/models/{m}/versions/{v}/validation`` and written
to ``<version>/validation_report.json``. The baseline of the change thresholds is chosen on the
loop (``begin``: the version serving now, or ``compare_to: version:N`` when it is loaded) and run
in the loader thread; a ``version:N`` that is not loaded is loaded for the gate and unloaded.

A loaded version whose dependencies are not READY (a pipeline whose step model is not) is
*held*: built, but UNAVAILABLE with the reason until the lifecycle puts it back (``hold`` /
``release``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelserve.config.model import ModelConfig, load_model_config, valid_model_name
from modelserve.errors import InvalidArgument, ModelLoadError, NotFound, Unavailable
from modelserve.runtimes.base import CACHE_DIR, RESERVED_FILES, LoadContext, Runtime
from modelserve.runtimes.registry import RuntimeRegistry, infer_runtime_name
from modelserve.scheduling.cache import ResponseCache
from modelserve.serving.model import LoadedModel, ModelKind, build_loaded_model
from modelserve.serving.warmup import warm_up
from modelserve.types import IndexEntry, ModelState

if TYPE_CHECKING:
    # imported where a model uses them (validation gate, accelerate: onnx, execution: process),
    # so that a server whose models use none of them starts without (docs/architecture.md)
    from modelserve.serving.gatekeeper import Baseline
    from modelserve.serving.gates import GateReport

log = logging.getLogger("modelserve.serving.repository")

__all__ = ["LoadPlan", "ModelRepository", "VersionSlot", "unknown_model"]


def unknown_model(name: str, version: str = "") -> str:
    """Triton's words for a model (or version) the server does not know; some clients match
    them. Our detail, when there is one, follows after a colon."""
    if version:
        return f"Request for unknown model: '{name}' version {version} is not found"
    return f"Request for unknown model: '{name}' is not found"


KEPT_REASON = "outside the version policy; still serving because no selected version is READY"


@dataclass(slots=True)
class VersionSlot:
    """One version of one model: its state and, when READY, the model serving it."""

    version: str
    state: ModelState = ModelState.LOADING
    reason: str = ""
    model: LoadedModel | None = None
    fingerprint: str = ""
    held: LoadedModel | None = None
    """A loaded version kept out of service because a dependency is not READY, or because it
    failed its validation gate with ``on_fail: shadow`` (``shadow``)."""
    shadow: bool = False
    """Held because it failed its validation gate with ``on_fail: shadow``: it gets a copy of
    the model's traffic (routing/shadow.py), never a request of its own."""
    validation: GateReport | None = None
    """The report of this version's latest validation gate (passed or not)."""


@dataclass(slots=True)
class ModelEntry:
    name: str
    versions: dict[str, VersionSlot] = field(default_factory=dict)
    reason: str = ""
    """A reason that concerns the whole model (bad model.yaml, no versions)."""
    default_version: str | None = None
    ready: tuple[str, ...] = ()
    """The versions serving, oldest first; recomputed when a slot changes (see refresh)."""

    def refresh(self) -> None:
        ready = (v for v, s in self.versions.items() if s.model is not None)
        self.ready = tuple(sorted(ready, key=int))


@dataclass(slots=True)
class LoadPlan:
    """One (re)load of one model: read by ``prepare``, scoped by ``begin``, filled by
    ``build``, applied by ``commit``. Worker threads touch only the plan."""

    name: str
    override: ModelConfig | None = None
    config: ModelConfig | None = None
    selected: list[str] = field(default_factory=list)
    folders: dict[str, Path] = field(default_factory=dict)
    """Per selected version, its folder (the model folder itself for a single model's
    artifact at its root)."""
    fingerprints: dict[str, str] = field(default_factory=dict)
    """Per selected version: its files and the config, as a string that changes with them."""
    to_load: list[str] = field(default_factory=list)
    """The selected versions that are new or changed (``begin``)."""
    loaded: dict[str, tuple[LoadedModel, str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    error: str = ""
    default_version: str | None = None
    baselines: dict[str, Baseline] = field(default_factory=dict)
    """Per version to load with a validation gate, what its change thresholds compare with
    (chosen on the loop by ``begin``)."""
    reports: dict[str, GateReport] = field(default_factory=dict)
    """The validation gates' reports, passed or failed (``build``)."""
    shadows: dict[str, tuple[LoadedModel, str, str]] = field(default_factory=dict)
    """Versions that failed their gate with ``on_fail: shadow``: (model, fingerprint, reason)."""


def _fingerprint(paths: list[Path]) -> str:
    """What the server writes itself (the ``.modelserve`` cache, reports) is left out: writing
    it must not look like a new version."""
    digest = hashlib.sha256()
    for path in paths:
        for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if "__pycache__" in item.parts or CACHE_DIR in item.parts:
                continue
            if item.name in RESERVED_FILES:
                continue
            if item.is_dir():
                digest.update(f"{item}/\n".encode())  # an empty version folder counts too
            elif item.is_file():
                stat = item.stat()
                digest.update(f"{item}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class ModelRepository:
    def __init__(
        self,
        root: Path,
        registry: RuntimeRegistry,
        executor: Executor,
        single_model: str | None = None,
        cache: ResponseCache | None = None,
        accelerate: str = "none",
    ) -> None:
        """``single_model``: the root is not a repository but the folder of this one model
        (``--model-name``, KServe's ``/mnt/models``): its version folders, or, when it has none,
        its artifact directly in it, served as version 1. ``cache``: where versions with
        ``response_cache`` keep their answers (none: such versions cache nothing).
        ``accelerate``: the default of model.yaml's ``accelerate``."""
        self.root = root.absolute()  # so that relative() finds it in every path
        self.single_model = single_model
        self._registry = registry
        self._executor = executor
        self._cache = cache
        self._accelerate = accelerate
        self._models: dict[str, ModelEntry] = {}
        self._kinds: dict[str, ModelKind] = {}
        forms = {str(self.root), str(self.root.resolve())}
        # the root followed by a separator, or by nothing that could continue a file name
        self._root_paths = re.compile(
            "|".join(
                f"{re.escape(form)}(?:{re.escape(os.sep)}|(?![\\w.-]))"
                for form in sorted(forms, key=len, reverse=True)
            )
        )

    def relative(self, text: str) -> str:
        """``text`` with the paths it names made relative to the repository root (the root
        itself, named alone as a single model's folder is, becomes ``.``)."""
        return self._root_paths.sub(lambda m: "" if m.group().endswith(os.sep) else ".", text)

    def add_kind(self, name: str, build: ModelKind) -> None:
        """Serve ``runtime: <name>`` models with ``build`` instead of a runtime (the composition
        root adds ``pipeline``); a name taken twice is an error."""
        if name in self._kinds or name in self._registry.names():
            raise ModelLoadError(f"model kind '{name}' is already registered")
        self._kinds[name] = build

    # ---- the folders -------------------------------------------------------------------------

    def model_dir(self, name: str) -> Path:
        """The folder of a model; the name is checked so it can never leave the repository."""
        if not valid_model_name(name):
            raise InvalidArgument(f"'{name}' is not a valid model name")
        if self.single_model is not None:
            if name != self.single_model:
                raise NotFound(f"{unknown_model(name)}: this server serves '{self.single_model}'")
            return self.root
        return self.root / name

    def discover(self) -> list[str]:
        """Names of the model folders in the repository."""
        if not self.root.is_dir():
            raise ModelLoadError(f"model repository {self.root} is not a directory")
        if self.single_model is not None:
            return [self.single_model]
        names = []
        for path in sorted(self.root.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            if not valid_model_name(path.name):
                log.warning("skipping %s: not a valid model name", path)
                continue
            names.append(path.name)
        return names

    def model_fingerprint(self, name: str) -> str:
        """Changes whenever a file of the model changes (size or mtime), is added or removed."""
        folder = self.model_dir(name)
        return _fingerprint([folder]) if folder.is_dir() else ""

    def _select_versions(self, model_dir: Path, config: ModelConfig) -> dict[str, Path]:
        """The versions the policy selects, oldest first, and their folders."""
        folders: dict[int, Path] = {}
        others: list[Path] = []
        for path in model_dir.iterdir():
            if path.is_dir() and path.name.isdigit() and not path.name.startswith("0"):
                folders[int(path.name)] = path
            elif path.is_dir() and not path.name.startswith((".", "_")):
                others.append(path)
        if not folders and self.single_model is not None:
            folders[1] = model_dir  # the artifact sits in the model folder itself
        else:
            for path in others:
                log.warning("ignoring %s: version folders are positive integers", path)
        chosen = config.version_policy.select(list(folders))
        if not chosen:
            raise ModelLoadError(
                f"{model_dir}: no version folder matches the version policy "
                f"(found {sorted(folders) or 'none'})"
            )
        return {str(v): folders[v] for v in chosen}

    # ---- loading: prepare and build in threads, begin and commit on the loop ----------------

    def prepare(self, name: str, override: ModelConfig | None = None) -> LoadPlan:
        """Read the model's config and select its versions. Blocking; touches no record."""
        plan = LoadPlan(name, override)
        model_dir = self.model_dir(name)
        try:
            if not model_dir.is_dir():
                raise ModelLoadError(f"no model folder {model_dir}")
            config = override if override is not None else load_model_config(model_dir)
            folders = self._select_versions(model_dir, config)
        except ModelLoadError as exc:
            plan.error = self.relative(str(exc))
            return plan
        plan.selected = list(folders)
        plan.folders = folders
        plan.config, plan.default_version = config, config.default_version
        shared = [p for p in model_dir.iterdir() if not p.name.isdigit()]
        for version, version_dir in folders.items():
            files = shared if version_dir == model_dir else [*shared, version_dir]
            plan.fingerprints[version] = _fingerprint(files) + repr(config)
        return plan

    def begin(self, plan: LoadPlan) -> None:
        """On the loop: choose the versions to load (new, changed, or not serving) and show
        them LOADING while ``build`` runs."""
        entry = self._models.setdefault(plan.name, ModelEntry(plan.name))
        for version in plan.selected:
            fingerprint = plan.fingerprints[version]
            slot = entry.versions.get(version)
            built = slot is not None and (slot.model or slot.held) is not None
            if slot is not None and built and slot.fingerprint == fingerprint:
                continue  # unchanged and serving (or held until what it needs is READY)
            plan.to_load.append(version)
            if slot is None:
                entry.versions[version] = VersionSlot(version)
            elif not built:
                slot.state, slot.reason = ModelState.LOADING, ""
            baseline = self._baseline(entry, version, plan.config)
            if baseline is not None:
                plan.baselines[version] = baseline

    @staticmethod
    def _baseline(entry: ModelEntry, version: str, config: ModelConfig | None) -> Baseline | None:
        """On the loop: what the gate of ``version`` compares with. ``serving``: the version
        answering requests that name none (this very version when its files changed);
        ``version:N``: N, loaded or not. None: nothing to compare with."""
        validation = config.validation if config is not None else None
        if validation is None or not any(t.compares for t in validation.metrics.values()):
            return None
        from modelserve.serving.gatekeeper import Baseline
        from modelserve.serving.gates import latency_of

        wanted = validation.baseline_version
        if wanted is None:
            own = entry.versions.get(version)
            if own is not None and own.model is not None:
                return Baseline(version, own.model, latency_of(own.validation))
            serving = entry.default_version if entry.default_version in entry.ready else None
            serving = serving or (entry.ready[-1] if entry.ready else None)
            if serving is None:
                return None
            current = entry.versions[serving]
            return Baseline(serving, current.model, latency_of(current.validation))
        named = entry.versions.get(wanted)
        model = (named.model or named.held) if named is not None else None
        if named is None or model is None:
            return Baseline(wanted, None)
        return Baseline(wanted, model, latency_of(named.validation))

    def build(self, plan: LoadPlan) -> LoadPlan:
        """Load (and warm up) the versions ``begin`` chose, into the plan. Blocking; touches no
        record, so the loop may read them meanwhile."""
        if plan.config is None:
            return plan
        model_dir = self.model_dir(plan.name)
        for version in plan.to_load:
            try:
                loaded = self._load_version(
                    plan.name, model_dir, plan.config, version, plan.folders[version]
                )
                shadow_reason = self._validate(plan, version, loaded)
            except ModelLoadError as exc:
                plan.failed[version] = self.relative(str(exc))
                log.error(
                    "model %s version %s failed to load: %s",
                    plan.name,
                    version,
                    plan.failed[version],
                )
            except Exception as exc:  # a framework raised something unexpected
                plan.failed[version] = self.relative(f"{type(exc).__name__}: {exc}")
                log.exception("model %s version %s failed to load", plan.name, version)
            else:
                if shadow_reason is not None:
                    plan.shadows[version] = (loaded, plan.fingerprints[version], shadow_reason)
                else:
                    plan.loaded[version] = (loaded, plan.fingerprints[version])
        return plan

    def _validate(self, plan: LoadPlan, version: str, loaded: LoadedModel) -> str | None:
        """Run the version's validation gate (none without a ``validation`` block); a failed
        gate unloads it and raises ModelLoadError with the failed thresholds, or, with
        ``on_fail: shadow``, keeps it loaded and returns the reason (it will be mirrored)."""
        config = plan.config
        if config is None or config.validation is None:
            return None
        from modelserve.serving.gatekeeper import run_version_gate, unload_quietly
        from modelserve.serving.gates import write_report

        model_dir = self.model_dir(plan.name)
        try:
            report = run_version_gate(
                plan.name,
                config,
                loaded,
                plan.folders[version],
                model_dir,
                plan.baselines.get(version),
                self.load_version,
                self.relative,
            )
        except BaseException:
            unload_quietly(loaded)
            raise
        plan.reports[version] = report
        write_report(report, plan.folders[version])
        if report.passed:
            log.info("model %s version %s passed its validation gate", plan.name, version)
            return None
        if config.validation.on_fail == "shadow":
            return self.relative(report.reason)
        unload_quietly(loaded)
        raise ModelLoadError(self.relative(report.reason))

    def load_version(
        self, name: str, model_dir: Path, config: ModelConfig, version: str, version_dir: Path
    ) -> LoadedModel:
        """Load and warm up one version as the server does (``modelserve validate`` too)."""
        return self._load_version(name, model_dir, config, version, version_dir)

    def _load_version(
        self, name: str, model_dir: Path, config: ModelConfig, version: str, version_dir: Path
    ) -> LoadedModel:
        ctx = LoadContext(name, version, model_dir, version_dir, config)
        kind = self._kinds.get(config.runtime or "")
        if kind is not None:
            started = time.perf_counter_ns()
            built = kind(ctx)
            built.load_ns = time.perf_counter_ns() - started
            self._attach_cache(built)
            return built
        runtime_name = config.runtime or infer_runtime_name(version_dir)
        runtime_cls = self._registry.resolve(runtime_name)
        started = time.perf_counter_ns()
        notices: tuple[str, ...] = ()
        if config.execution.mode == "process":
            from modelserve.scheduling.process_pool import ProcessRuntime

            runtime: Runtime = ProcessRuntime.start(ctx, runtime_name)
        else:
            runtime = runtime_cls.load(ctx)
            runtime, notices = self._accelerated(ctx, runtime, runtime_name)
        try:
            loaded = build_loaded_model(ctx, runtime, runtime_name, self._executor)
            if config.warmup is not None:
                warm_up(loaded, config.warmup, model_dir)
        except BaseException:
            runtime.unload()
            raise
        loaded.notices = notices + runtime.notices()
        loaded.load_ns = time.perf_counter_ns() - started
        self._attach_cache(loaded)
        return loaded

    def _accelerated(
        self, ctx: LoadContext, native: Runtime, runtime_name: str
    ) -> tuple[Runtime, tuple[str, ...]]:
        """The runtime to serve with under ``accelerate: onnx`` (serving/acceleration.py), and
        what the operator should know about it."""
        asked = ctx.config.accelerate
        if (asked or self._accelerate) != "onnx":
            return native, ()
        from modelserve.serving.acceleration import (
            ACCELERATED_RUNTIMES,
            accelerate,
            onnx_loader,
            own_rows,
        )

        if runtime_name not in ACCELERATED_RUNTIMES:
            if asked is None:
                return native, ()  # the server's default covers the frameworks that convert
            notice = f"accelerate: onnx applies to {', '.join(sorted(ACCELERATED_RUNTIMES))}"
            log.warning("model %s: %s, not %s", ctx.model_name, notice, runtime_name)
            return native, (f"{notice}, not {runtime_name}",)
        outcome = accelerate(ctx, native, onnx_loader(self._registry, ctx), own_rows(ctx, native))
        label = f"model {ctx.model_name} version {ctx.version}"
        if outcome.notice:
            log.warning("%s: %s", label, self.relative(outcome.notice))
            return native, (self.relative(outcome.notice),)
        log.info("%s: %s", label, outcome.summary)
        native.unload()
        return outcome.runtime, ()

    def _attach_cache(self, model: LoadedModel) -> None:
        wanted = model.config.response_cache
        if wanted is None:
            return
        if self._cache is None or not self._cache.enabled:
            log.warning(
                "model %s asks for a response cache, but the server's response cache is off "
                "(--response-cache-mb 0): its answers are not cached",
                model.name,
            )
            return
        max_bytes = int(wanted.max_mb * 1024 * 1024)
        model.cache = self._cache.partition(model.name, model.version, max_bytes)

    def commit(self, plan: LoadPlan) -> list[LoadedModel]:
        """Apply a plan at once; returns the models it replaced or retired (to drain)."""
        entry = self._models.setdefault(plan.name, ModelEntry(plan.name))
        retired: list[LoadedModel] = []
        if plan.error:
            entry.reason = plan.error
            if not any(s.model or s.held for s in entry.versions.values()):
                entry.versions.clear()
                entry.refresh()
            log.error("model %s is unavailable: %s", plan.name, plan.error)
            return retired
        entry.reason = ""
        entry.default_version = plan.default_version
        for version, (loaded, fingerprint) in plan.loaded.items():
            slot = entry.versions.setdefault(version, VersionSlot(version))
            if slot.model is not None:
                retired.append(slot.model)
            if slot.held is not None:
                retired.append(slot.held)
                slot.held = None
            slot.model, slot.fingerprint, slot.shadow = loaded, fingerprint, False
            slot.validation = plan.reports.get(version)
            slot.state, slot.reason = ModelState.READY, "; ".join(loaded.notices)
            log.info("model %s version %s is READY (%s)", plan.name, version, loaded.platform)
        for version, (loaded, fingerprint, reason) in plan.shadows.items():
            slot = entry.versions.setdefault(version, VersionSlot(version))
            retired.extend(m for m in (slot.model, slot.held) if m is not None)
            slot.model, slot.held, slot.shadow = None, loaded, True
            slot.fingerprint, slot.validation = fingerprint, plan.reports.get(version)
            slot.state = ModelState.UNAVAILABLE
            slot.reason = f"{reason}; mirrored as a shadow (validation on_fail: shadow)"
            log.warning("model %s version %s: %s", plan.name, version, slot.reason)
        for version, reason in plan.failed.items():
            slot = entry.versions.setdefault(version, VersionSlot(version))
            slot.validation = plan.reports.get(version, slot.validation)
            if slot.model is not None:
                slot.reason = f"the new files failed to load, still serving the old ones: {reason}"
            else:
                slot.state, slot.reason = ModelState.UNAVAILABLE, reason
        unselected = [v for v in entry.versions if v not in plan.selected]
        if any(entry.versions[v].model for v in plan.selected):
            for version in unselected:
                retired.extend(self._retire_slot(entry, version))
                del entry.versions[version]
        else:
            for version in unselected:  # keep serving until a selected version is READY
                entry.versions[version].reason = KEPT_REASON
        entry.refresh()
        return retired

    def register(self, name: str) -> None:
        """Know a model without loading it (explicit mode): UNAVAILABLE, 'not loaded'."""
        self._models.setdefault(name, ModelEntry(name))

    def begin_unload(self, name: str) -> list[LoadedModel]:
        """Mark every version UNLOADING; returns their models to drain."""
        entry = self._entry(name)
        retired: list[LoadedModel] = []
        for version in list(entry.versions):
            retired.extend(self._retire_slot(entry, version))
        entry.refresh()
        return retired

    def finish_unload(self, name: str) -> None:
        entry = self._models.get(name)
        if entry is not None:
            for slot in entry.versions.values():
                if slot.model is None and slot.state is ModelState.UNLOADING:
                    slot.state, slot.reason = ModelState.UNAVAILABLE, "unloaded"

    def forget(self, name: str) -> None:
        """Drop a model whose folder is gone (after its versions were unloaded)."""
        self._models.pop(name, None)

    def _retire_slot(self, entry: ModelEntry, version: str) -> list[LoadedModel]:
        slot = entry.versions[version]
        model = slot.model or slot.held
        if model is None:
            return []
        slot.model = slot.held = None
        slot.shadow = False
        slot.state, slot.reason = ModelState.UNLOADING, ""
        return [model]

    # ---- versions held out of service --------------------------------------------------------

    def hold(self, name: str, version: str, reason: str, quiet: bool = False) -> None:
        """Take a READY version out of service (UNAVAILABLE with ``reason``), keeping it loaded;
        a held one only gets its reason updated. Logged as a warning unless ``quiet``."""
        entry = self._entry(name)
        slot = entry.versions[version]
        if slot.model is not None:
            slot.held, slot.model = slot.model, None
            level = logging.INFO if quiet else logging.WARNING
            log.log(level, "model %s version %s is UNAVAILABLE: %s", name, version, reason)
        if slot.held is not None:
            slot.state, slot.reason = ModelState.UNAVAILABLE, reason
        entry.refresh()

    def release(self, name: str, version: str) -> None:
        """Put a held version back in service (READY)."""
        entry = self._entry(name)
        slot = entry.versions[version]
        if slot.held is not None and not slot.shadow:
            slot.model, slot.held = slot.held, None
            slot.state, slot.reason = ModelState.READY, "; ".join(slot.model.notices)
            entry.refresh()
            log.info("model %s version %s is READY", name, version)

    def shadow_versions(self, name: str) -> list[str]:
        """The versions of ``name`` that failed their gate with ``on_fail: shadow``."""
        entry = self._models.get(name)
        if entry is None:
            return []
        return [v for v, s in list(entry.versions.items()) if s.shadow and s.held is not None]

    def mirror_target(self, name: str, version: str) -> LoadedModel:
        """The loaded version a shadow copy runs on: serving, or held as a gate's shadow."""
        slot = self._entry(name).versions.get(version)
        if slot is not None and slot.shadow and slot.held is not None:
            return slot.held
        return self.serving(name, version)

    def built_versions(self, name: str) -> list[str]:
        """The versions of ``name`` that are loaded, serving or held."""
        entry = self._models.get(name)
        if entry is None:
            return []
        return [v for v, s in list(entry.versions.items()) if s.model or s.held]

    def is_built(self, name: str) -> bool:
        return bool(self.built_versions(name))

    def built_models(self) -> list[LoadedModel]:
        """Every loaded version, serving or held."""
        return [
            model
            for entry in self._models.values()
            for slot in list(entry.versions.values())
            for model in (slot.model, slot.held)
            if model is not None
        ]

    # ---- lookups -----------------------------------------------------------------------------

    def get_entry(self, name: str) -> ModelEntry:
        """The model's record; NotFound when the repository has never seen it."""
        return self._entry(name)

    def _entry(self, name: str) -> ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            raise NotFound(unknown_model(name))
        return entry

    def validation_report(self, name: str, version: str = "") -> GateReport:
        """The latest validation gate's report of a version (the serving one when ``version``
        is empty); NotFound when it has none."""
        entry = self._entry(name)
        if not version:
            version = self.serving(name).version
        slot = entry.versions.get(version)
        if slot is None:
            raise NotFound(f"model '{name}' has no version '{version}'")
        if slot.validation is None:
            raise NotFound(
                f"model '{name}' version {version} has no validation report (its model.yaml "
                "has no 'validation' block)"
            )
        return slot.validation

    def ready_versions(self, name: str) -> list[str]:
        return list(self._entry(name).ready)

    def serving(self, name: str, version: str = "") -> LoadedModel:
        """The version answering (name, version): the named one, else the model's
        ``default_version``, else the newest READY. NotFound for an unknown model or version,
        Unavailable (with the reason) for one that is not READY."""
        entry = self._entry(name)
        if not version and entry.default_version is not None:
            version = entry.default_version
        if version:
            slot = entry.versions.get(version)
            if slot is None:
                known = sorted(entry.versions, key=lambda v: int(v) if v.isdigit() else 0)
                raise NotFound(
                    f"{unknown_model(name, version)}: model '{name}' has no version "
                    f"'{version}' (its versions: {', '.join(known) or 'none'})"
                )
            if slot.model is None:
                why = f": {slot.reason}" if slot.reason else ""
                raise Unavailable(f"model '{name}' version {version} is {slot.state.value}{why}")
            return slot.model
        ready = entry.ready
        if not ready:
            reason = entry.reason or "; ".join(
                f"version {s.version} {s.state.value}" + (f": {s.reason}" if s.reason else "")
                for s in list(entry.versions.values())
            )
            raise Unavailable(f"model '{name}' has no READY version ({reason or 'not loaded'})")
        model = entry.versions[ready[-1]].model
        assert model is not None
        return model

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        rows: list[IndexEntry] = []
        for entry in sorted(self._models.values(), key=lambda e: e.name):
            if not entry.versions:
                if not ready_only:
                    state = ModelState.UNAVAILABLE
                    rows.append(IndexEntry(entry.name, "", state, entry.reason or "not loaded"))
                continue
            for slot in sorted(list(entry.versions.values()), key=lambda s: int(s.version)):
                if ready_only and slot.model is None:
                    continue
                rows.append(IndexEntry(entry.name, slot.version, slot.state, slot.reason))
        return rows

    def names(self) -> list[str]:
        return sorted(self._models)

    def loaded_models(self) -> list[LoadedModel]:
        return [s.model for e in self._models.values() for s in e.versions.values() if s.model]
