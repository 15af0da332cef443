"""Payload logging: the running sinks for the ``logging:`` of the loaded models.

``apply`` is called with every loaded model's ``logging:`` (None: the server's default, the
``payload_logging`` setting) whenever models are loaded or unloaded. It works out which sinks
are wanted, starts the new ones, stops (after a flush) the ones no model uses any more, and
points each sink's bus subscription at the models that use it, with their sample rates. Models
that name the same target (the same file, URL, topic or stream) share one sink, so one file has
one writer and one target one client; when they configure it differently, the first model (by
name) wins and a warning says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelserve.config.payload import PayloadLoggingConfig, SinkConfig
from modelserve.monitoring.events import EventBus
from modelserve.monitoring.records import LogPolicy
from modelserve.monitoring.sinks.deadletter import DeadLetter, dead_letter_path
from modelserve.monitoring.sinks.delivery import SinkWorker
from modelserve.monitoring.sinks.metrics import DROPPED, FAILED, SENT, PayloadMetrics
from modelserve.monitoring.sinks.registry import SinkContext, make_sender, sink_key, sink_name

__all__ = ["RETIRE_TIMEOUT_S", "PayloadLogging"]

log = logging.getLogger("modelserve.monitoring.payloads")

MIB = 1024 * 1024
RETIRE_TIMEOUT_S = 30.0
"""Longest a sink no model uses any more gets to deliver what it holds."""


@dataclass
class _Wanted:
    config: SinkConfig
    rates: dict[str, float] = field(default_factory=dict)
    policies: dict[str, LogPolicy] = field(default_factory=dict)
    headers: set[str] = field(default_factory=set)


class PayloadLogging:
    def __init__(
        self,
        bus: EventBus,
        metrics: PayloadMetrics,
        context: SinkContext,
        default: PayloadLoggingConfig | None = None,
    ) -> None:
        self._bus = bus
        self._metrics = metrics
        self._context = context
        self._default = default
        self._sinks: dict[tuple[str, ...], SinkWorker] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._stopped = False

    @property
    def sinks(self) -> list[SinkWorker]:
        return list(self._sinks.values())

    def _wanted(
        self, models: Mapping[str, PayloadLoggingConfig | None]
    ) -> dict[tuple[str, ...], _Wanted]:
        wanted: dict[tuple[str, ...], _Wanted] = {}
        for model in sorted(models):
            config = models[model] or self._default
            if config is None or config.sample_rate == 0:
                continue
            policy = LogPolicy.from_config(config)
            for sink in config.sinks:
                key = sink_key(sink, self._context)
                entry = wanted.get(key)
                if entry is None:
                    entry = wanted[key] = _Wanted(sink)
                elif entry.config != sink:
                    log.warning(
                        "model %s configures payload sink %s differently from another model; "
                        "using the first one's settings",
                        model,
                        sink_name(sink),
                    )
                entry.rates[model] = config.sample_rate
                entry.policies[model] = policy
                entry.headers.update(policy.wanted_headers)
        return wanted

    async def apply(self, models: Mapping[str, PayloadLoggingConfig | None]) -> None:
        """Make the running sinks match the models' logging configuration."""
        async with self._lock:
            if self._stopped:
                return
            wanted = self._wanted(models)
            for key in list(self._sinks):
                worker = self._sinks[key]
                if key not in wanted or wanted[key].config != worker.config:
                    del self._sinks[key]
                    self._retire(worker)
            for key, entry in wanted.items():
                running = self._sinks.get(key) or self._start(key, entry)
                if running is None:
                    continue
                worker = running
                worker.policies = dict(entry.policies)
                self._bus.update(worker.subscription, entry.rates, entry.headers)

    def _start(self, key: tuple[str, ...], entry: _Wanted) -> SinkWorker | None:
        config = entry.config
        name = sink_name(config)
        try:
            sender = make_sender(config, self._context)
        except Exception as exc:  # e.g. a client library that fails to import
            log.error("payload sink %s cannot start: %s", name, exc)
            return None
        subscription = self._bus.subscribe(
            name,
            models=entry.rates,
            max_events=config.max_queue_events,
            max_bytes=int(config.max_queue_mb * MIB),
            headers=entry.headers,
        )
        dead_letter = DeadLetter(
            dead_letter_path(self._context.log_dir, name, self._context.tag), name
        )
        worker = SinkWorker(
            name, sender, subscription, config, entry.policies, self._metrics, dead_letter
        )
        worker.start()
        self._sinks[key] = worker
        log.info("payload sink %s started for %s", name, ", ".join(sorted(entry.rates)))
        return worker

    def _retire(self, worker: SinkWorker) -> None:
        """Stop routing events to ``worker`` and let it finish in the background."""
        self._bus.unsubscribe(worker.subscription)
        task = asyncio.create_task(worker.stop(time.monotonic() + RETIRE_TIMEOUT_S))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        task.add_done_callback(lambda _: self._metrics.forget(worker.name))
        log.info("payload sink %s stopping: no model uses it any more", worker.name)

    def report(self) -> list[dict[str, Any]]:
        """Per sink: its name, events waiting (queued and in delivery) and the events sent,
        dropped and failed so far by this process (the dashboard)."""
        self.refresh()
        totals: dict[tuple[str, str], float] = {}
        for metric in self._metrics.events.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["sink"], sample.labels["outcome"])
                    totals[key] = totals.get(key, 0.0) + sample.value
        rows = []
        for worker in self._sinks.values():
            rows.append(
                {
                    "sink": worker.name,
                    "queue": worker.subscription.depth + worker.in_delivery,
                    **{
                        outcome: int(totals.get((worker.name, outcome), 0))
                        for outcome in (SENT, DROPPED, FAILED)
                    },
                }
            )
        return rows

    def refresh(self) -> None:
        """Drop counters and queue gauges into the metrics (before each scrape)."""
        for worker in self._sinks.values():
            worker.flush_drops()

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM: every sink delivers what it holds within ``timeout_s``; what is left goes to
        the dead-letter files."""
        async with self._lock:
            self._stopped = True
            deadline = time.monotonic() + timeout_s
            workers = list(self._sinks.values())
            for worker in workers:
                self._bus.unsubscribe(worker.subscription)
            await asyncio.gather(*(worker.stop(deadline) for worker in workers))
            if self._retiring:
                await asyncio.gather(*self._retiring, return_exceptions=True)
