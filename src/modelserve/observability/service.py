"""The running parts of observability, built from Settings by the composition root: the metrics
listener of ``--metrics-port``, the gauge sampler (several worker processes only) and the trace
exporter, started after the HTTP port and stopped last (so that the final spans go out).

Multiprocess mode is the ``metrics_dir`` setting (else ``PROMETHEUS_MULTIPROC_DIR``).
prometheus_client decides at its first import whether values go to that directory, from the
environment variable, so ``modelserve serve`` exports the setting before it imports anything
that imports prometheus_client; a program that builds a Server itself must do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from prometheus_client import CollectorRegistry

from modelserve.config.settings import Settings
from modelserve.observability.exposition import MetricsListener
from modelserve.observability.hub import Observability
from modelserve.observability.tracing import make_tracing

__all__ = ["MULTIPROC_ENV", "SAMPLE_INTERVAL_S", "ObservabilityService"]

log = logging.getLogger("modelserve.observability")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_INTERVAL_S = 2.0
"""With several processes, how often each one writes its state gauges."""


class ObservabilityService:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self._settings = settings
        multiprocess_dir = (
            str(settings.metrics_dir) if settings.metrics_dir else os.environ.get(MULTIPROC_ENV)
        ) or None
        self.observability = Observability(
            registry if registry is not None else CollectorRegistry(),
            tracing=make_tracing(settings.otlp_endpoint, settings.server_name),
            access_log=settings.access_log,
            multiprocess_dir=multiprocess_dir,
            process_metrics=multiprocess_dir is None,
            timeseries=settings.ui,
        )
        self._listener: MetricsListener | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def metrics_port(self) -> int | None:
        """The port of the metrics listener (None without ``metrics_port``)."""
        return self._listener.port if self._listener is not None else None

    async def start(self) -> None:
        settings = self._settings
        if settings.metrics_port is not None:
            listener = MetricsListener(self.observability.exposition)
            await listener.start(settings.host, settings.metrics_port, settings.reuse_port)
            self._listener = listener
            log.info("metrics on http://%s:%d/metrics", settings.host, listener.port)
        if self.observability.multiprocess_dir is not None:
            self._sampler = asyncio.create_task(
                self.observability.sample_forever(SAMPLE_INTERVAL_S)
            )
        if self.observability.timeseries is not None:
            self._ticker = asyncio.create_task(self.observability.tick_forever())
        if settings.otlp_endpoint:
            log.info("exporting traces to %s", settings.otlp_endpoint)

    async def stop(self) -> None:
        self.observability.refresh()  # the last figures reach the multiprocess files
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        await asyncio.to_thread(self.observability.tracing.shutdown)
