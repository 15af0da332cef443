"""Model monitoring at run time: the prediction store's writer, delayed labels, the figures
of the read API and the metrics.

The server calls ``apply`` with the monitored models (a ``monitoring:`` key in model.yaml)
whenever models are loaded or unloaded. The service follows them on the event bus with their
``sample_rate``; a writer task takes batches of events off the bus and writes their predicted
rows to the store on the service's own thread (never on the event loop). The bus queue is the
only buffer: while the store is slow it fills, and new events are dropped and counted
(``modelserve_monitoring_predictions_total{outcome="dropped"}``), never waited for.

Everything touching the store (writes, labels, figures, drift windows, retention) runs on one
thread, in the order it was asked for. Figures come from the store, which every ``--workers``
process shares, so every process answers and exports the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from modelserve.config.monitoring import WINDOWS, MonitoringConfig
from modelserve.errors import FailedPrecondition, InvalidArgument, Unavailable
from modelserve.monitoring.accuracy import Figures, classification, regression
from modelserve.monitoring.alerts import ALERT_STATUS, Alert, Alerts
from modelserve.monitoring.events import (
    EXPERIMENT_STATUS,
    EventBus,
    InferenceEvent,
    Subscription,
)
from modelserve.monitoring.metrics import MonitoringMetrics
from modelserve.monitoring.predictions import Target, label_rows, prediction_rows, target_for
from modelserve.monitoring.store import DriftPoint, LabelRow, PredictionRow, Store, open_store
from modelserve.types import TensorSpec

if TYPE_CHECKING:  # drift testing is imported with the first monitored version (_drift_window)
    from modelserve.monitoring.drift import WindowResult
    from modelserve.monitoring.features import FeatureWindow
    from modelserve.monitoring.profile import Profile

__all__ = ["MAX_LABELS", "Monitoring", "WatchedModel", "WatchedVersion"]

log = logging.getLogger("modelserve.monitoring")

T = TypeVar("T")

BATCH_EVENTS = 512
LINGER_S = 0.05
QUEUE_EVENTS = 20_000
QUEUE_BYTES = 128 * 1024 * 1024
REFRESH_S = 5.0
"""How often the metrics are read again from the store (every process does it)."""
PRUNE_EVERY_S = 3600.0
LABEL_RETRY_S = 0.3
LABEL_REFRESH_S = 0.5
"""After labels arrive, the accuracy gauges and alerts of their model are recomputed once this
much later: a burst of label posts costs one recomputation, not one each."""
"""Labels whose prediction is not stored yet are tried once more after this long: the
prediction may still be in this or another worker's writer (each writes within 50 ms)."""
MAX_LABELS = 100_000
"""Most labels one request may carry."""
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class WatchedVersion:
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    folders: tuple[Path, ...] = ()
    """Where the reference file is looked for: the version folder, then the model folder."""


@dataclass(frozen=True, slots=True)
class WatchedModel:
    name: str
    config: MonitoringConfig
    versions: Mapping[str, WatchedVersion]


@dataclass
class _Model:
    config: MonitoringConfig
    targets: dict[str, Target] = field(default_factory=dict)
    """Per version: the output compared with the labels and the task."""
    windows: dict[str, FeatureWindow] = field(default_factory=dict)
    """Per version with a reference: its open drift window."""
    drift_errors: dict[str, str] = field(default_factory=dict)
    """Per version: why its drift cannot be measured."""


def _drift_window(
    config: MonitoringConfig, spec: WatchedVersion
) -> tuple[FeatureWindow | None, str | None]:
    """The drift window of a version (blocking: it may profile the reference file)."""
    from modelserve.monitoring.drift import DriftTester
    from modelserve.monitoring.features import FeatureWindow, layout_for
    from modelserve.monitoring.profile import PROFILE_FILE, Profile, load_or_build

    profile: Profile | None = None
    try:
        if config.reference is not None:
            found = [f / config.reference for f in spec.folders if (f / config.reference).is_file()]
            if not found:
                where = " or ".join(str(f) for f in spec.folders)
                return None, f"reference '{config.reference}' not found in {where}"
            profile = load_or_build(found[0])
        else:
            cached = [f / PROFILE_FILE for f in spec.folders if (f / PROFILE_FILE).is_file()]
            if not cached:
                return None, None
            profile = Profile.from_document(orjson.loads(cached[0].read_bytes()))
        layout = layout_for(spec.inputs, config.feature_names)
        tester = DriftTester(profile, layout.names, config.threshold, config.drift_share)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"reference: {exc}"
    return FeatureWindow(layout, tester, config.window), None


class Monitoring:
    def __init__(
        self,
        bus: EventBus,
        metrics: MonitoringMetrics,
        store_url: str | None,
        state_dir: Path,
    ) -> None:
        self._bus = bus
        self._metrics = metrics
        self._store_url = store_url
        self._state_dir = state_dir
        self._store: Store | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="modelserve-monitoring")
        self._models: dict[str, _Model] = {}
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._soon: dict[str, asyncio.Task[None]] = {}
        """The pending recomputation of a model's gauges after labels arrived."""
        self._write_lock = asyncio.Lock()
        self._lock = asyncio.Lock()
        self._stopped = False
        self._last_prune = 0.0
        self.alerts = Alerts(bus, metrics)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.store_error: str | None = None
        """Why the store did not open (None once it has, or before it was asked to)."""

    # ---- configuration -----------------------------------------------------------------------

    @property
    def models(self) -> list[str]:
        return sorted(self._models)

    @property
    def store(self) -> Store | None:
        """The store, once a model is monitored (None before)."""
        return self._store

    async def apply(self, watched: Mapping[str, WatchedModel]) -> None:
        """Follow exactly the ``watched`` models (their versions, targets and sample rates)."""
        async with self._lock:
            if self._stopped:
                return
            self._loop = asyncio.get_running_loop()
            models: dict[str, _Model] = {}
            for name, model in watched.items():
                entry = _Model(model.config)
                previous = self._models.get(name)
                same = previous is not None and previous.config == model.config
                for version, spec in model.versions.items():
                    try:
                        target = target_for(model.config, spec.outputs)
                    except ValueError as exc:
                        log.error("model %s version %s: %s", name, version, exc)
                        continue
                    if target is not None:
                        entry.targets[version] = target
                    if same and previous is not None and version in previous.windows:
                        entry.windows[version] = previous.windows[version]
                        continue
                    window, error = await self._call(_drift_window, model.config, spec)
                    if window is not None:
                        entry.windows[version] = window
                    if error is not None:
                        entry.drift_errors[version] = error
                        log.error("model %s version %s: no drift: %s", name, version, error)
                models[name] = entry
            self._models = models
            if models and self._store is None:
                try:
                    self._store = await self._call(open_store, self._store_url, self._state_dir)
                except Exception as exc:
                    self._store_failed(exc)
                    return
                self.store_error = None
                log.info("monitoring store: %s", self._store.url)
            rates = {name: m.config.sample_rate for name, m in models.items()}
            if self._subscription is None and rates:
                self._subscription = self._bus.subscribe(
                    "monitoring", models=rates, max_events=QUEUE_EVENTS, max_bytes=QUEUE_BYTES
                )
                self._tasks.append(asyncio.create_task(self._write_loop(self._subscription)))
                self._tasks.append(asyncio.create_task(self._refresh_loop()))
            elif self._subscription is not None:
                self._bus.update(self._subscription, rates)

    def _store_failed(self, exc: Exception) -> None:
        """The store did not open: keep the reason for the API (it is tried again at the next
        ``apply``), logged once at WARNING (again only if the reason changes)."""
        where = self._store_url or str(self._state_dir / "modelserve.db")
        reason = f"the monitoring store ({_redacted(where)}) cannot open: {_oneline(exc)}"
        if reason != self.store_error:
            log.warning("%s; monitored models are not recorded until it opens", reason)
        self.store_error = reason

    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is not None and self._store is None and self.store_error is not None:
            raise Unavailable(self.store_error)
        if model is None or self._store is None:
            raise FailedPrecondition(
                f"model '{name}' is not monitored: add a 'monitoring:' key to its model.yaml "
                "(docs/monitoring.md)"
            )
        return model

    # ---- the store's thread ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # ---- predictions -------------------------------------------------------------------------

    async def _write_loop(self, subscription: Subscription) -> None:
        while batch := await subscription.get(BATCH_EVENTS, LINGER_S):
            async with self._write_lock:
                await self._write(batch)

    async def _write(self, batch: list[InferenceEvent]) -> None:
        try:
            stored = await self._call(self._store_events, batch)
        except Exception as exc:
            failed: dict[str, int] = {}
            for event in batch:
                failed[event.model] = failed.get(event.model, 0) + 1
            for model, count in failed.items():
                self._metrics.predictions.labels(model, "failed").inc(count)
            log.warning("monitoring store: %d predictions not written: %s", len(batch), exc)
            return
        for model, count in stored.items():
            self._metrics.predictions.labels(model, "stored").inc(count)

    def _store_events(self, batch: list[InferenceEvent]) -> dict[str, int]:
        """On the store's thread: the rows of the answered requests of ``batch``."""
        rows: list[PredictionRow] = []
        stored: dict[str, int] = {}
        models = self._models
        closed: list[tuple[str, str, WindowResult]] = []
        for event in batch:
            if event.code is not None or event.status in (ALERT_STATUS, EXPERIMENT_STATUS):
                continue
            model = models.get(event.model)
            if model is None:
                continue
            window = model.windows.get(event.version)
            if window is not None:
                full = window.add(event)
                if full:
                    closed.extend((event.model, event.version, result) for result in full)
            target = model.targets.get(event.version)
            if target is None:
                continue
            new = prediction_rows(event, target)
            rows.extend(new)
            stored[event.model] = stored.get(event.model, 0) + len(new)
        if rows and self._store is not None:
            self._store.write_predictions(rows)
        for name, version, result in closed:
            self._record_window(name, version, result)
        return stored

    def _close_window(self, model: str, version: str, window: FeatureWindow) -> None:
        """On the store's thread: test a window and record it."""
        result = window.test(close=True)
        if result is not None:
            self._record_window(model, version, result)

    def _record_window(self, model: str, version: str, result: WindowResult) -> None:
        """On the store's thread: store a tested window's point, set the drift metrics, raise
        the drift alert."""
        if self._store is None:
            return
        point = DriftPoint(
            version,
            time.time_ns(),
            result.rows,
            result.drifted,
            orjson.dumps({n: f.document() for n, f in result.features.items()}).decode(),
        )
        self._store.add_drift(model, point)
        self._drift_metrics(model, version, result)
        entry = self._models.get(model)
        if entry is not None and entry.config.alerts.drift:
            drifted = sorted(n for n, f in result.features.items() if f.drifted)
            alert = Alert(
                model,
                version,
                "drift",
                result.drifted,
                round(len(drifted) / max(len(result.features), 1), 6),
                entry.config.drift_share,
                f"{result.rows} rows",
                {"features": drifted},
            )
            self._raise(alert, entry.config)

    def _raise(self, alert: Alert, config: MonitoringConfig) -> None:
        """On the store's thread: record the alert's state in the store (shared by every
        worker process) and publish it on the event loop when this call changed it."""
        key = f"{alert.model}/{alert.version}/{alert.kind}"
        assert self._store is not None
        state = "1" if alert.active else "0"
        before = self._store.swap_state("alerts", key, state)
        changed = (before or "0") != state
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self.alerts.update, alert, config.alerts, changed)

    def _drift_metrics(self, model: str, version: str, result: WindowResult) -> None:
        metrics = self._metrics
        for feature, figures in result.features.items():
            metrics.feature_drift.labels(model, version, feature, figures.method).set(figures.value)
        metrics.drift_detected.labels(model, version).set(int(result.drifted))

    def _close_due_windows(self) -> None:
        """On the store's thread: test the windows open for ``window.seconds``."""
        for name, model in list(self._models.items()):
            for version, window in list(model.windows.items()):
                if window.due():
                    self._close_window(name, version, window)
                elif time.monotonic() - window.opened >= window.window.seconds:
                    window.test(close=True)  # too few rows: they carry over

    async def flush(self) -> None:
        """Write what this process's bus queue holds now."""
        subscription = self._subscription
        if subscription is None:
            return
        async with self._write_lock:
            while subscription.depth:
                await self._write(subscription.take(BATCH_EVENTS))

    # ---- labels ------------------------------------------------------------------------------

    async def labels(self, model: str, document: Any) -> dict[str, int]:
        """``{"labels": [{"id", "label"}, …]}`` or one ``{"id", "label"}`` for ``model``:
        ``{"accepted": n, "unknown": k}``."""
        self._model(model)
        entries = _label_entries(document)
        rows: list[LabelRow] = []
        for ident, label in entries:
            try:
                rows.extend(label_rows(ident, label))
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
        await self.flush()
        store = self._store
        assert store is not None
        now = time.time_ns()
        matched = await self._call(store.add_labels, model, rows, now)
        ids = {ident for ident, _ in entries}
        if ids - matched:
            await asyncio.sleep(LABEL_RETRY_S)
            await self.flush()
            retry = [row for row in rows if row.id not in matched]
            matched |= await self._call(store.add_labels, model, retry, now)
        accepted = sum(1 for ident, _ in entries if ident in matched)
        if accepted and model not in self._soon and not self._stopped:
            self._soon[model] = asyncio.create_task(self._refresh_soon(model))
        return {"accepted": accepted, "unknown": len(entries) - accepted}

    # ---- figures -----------------------------------------------------------------------------

    async def report(self, model: str) -> dict[str, Any]:
        """The monitoring API's document for ``model`` (docs/monitoring.md)."""
        self._model(model)
        await self.flush()
        try:
            return await self._call(self._report, model)
        except Exception as exc:
            log.warning("monitoring store: cannot read figures of %s: %s", model, exc)
            raise Unavailable(f"the monitoring store cannot be read: {exc}") from None

    def _report(self, model: str, preview: bool = True) -> dict[str, Any]:
        store = self._store
        assert store is not None
        entry = self._models[model]
        now = time.time_ns()
        counts = store.counts(model)
        drift = store.latest_drift(model)
        versions: dict[str, Any] = {}
        for version in sorted(set(counts) | set(entry.targets), key=_version_key):
            total = counts.get(version)
            predicted = total.predictions if total else 0
            labelled = total.labelled if total else 0
            task = self._task(entry, version)
            figures: dict[str, Any] = {}
            for name, seconds in WINDOWS.items():
                since = 0 if seconds is None else now - int(seconds * NS)
                figures[name] = self._figures(store, model, version, task, since).document()
            versions[version] = {
                "predictions": predicted,
                "labelled": labelled,
                "label_coverage": round(labelled / predicted, 6) if predicted else 0.0,
                "task": task,
                "metrics": figures,
                "drift": self._drift_doc(entry, version, drift.get(version), preview),
            }
        return {"model": model, "versions": versions}

    @staticmethod
    def _drift_doc(
        entry: _Model, version: str, point: DriftPoint | None, preview: bool
    ) -> dict[str, Any] | None:
        """The last tested window, or the open one when it has enough rows to test (and
        ``preview``); None for a version without a reference."""
        if version in entry.drift_errors:
            return {"error": entry.drift_errors[version]}
        window = entry.windows.get(version)
        current = window.test(close=False) if window is not None and preview else None
        if current is not None:
            return {
                "drifted": current.drifted,
                "window_rows": current.rows,
                "window": "open",
                "features": {n: f.document() for n, f in current.features.items()},
            }
        if point is not None:
            return {
                "drifted": point.drifted,
                "window_rows": point.window_rows,
                "window": "closed",
                "time": point.time_ns / NS,
                "features": orjson.loads(point.features),
            }
        if window is not None:
            return {"drifted": False, "window_rows": 0, "features": {}}
        return None

    @staticmethod
    def _task(entry: _Model, version: str) -> str:
        target = entry.targets.get(version)
        if target is not None:
            return target.task
        return entry.config.task or "classification"

    @staticmethod
    def _figures(store: Store, model: str, version: str, task: str, since: int) -> Figures:
        if task == "regression":
            return regression(store.error_sums(model, version, since))
        return classification(store.confusion(model, version, since))

    # ---- metrics and retention ---------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        while not self._stopped:
            try:
                await self._call(self._close_due_windows)
            except Exception as exc:
                log.warning("monitoring: drift windows could not be tested: %s", exc)
            for model in list(self._models):
                try:
                    await self._set_gauges(model)
                except Exception as exc:
                    log.warning("monitoring store: cannot read figures of %s: %s", model, exc)
            if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = time.monotonic()
                await self._prune()
            await asyncio.sleep(REFRESH_S)

    async def _refresh_soon(self, model: str) -> None:
        try:
            await asyncio.sleep(LABEL_REFRESH_S)
        finally:
            self._soon.pop(model, None)
        try:
            await self._set_gauges(model)
        except Exception as exc:
            log.warning("monitoring store: cannot read figures of %s: %s", model, exc)

    async def _set_gauges(self, model: str) -> None:
        if model not in self._models or self._store is None:
            return
        report = await self._call(self._report, model, False)
        await self._call(self._accuracy_alerts, model, report)
        metrics = self._metrics
        for version, doc in report["versions"].items():
            metrics.coverage.labels(model, version).set(doc["label_coverage"])
            for window, figures in doc["metrics"].items():
                if "accuracy" in figures:
                    metrics.accuracy.labels(model, version, window).set(figures["accuracy"])
                if "mae" in figures:
                    metrics.mae.labels(model, version, window).set(figures["mae"])
                    metrics.rmse.labels(model, version, window).set(figures["rmse"])

    def _accuracy_alerts(self, model: str, report: dict[str, Any]) -> None:
        """On the store's thread: accuracy and label-coverage alerts of every version."""
        entry = self._models.get(model)
        store = self._store
        if entry is None or store is None:
            return
        alerts = entry.config.alerts
        if alerts.min_accuracy is not None:
            for version, doc in report["versions"].items():
                figures = doc["metrics"].get(alerts.accuracy_window, {})
                if "accuracy" in figures and figures["labelled"] >= alerts.min_labels:
                    accuracy = figures["accuracy"]
                    alert = Alert(
                        model,
                        version,
                        "accuracy",
                        accuracy < alerts.min_accuracy,
                        accuracy,
                        alerts.min_accuracy,
                        alerts.accuracy_window,
                        {"labelled": figures["labelled"]},
                    )
                    self._raise(alert, entry.config)
        if alerts.min_label_coverage is not None:
            since = time.time_ns() - 86400 * NS
            for version, counts in store.counts(model, since).items():
                if counts.predictions < alerts.min_labels:
                    continue
                coverage = round(counts.labelled / counts.predictions, 6)
                alert = Alert(
                    model,
                    version,
                    "label_coverage",
                    coverage < alerts.min_label_coverage,
                    coverage,
                    alerts.min_label_coverage,
                    "24h",
                    {"predictions": counts.predictions, "labelled": counts.labelled},
                )
                self._raise(alert, entry.config)

    async def _prune(self) -> None:
        store = self._store
        if store is None:
            return
        for name, model in list(self._models.items()):
            before = time.time_ns() - int(model.config.retention_days * 86400 * NS)
            try:
                deleted = await self._call(store.prune, name, before)
            except Exception as exc:
                log.warning("monitoring store: retention of %s failed: %s", name, exc)
                continue
            if deleted:
                log.info("monitoring: %d rows of %s past retention deleted", deleted, name)

    def refresh(self) -> None:
        """Before each scrape: the bus's drops into the metrics."""
        if self._subscription is not None:
            for model, count in self._subscription.take_dropped().items():
                self._metrics.predictions.labels(model, "dropped").inc(count)

    # ---- shutdown ----------------------------------------------------------------------------

    async def stop(self, timeout_s: float) -> None:
        """Write what is queued (within ``timeout_s``), then close the store."""
        async with self._lock:
            self._stopped = True
            subscription = self._subscription
            tasks, self._tasks = self._tasks, []
            if subscription is not None:
                self._bus.unsubscribe(subscription)
                writer = tasks[0]
                try:
                    await asyncio.wait_for(asyncio.shield(writer), timeout_s)
                except TimeoutError:
                    log.warning("monitoring: predictions still queued at the shutdown timeout")
            tasks += list(self._soon.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.alerts.stop(min(timeout_s, 5.0))
            if self._store is not None:
                await self._call(self._store.close)
            self._thread.shutdown(wait=False)


def _label_entries(document: Any) -> list[tuple[str, Any]]:
    if not isinstance(document, dict):
        raise InvalidArgument('labels: expected {"labels": [{"id": …, "label": …}, …]}')
    if "labels" in document:
        items = document["labels"]
        if not isinstance(items, list):
            raise InvalidArgument('\'labels\' must be a list of {"id", "label"} objects')
    elif "id" in document:
        items = [document]
    else:
        raise InvalidArgument('labels: expected {"labels": [...]} or {"id": …, "label": …}')
    if len(items) > MAX_LABELS:
        raise InvalidArgument(f"at most {MAX_LABELS} labels per request, got {len(items)}")
    entries: list[tuple[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item or "label" not in item:
            raise InvalidArgument(f"labels[{index}]: expected an object with 'id' and 'label'")
        ident = item["id"]
        if not isinstance(ident, str) or not ident:
            raise InvalidArgument(f"labels[{index}]: 'id' must be a non-empty string")
        entries.append((ident, item["label"]))
    return entries


def _oneline(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _redacted(url: str) -> str:
    """``url`` without the password of its user part (``postgresql://user:***@host/db``)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)
