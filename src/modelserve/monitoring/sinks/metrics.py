"""The payload sinks' Prometheus metrics, on the injected registry.

- ``modelserve_payload_events_total{model,sink,outcome}``: events a sink delivered (``sent``),
  refused because its queue was full (``dropped``), or gave up on after its retries and wrote
  to its dead-letter file (``failed``). Every event routed to a sink ends in exactly one of them
  (or is still queued: ``modelserve_payload_queue_events``).
- ``modelserve_payload_queue_events{sink}``: events waiting for the sink.
- ``modelserve_payload_delivery_seconds{sink}``: how long delivering one batch took, from its
  first attempt to its success (retries included).

Drops happen on the hot path, where they are plain integers on the subscription
(monitoring/events.py); ``flush`` moves them here before each scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DELIVERY_BUCKETS", "PayloadMetrics"]

DELIVERY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip

SENT, DROPPED, FAILED = "sent", "dropped", "failed"


class PayloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "modelserve_payload_events",
            "Inference events per payload sink by outcome: sent, dropped (its queue was full) "
            "or failed (undeliverable after the retries; written to the dead-letter file).",
            ("model", "sink", "outcome"),
            registry=registry,
        )
        self.queue = Gauge(
            "modelserve_payload_queue_events",
            "Inference events waiting for a payload sink.",
            ("sink",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.delivery = Histogram(
            "modelserve_payload_delivery_seconds",
            "Time to deliver one batch of events to a payload sink, retries included.",
            ("sink",),
            registry=registry,
            buckets=DELIVERY_BUCKETS,
        )

    def count(self, model: str, sink: str, outcome: str, amount: int) -> None:
        if amount:
            self.events.labels(model, sink, outcome).inc(amount)

    def forget(self, sink: str) -> None:
        """A sink that stopped: its queue gauge goes (its counters stay, they are cumulative)."""
        self.queue.labels(sink).set(0)
        self.queue.remove(sink)
