"""Reading Prometheus text in the observability tests, and one known set of recorded requests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modelserve.errors import ErrorCode
from modelserve.observability import Observability
from modelserve.scheduling.batcher import Completed


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample_key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def record_requests(observability: Observability) -> None:
    done = Completed({}, batch_size=3, queue_ns=1_000, compute_ns=2_000_000, leads_batch=True)
    for _ in range(5):
        observability.infer_succeeded("m", "1", 3, done, 0, 10, 20, None)
    observability.infer_failed(("m", "1"), ("m", "1"), ErrorCode.INVALID_ARGUMENT, 0, None, True)
