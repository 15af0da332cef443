"""Histogram accumulation off the hot path, flushed into prometheus_client histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from modelserve.observability.accumulate import Accumulator
from tests.unit.observability.metric_samples import samples_of


def test_accumulator_flushes_into_a_prometheus_histogram() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("h", "h", ["m"], registry=registry, buckets=(1.0, 2.0, 5.0))
    accumulator = Accumulator((1, 2, 5))
    for value in (0, 1, 2, 3, 7, 7):
        accumulator.observe(value)
    accumulator.flush(lambda: histogram.labels("x"), 0.5)
    accumulator.flush(lambda: histogram.labels("never"))  # nothing new: no child made
    values = samples_of(generate_latest(registry).decode())
    bucket = {le: values[("h_bucket", (("le", le), ("m", "x")))] for le in ("1.0", "2.0", "5.0")}
    assert bucket == {"1.0": 2, "2.0": 3, "5.0": 4}
    assert values[("h_bucket", (("le", "+Inf"), ("m", "x")))] == 6
    assert values[("h_count", (("m", "x"),))] == 6
    assert values[("h_sum", (("m", "x"),))] == 10.0
    assert not any("never" in str(key) for key in values)
