"""``Observability``: what the transports and the dataplane call to make a request visible.

- Transports: ``begin`` when a request arrives, ``end`` with its status once answered (the
  access log line and the trace spans are written then); ``http_rejected`` for an answer the
  HTTP layer gave itself (malformed request, too large, too many connections).
- Dataplane: ``infer_succeeded`` / ``infer_failed`` once per inference request, recording the
  Triton statistics and the Prometheus metrics, and noting model, outcome and timings on the
  request's context for the access log and the traces. A pipeline's model step is recorded
  the same way with ``nested=True``: under its own model, its latency from the step's start,
  leaving the request's context to the pipeline.
- Dataplane: ``inflight``, the inference requests it is handling now (up on arrival, down once
  answered, whatever the outcome).
- Scrapes: ``exposition`` refreshes the state gauges from the repository (through the reader
  given to ``watch_models``) and renders the registry.

Everything is called on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from modelserve.errors import ErrorCode
from modelserve.observability.access import AccessLog
from modelserve.observability.connections import ConnectionCounter
from modelserve.observability.context import CURRENT, HeaderSource, RequestContext, usable_id
from modelserve.observability.exposition import render
from modelserve.observability.metrics import OUTCOMES, SUCCESS, InferenceMetrics, ModelSample
from modelserve.observability.stats import StatsBook
from modelserve.observability.timeseries import TimeSeries, write_shared
from modelserve.observability.tracing import Tracing

__all__ = ["SHARE_EVERY_S", "BatchTiming", "Observability"]

SHARE_EVERY_S = 2
"""With several workers, how often each writes its time series to the metrics directory."""


class BatchTiming(Protocol):
    """What the batcher tells about the execution a request ran in (batcher.Completed)."""

    @property
    def batch_size(self) -> int: ...
    @property
    def queue_ns(self) -> int: ...
    @property
    def compute_ns(self) -> int: ...
    @property
    def leads_batch(self) -> bool: ...


class Observability:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        tracing: Tracing | None = None,
        access_log: bool = False,
        multiprocess_dir: str | None = None,
        process_metrics: bool = True,
        timeseries: bool = False,
    ) -> None:
        """``registry``: where the metrics live (a fresh one when None). ``multiprocess_dir``:
        prometheus_client's multiprocess directory when several processes serve. The process
        collectors (CPU, memory, file descriptors, GC) are added to the registry when
        ``process_metrics``. ``timeseries``: keep the dashboard's per-second ring buffer
        (fed by each flush; ``tick_forever`` closes its seconds)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.stats = StatsBook()
        self.metrics = InferenceMetrics(self.registry)
        self.tracing = tracing if tracing is not None else Tracing()
        self.access = AccessLog(access_log)
        self.connections = ConnectionCounter()
        self.inflight = 0
        """Inference requests in the dataplane now (it counts them): queued, running or being
        answered; the ``modelserve_inflight_requests`` gauge."""
        self.multiprocess_dir = multiprocess_dir
        self._models: Callable[[], Iterable[ModelSample]] = tuple
        self._refreshers: list[Callable[[], None]] = []
        self.timeseries: TimeSeries | None = None
        if timeseries:
            self.timeseries = TimeSeries()
            self.metrics.taps.append(self.timeseries.tap)
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # ---- transports --------------------------------------------------------------------------

    def begin(
        self,
        transport: str,
        method: str,
        target: str,
        request_id: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        headers: HeaderSource = None,
    ) -> RequestContext:
        """Open the context of a request that just arrived; it is current until ``end``.
        ``headers`` are kept by reference for inference events."""
        given = request_id if usable_id(request_id) else None
        ctx = RequestContext(transport, method, target, given, traceparent, tracestate)
        ctx.headers = headers
        ctx.token = CURRENT.set(ctx)
        return ctx

    def end(self, ctx: RequestContext, status: int | str) -> None:
        """Close a request: access log line, trace spans; it stops being current."""
        try:
            self.access.write(ctx, status)
            if self.tracing.enabled:
                self.tracing.export(ctx, status)
        finally:
            if ctx.token is not None:
                CURRENT.reset(ctx.token)
                ctx.token = None

    def http_rejected(self, method: str, target: str, request_id: str | None, status: int) -> str:
        """A request the HTTP layer answered itself, before any application code: counted by
        status, access-logged; returns the request id its answer carries."""
        ctx = self.begin("http", method, target, request_id)
        self.end(ctx, status)
        self.metrics.http_rejected(status)
        return ctx.request_id

    # ---- dataplane ---------------------------------------------------------------------------

    def infer_succeeded(
        self,
        name: str,
        version: str,
        rows: int,
        done: BatchTiming,
        started_ns: int,
        submitted_ns: int,
        received_ns: int,
        request_id: str | None,
        nested: bool = False,
        cache_miss_ns: int | None = None,
    ) -> None:
        """A request answered: it entered the dataplane at ``started_ns``, was queued at
        ``submitted_ns`` and got its outputs back from the batcher at ``received_ns``.
        ``nested``: a pipeline's step, not the request the transport answers;
        ``cache_miss_ns``: the response cache did not have it, and looking it up and storing
        the answer took that long."""
        now = time.perf_counter_ns()
        input_ns = submitted_ns - started_ns
        output_ns = now - received_ns
        stats = self.stats.version(name, version)
        stats.succeeded(rows, now - started_ns, done.queue_ns, input_ns, done.compute_ns, output_ns)
        ctx = None if nested else CURRENT.get()
        since = ctx.started_ns if ctx is not None else started_ns
        series = self.metrics.series(name, version)
        series.succeeded(now - since, done.queue_ns, done.compute_ns)
        if done.leads_batch:
            stats.executed(done.batch_size, input_ns, done.compute_ns, output_ns)
            series.executed(done.batch_size)
        if cache_miss_ns is not None:
            stats.cache_miss(cache_miss_ns)
            series.cache_misses += 1
        if ctx is not None:
            ctx.model, ctx.version, ctx.outcome, ctx.rows = name, version, SUCCESS, rows
            ctx.batch_size, ctx.submitted_ns = done.batch_size, submitted_ns
            ctx.queue_ns, ctx.compute_ns = done.queue_ns, done.compute_ns
            ctx.adopt_id(request_id)

    def infer_cached(
        self,
        name: str,
        version: str,
        rows: int,
        started_ns: int,
        lookup_ns: int,
        request_id: str | None,
        nested: bool = False,
    ) -> None:
        """A request answered from the response cache; finding it took ``lookup_ns``."""
        now = time.perf_counter_ns()
        self.stats.version(name, version).cache_hit(now - started_ns, lookup_ns)
        ctx = None if nested else CURRENT.get()
        since = ctx.started_ns if ctx is not None else started_ns
        self.metrics.series(name, version).cache_hit(now - since)
        if ctx is not None:
            ctx.model, ctx.version, ctx.outcome, ctx.rows = name, version, SUCCESS, rows
            ctx.adopt_id(request_id)

    def infer_failed(
        self,
        label: tuple[str, str],
        requested: tuple[str, str],
        code: ErrorCode,
        started_ns: int | None,
        request_id: str | None,
        counted: bool,
        nested: bool = False,
    ) -> None:
        """A request failed. ``label``: the (model, version) its metrics go under;
        ``requested``: what the client asked for (for the access log); ``counted``: whether
        a serving version was found, so that its Triton statistics count the failure.
        ``started_ns``: when it entered the dataplane (None: the transport refused it);
        ``nested``: a pipeline's step."""
        now = time.perf_counter_ns()
        ctx = None if nested else CURRENT.get()
        arrived = ctx.started_ns if ctx is not None else started_ns
        self.metrics.failed(*label, code, now - (arrived or now))
        if counted:
            self.stats.version(*label).failed(now - (started_ns or arrived or now))
        if ctx is not None:
            ctx.model, ctx.version = requested if not counted else label
            ctx.outcome = OUTCOMES[code]
            ctx.adopt_id(request_id)

    # ---- scrapes -----------------------------------------------------------------------------

    def watch_models(self, source: Callable[[], Iterable[ModelSample]]) -> None:
        """Where the state gauges come from (the dataplane reads its repository)."""
        self._models = source

    def on_refresh(self, refresher: Callable[[], None]) -> None:
        """Call ``refresher`` whenever the gauges are refreshed (before each scrape, every few
        seconds with several processes, and at shutdown): for other components' metrics that
        count on the hot path in plain integers (the payload sinks' drop counters)."""
        self._refreshers.append(refresher)

    def refresh(self) -> None:
        """Set the state gauges now."""
        self.metrics.refresh(self._models(), self.connections.count, self.inflight)
        for refresher in self._refreshers:
            refresher()

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Refresh on the loop, render in a thread: (body, content type)."""
        self.refresh()
        return await asyncio.to_thread(render, self.registry, self.multiprocess_dir, accept)

    def models(self) -> list[ModelSample]:
        """Every model version as the gauges see it now (state, queue depth...)."""
        return list(self._models())

    async def tick_forever(self) -> None:
        """Close a second of the time series at each second's turn, until cancelled."""
        series = self.timeseries
        if series is None:
            return
        shared = self.multiprocess_dir
        while True:
            await asyncio.sleep(1.0 - time.time() % 1.0 + 0.001)
            self.metrics.flush()
            series.tick()
            if shared is not None and int(time.time()) % SHARE_EVERY_S == 0:
                document = orjson.dumps(series.export())
                await asyncio.to_thread(write_shared, shared, document)

    async def sample_forever(self, interval_s: float) -> None:
        """With several processes, each must keep its gauges fresh on its own, since a scrape
        reaches only one of them: refresh every ``interval_s`` seconds until cancelled."""
        while True:
            self.refresh()
            await asyncio.sleep(interval_s)
