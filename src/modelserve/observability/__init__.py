"""Observability: Prometheus metrics, Triton statistics, structured logs, access log, tracing.

Everything here is built by the composition root (server.py, cli.py) and passed down; nothing
registers itself anywhere global. See docs/metrics.md and docs/observability.md.
"""

from modelserve.observability.connections import ConnectionCounter
from modelserve.observability.context import RequestContext, current_request_id
from modelserve.observability.hub import BatchTiming, Observability
from modelserve.observability.metrics import ModelSample
from modelserve.observability.stats import BatchStatistics, Duration, ModelStatistics
from modelserve.observability.tracing import Tracing, make_tracing

__all__ = [
    "BatchStatistics",
    "BatchTiming",
    "ConnectionCounter",
    "Duration",
    "ModelSample",
    "ModelStatistics",
    "Observability",
    "RequestContext",
    "Tracing",
    "current_request_id",
    "make_tracing",
]
