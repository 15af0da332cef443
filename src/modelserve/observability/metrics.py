"""The Prometheus metrics of one server, on an injected registry (never the global one).

Per request, a model version's ``Series`` counts outcomes and accumulates the histograms in
plain integers on the event loop (accumulate.py); ``refresh`` flushes them into the
prometheus_client metrics right before each scrape (and, with several worker processes, every
few seconds and at shutdown), so the hot path never takes a lock. The gauges that
describe state (queue depth, batches in flight, model state, load duration, open connections,
requests in flight) are set by ``refresh`` from a snapshot, right before each scrape (and, with
several worker processes, every few seconds by each worker: see docs/metrics.md).

Every metric works in prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``):
counters and histograms add up across processes, and each gauge declares how its per-process
values combine (``livesum`` for counts of things, ``livemax`` for states and durations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelserve.errors import ErrorCode
from modelserve.observability.accumulate import Accumulator

__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS",
    "MODEL_STATES",
    "OUTCOMES",
    "UNKNOWN_MODEL",
    "InferenceMetrics",
    "ModelSample",
    "Series",
]

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds: small models answer in 100 µs, so the buckets start there."""
LATENCY_BOUNDS_NS = tuple(round(bound * 1e9) for bound in LATENCY_BUCKETS)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MODEL_STATES = ("LOADING", "READY", "UNLOADING", "UNAVAILABLE")
OUTCOMES: dict[ErrorCode, str] = {code: code.name.lower() for code in ErrorCode}
SUCCESS = "success"
UNKNOWN_MODEL = "_unknown"
"""The model label of requests for a model the repository does not know: a label value per
name a client makes up would let any client grow the series without bound."""


@dataclass(frozen=True, slots=True)
class ModelSample:
    """One model version as the gauges show it, read from the repository at scrape time."""

    name: str
    version: str
    state: str
    queue_depth: int = 0
    batches_in_flight: int = 0
    load_seconds: float | None = None
    cache_bytes: int | None = None
    """Bytes its response cache holds (None: it has none)."""
    cache_entries: int = 0


class Series:
    """What one model version recorded since the last flush: outcome counts and histogram
    accumulators, plain integers bumped on the event loop."""

    __slots__ = (
        "_labels",
        "_metrics",
        "batch",
        "cache_hits",
        "cache_misses",
        "compute",
        "latency",
        "outcomes",
        "queue",
    )

    def __init__(self, metrics: InferenceMetrics, name: str, version: str) -> None:
        self._metrics = metrics
        self._labels = (name, version)
        self.outcomes: dict[str, int] = {}
        self.latency = Accumulator(LATENCY_BOUNDS_NS)
        self.queue = Accumulator(LATENCY_BOUNDS_NS)
        self.compute = Accumulator(LATENCY_BOUNDS_NS)
        self.batch = Accumulator(BATCH_BUCKETS)
        self.cache_hits = 0
        self.cache_misses = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def succeeded(self, latency_ns: int, queue_ns: int, compute_ns: int) -> None:
        self.count(SUCCESS)
        self.latency.observe(latency_ns)
        self.queue.observe(queue_ns)
        self.compute.observe(compute_ns)

    def executed(self, batch_size: int) -> None:
        self.batch.observe(batch_size)

    def cache_hit(self, latency_ns: int) -> None:
        """Answered from the response cache: no queue, no execution."""
        self.count(SUCCESS)
        self.latency.observe(latency_ns)
        self.cache_hits += 1

    def flush(self) -> None:
        """Move what was recorded into the Prometheus metrics (children made on first use, so
        a version that only ever failed shows no empty queue or compute histograms)."""
        metrics, labels = self._metrics, self._labels
        if self.outcomes:
            for outcome, count in self.outcomes.items():
                metrics.requests.labels(*labels, outcome).inc(count)
            self.outcomes = {}
        self.latency.flush(lambda: metrics.latency.labels(*labels), 1e-9)
        self.queue.flush(lambda: metrics.queue.labels(*labels), 1e-9)
        self.compute.flush(lambda: metrics.compute.labels(*labels), 1e-9)
        self.batch.flush(lambda: metrics.batch_size.labels(*labels))
        if self.cache_hits:
            metrics.cache_hits.labels(*labels).inc(self.cache_hits)
            self.cache_hits = 0
        if self.cache_misses:
            metrics.cache_misses.labels(*labels).inc(self.cache_misses)
            self.cache_misses = 0


class InferenceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("model", "version")
        self.requests = Counter(
            "modelserve_inference_requests",
            "Inference requests answered, by outcome: success or the error code in lower case.",
            (*labels, "outcome"),
            registry=registry,
        )
        self.latency = Histogram(
            "modelserve_inference_request_duration_seconds",
            "Time from the request's arrival at the transport to its answer, every outcome.",
            labels,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.queue = Histogram(
            "modelserve_inference_queue_duration_seconds",
            "Time a successful request waited in the model's queue.",
            labels,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.compute = Histogram(
            "modelserve_inference_compute_duration_seconds",
            "Execution time of the batch a successful request ran in.",
            labels,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "modelserve_inference_batch_size",
            "Rows per model execution (one observation per executed batch).",
            labels,
            registry=registry,
            buckets=BATCH_BUCKETS,
        )
        self.queue_depth = Gauge(
            "modelserve_model_queue_depth",
            "Requests waiting in the model's queue.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "modelserve_model_batches_in_flight",
            "Batches of the model executing now (at most its instance count).",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.load_duration = Gauge(
            "modelserve_model_load_duration_seconds",
            "How long the serving model version took to load and warm up.",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.state = Gauge(
            "modelserve_model_state",
            "1 for the state the model version is in, 0 for the others.",
            (*labels, "state"),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.http_rejections = Counter(
            "modelserve_http_rejected_requests",
            "HTTP requests the HTTP layer answered itself (malformed 400, body too large 413, "
            "headers too large 431, connection limit 503), by status.",
            ("status",),
            registry=registry,
        )
        self.cache_hits = Counter(
            "modelserve_response_cache_hits",
            "Requests answered from the response cache (no queue, no execution).",
            labels,
            registry=registry,
        )
        self.cache_misses = Counter(
            "modelserve_response_cache_misses",
            "Requests to a model with a response cache that the cache did not have.",
            labels,
            registry=registry,
        )
        self.cache_bytes = Gauge(
            "modelserve_response_cache_bytes",
            "Bytes the model version's cached answers hold.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cache_entries = Gauge(
            "modelserve_response_cache_entries",
            "Answers the model version's response cache holds.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.inflight = Gauge(
            "modelserve_inflight_requests",
            "Inference requests the server is handling now (arrived, not yet answered: queued, "
            "running or being answered), every model.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "modelserve_http_connections",
            "Open HTTP connections.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._series: dict[tuple[str, str], Series] = {}
        self.taps: list[Callable[[tuple[str, str], Series], None]] = []
        """Called with each series right before ``flush`` moves its counts (the dashboard's
        time series, observability/timeseries.py): they see every count exactly once."""
        self._shown: set[tuple[str, str]] = set()
        self._cached: set[tuple[str, str]] = set()

    # ---- per request -------------------------------------------------------------------------

    def series(self, name: str, version: str) -> Series:
        key = (name, version)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = Series(self, name, version)
        return series

    def failed(self, name: str, version: str, code: ErrorCode, latency_ns: int) -> None:
        series = self.series(name, version)
        series.count(OUTCOMES[code])
        series.latency.observe(latency_ns)

    def http_rejected(self, status: int) -> None:
        self.http_rejections.labels(str(status)).inc()

    def flush(self) -> None:
        taps = self.taps
        for key, series in self._series.items():
            for tap in taps:
                tap(key, series)
            series.flush()

    # ---- state, at scrape time ---------------------------------------------------------------

    def refresh(self, samples: Iterable[ModelSample], connections: int, inflight: int = 0) -> None:
        """Flush the per-request figures and set the state gauges from a snapshot; versions
        gone since the last refresh lose their gauge series (their counters and histograms
        stay: they are cumulative)."""
        self.flush()
        shown: set[tuple[str, str]] = set()
        cached: set[tuple[str, str]] = set()
        for sample in samples:
            key = (sample.name, sample.version)
            shown.add(key)
            self.queue_depth.labels(*key).set(sample.queue_depth)
            self.in_flight.labels(*key).set(sample.batches_in_flight)
            if sample.load_seconds is not None:
                self.load_duration.labels(*key).set(sample.load_seconds)
            else:
                _remove(self.load_duration, key)
            if sample.cache_bytes is not None:
                self.cache_bytes.labels(*key).set(sample.cache_bytes)
                self.cache_entries.labels(*key).set(sample.cache_entries)
                cached.add(key)
            for state in MODEL_STATES:
                self.state.labels(*key, state).set(1 if sample.state == state else 0)
        for key in self._shown - shown:
            for gauge in (self.queue_depth, self.in_flight, self.load_duration):
                _remove(gauge, key)
            for state in MODEL_STATES:
                _remove(self.state, (*key, state))
        for key in self._cached - cached:
            _remove(self.cache_bytes, key)
            _remove(self.cache_entries, key)
        self._shown = shown
        self._cached = cached
        self.connections.set(connections)
        self.inflight.set(inflight)


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    # Multiprocess files keep a removed series: it is left at 0 there.
    gauge.labels(*labels).set(0)
    gauge.remove(*labels)
