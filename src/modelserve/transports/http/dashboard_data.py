"""The dashboard's JSON documents (``GET /ui/api/summary``, ``GET /ui/api/models/{m}``), also
what the server-rendered pages show (dashboard.py). docs/dashboard.md describes them for scripts.

Traffic figures come from the time series (observability/timeseries.py). With ``--workers N``
each worker keeps its own ring buffer and writes it every 2 s to the shared metrics directory
(``timeseries.<pid>.json``, observability/hub.py); the worker that answers adds up every file
written in the last ``SHARED_FRESH_S`` seconds, so requests, errors, latency quantiles and
batch sizes cover all workers. Model states, queue depths, process figures and payload sinks are
those of the worker that answers (every worker loads the same models).

A model's monitoring figures (accuracy, label coverage, drift: monitoring/service.py) come from
the prediction store every worker shares; they are read at most every ``MONITORING_TTL_S``
seconds per model, so a page polling every 2 s does not query the store each time. The
validation verdict is the version's own gate report (serving/gates.py), kept in memory.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

import orjson

from modelserve.dataplane import DataPlane
from modelserve.errors import FailedPrecondition, NotFound, ServerError
from modelserve.monitoring.payloads import PayloadLogging
from modelserve.monitoring.service import Monitoring
from modelserve.observability import Observability
from modelserve.observability.timeseries import SHARED_PREFIX, Point, imported
from modelserve.routing.controller import Experiments
from modelserve.routing.shadow import ShadowMirror

__all__ = ["MONITORING_TTL_S", "RECENT_S", "SHARED_FRESH_S", "DashboardData"]

RECENT_S = 10
"""The overview's rates and quantiles cover the last this many seconds."""
SHARED_FRESH_S = 10.0
"""A worker's shared file older than this is a worker that is gone."""
MONITORING_TTL_S = 5.0
"""A model's monitoring figures are read from the store again after this long (the monitoring
service refreshes its own gauges as often)."""


def _series(points: list[Point], seconds: int) -> dict[str, list[Any]]:
    """Columns for a chart: t, requests_per_s, errors_per_s, p50/p95/p99 (ms), batch_size."""
    columns: dict[str, list[Any]] = {
        "t": [],
        "requests_per_s": [],
        "errors_per_s": [],
        "p50_ms": [],
        "p95_ms": [],
        "p99_ms": [],
        "batch_size": [],
    }
    for point in points:
        for key, value in point.figures(seconds).items():
            columns[key].append(value)
    return columns


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class DashboardData:
    def __init__(
        self,
        dataplane: DataPlane,
        observability: Observability,
        payloads: PayloadLogging | None = None,
        control_mode: str = "none",
        monitoring: Monitoring | None = None,
        experiments: Experiments | None = None,
        shadow: ShadowMirror | None = None,
    ) -> None:
        self._dp = dataplane
        self._obs = observability
        self._payloads = payloads
        self._monitoring = monitoring
        self.experiments = experiments
        self._shadow = shadow
        self._monitoring_read: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.control_mode = control_mode
        self._started = time.time()
        self._cpu_at = (time.monotonic(), time.process_time())
        self._cpu_percent = 0.0

    # ---- sources -----------------------------------------------------------------------------

    def _windows(self) -> dict[tuple[str, str], dict[str, list[Point]]]:
        """Every version's closed points, all workers' added up when they share a directory."""
        series = self._obs.timeseries
        if series is None:
            return {}
        shared = self._obs.multiprocess_dir
        if shared is None:
            return {
                key: {"s": list(w.seconds), "m": [*w.minutes, w.minute]}
                for key in series.versions()
                if (w := series.window(*key)) is not None
            }
        documents = []
        now = time.time()
        for path in Path(shared).glob(f"{SHARED_PREFIX}*.json"):
            try:
                if now - path.stat().st_mtime > SHARED_FRESH_S:
                    continue
                documents.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # a worker gone or writing: its next file counts
        return imported(documents)

    def _process(self) -> dict[str, Any]:
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu_at
        if now - then >= 1.0:
            self._cpu_percent = round(100 * (cpu - cpu_then) / (now - then), 1)
            self._cpu_at = (now, cpu)
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self._started, 1),
            "cpu_percent": self._cpu_percent,
            "cpu_seconds": round(cpu, 2),
            "rss_bytes": _rss_bytes(),
            "load_average": list(os.getloadavg()),
        }

    # ---- documents ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        meta = self._dp.server_metadata()
        windows = self._windows()
        built = {(m.name, m.version): m for m in self._dp.loaded_models()}
        samples = {(s.name, s.version): s for s in self._obs.models()}
        reasons = {(r.name, r.version): r.reason for r in self._dp.repository_index()}
        versions = []
        for key in sorted(samples, key=lambda k: (k[0], _version_order(k[1]))):
            sample = samples[key]
            model = built.get(key)
            recent = Point(0)
            for point in windows.get(key, {}).get("s", [])[-RECENT_S:]:
                recent.add(point)
            figures = recent.figures(RECENT_S)
            runtime = model.runtime_name if model is not None else None
            versions.append(
                {
                    "model": key[0],
                    "version": key[1],
                    "state": sample.state,
                    "reason": reasons.get(key, ""),
                    "runtime": runtime,
                    "platform": model.platform if model is not None else None,
                    "format": None
                    if runtime is None
                    else "onnx"
                    if runtime == "onnx"
                    else "native",
                    **self._validation(*key),
                    "requests_per_s": figures["requests_per_s"],
                    "p50_ms": figures["p50_ms"],
                    "p99_ms": figures["p99_ms"],
                    "error_rate": round(recent.errors / recent.requests, 4)
                    if recent.requests
                    else 0.0,
                    "queue_depth": sample.queue_depth,
                    "batches_in_flight": sample.batches_in_flight,
                }
            )
        return {
            "server": {
                "name": meta.name,
                "version": meta.version,
                "live": self._dp.live(),
                "ready": self._dp.ready(),
                "model_control_mode": self.control_mode,
                "workers_shared": self._obs.multiprocess_dir is not None,
                **self._process(),
            },
            "window_s": RECENT_S,
            "models": versions,
            "payload_sinks": self._payloads.report() if self._payloads is not None else [],
        }

    def _validation(self, name: str, version: str) -> dict[str, Any]:
        """The verdict of the version's validation gate (``passed``, ``failed``, None without
        a gate) and, in words, what failed or every check's outcome."""
        try:
            report = self._dp.validation_report(name, version)
        except ServerError:
            return {"validation": None, "validation_detail": ""}
        checks = [str(check.get("message", "")) for check in report.get("checks", [])]
        if report.get("passed"):
            detail = "; ".join(c for c in checks if c) or "; ".join(report.get("notes", []))
            return {"validation": "passed", "validation_detail": detail}
        failures = report.get("failures") or checks
        return {"validation": "failed", "validation_detail": "; ".join(failures)}

    async def monitoring(self, name: str) -> dict[str, Any] | None:
        """The monitoring API's document of ``name`` (docs/monitoring.md), read again at most
        every ``MONITORING_TTL_S`` s; None when the model is not monitored, ``{"error": …}``
        when the store cannot be read."""
        if self._monitoring is None:
            return None
        now = time.monotonic()
        cached = self._monitoring_read.get(name)
        if cached is not None and now - cached[0] < MONITORING_TTL_S:
            return cached[1]
        document: dict[str, Any] | None
        try:
            document = await self._monitoring.report(name)
        except FailedPrecondition:
            document = None
        except ServerError as exc:  # the store cannot be read now: say so, ask again next time
            return {"error": exc.message}
        self._monitoring_read = {
            model: entry
            for model, entry in self._monitoring_read.items()
            if now - entry[0] < MONITORING_TTL_S
        }
        self._monitoring_read[name] = (now, document)
        return document

    async def experiment(self, name: str) -> dict[str, Any] | None:
        """The experiments API's document of ``name`` (docs/experiments.md); None when it has
        no experiment, ``{"error": …}`` when it cannot be read now."""
        if self.experiments is None:
            return None
        try:
            return await self.experiments.status(name)
        except (NotFound, FailedPrecondition):
            return None
        except ServerError as exc:
            return {"error": exc.message}

    def shadow(self, name: str) -> dict[str, Any] | None:
        """The shadow comparison of ``name`` (docs/experiments.md), None when never mirrored."""
        if self._shadow is None:
            return None
        stats = self._shadow.stats(name)
        return stats if stats.get("version") is not None else None

    async def model(self, name: str, resolution: str = "second") -> dict[str, Any]:
        """One model: its versions' series (``second``: 15 min at 1 s; ``minute``: 24 h at
        1 min), its repository configuration, its monitoring figures, its traffic experiment and
        its shadow comparison.
        NotFound for a model the repository lacks."""
        if resolution not in ("second", "minute"):
            raise NotFound("resolution must be 'second' or 'minute'")
        rows = [r for r in self._dp.repository_index() if r.name == name]
        if not rows:
            raise NotFound(f"unknown model '{name}'")
        try:
            config: dict[str, Any] | None = self._dp.model_config(name)
        except ServerError:  # not loaded: no configuration to show
            config = None
        ring, seconds = ("s", 1) if resolution == "second" else ("m", 60)
        windows = self._windows()
        return {
            "model": name,
            "resolution": resolution,
            "versions": [
                {
                    "version": row.version,
                    "state": row.state.value,
                    "reason": row.reason,
                    "series": _series(windows.get((name, row.version), {}).get(ring, []), seconds),
                }
                for row in sorted(rows, key=lambda r: _version_order(r.version))
            ],
            "config": config,
            "model_control_mode": self.control_mode,
            "monitoring": await self.monitoring(name),
            "experiment": await self.experiment(name),
            "shadow": self.shadow(name),
        }


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)
