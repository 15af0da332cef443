"""The dashboard's ring buffer: fed by the metrics' flush, closed each second, merged across
workers exactly (histograms, not quantiles)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from modelserve.errors import ErrorCode
from modelserve.observability.metrics import InferenceMetrics
from modelserve.observability.timeseries import (
    MINUTE_POINTS,
    SECOND_POINTS,
    Point,
    TimeSeries,
    imported,
    quantile,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fed(clock: Clock) -> tuple[InferenceMetrics, TimeSeries]:
    metrics = InferenceMetrics(CollectorRegistry())
    series = TimeSeries(clock)
    metrics.taps.append(series.tap)
    return metrics, series


def test_each_count_reaches_the_second_it_happened_in_once() -> None:
    clock = Clock(1_000_000.2)
    metrics, series = fed(clock)
    one = metrics.series("m", "1")
    for _ in range(3):
        one.succeeded(2_000_000, 0, 1_000_000)  # 2 ms
    one.executed(3)
    metrics.failed("m", "1", ErrorCode.INVALID_ARGUMENT, 400_000_000)
    metrics.flush()  # a scrape in the middle of the second: still counted once
    one.succeeded(2_000_000, 0, 1_000_000)
    clock.now = 1_000_001.0
    metrics.flush()
    series.tick()
    metrics.flush()  # nothing new
    clock.now = 1_000_002.0
    series.tick()
    window = series.window("m", "1")
    assert window is not None
    first, second = window.seconds
    assert (first.t, first.requests, first.errors, first.batches, first.batch_rows) == (
        1_000_000,
        5,
        1,
        1,
        3,
    )
    assert (second.t, second.requests) == (1_000_001, 0)
    figures = first.figures(1)
    assert figures["requests_per_s"] == 5 and figures["errors_per_s"] == 1
    assert 1.0 < figures["p50_ms"] <= 2.5  # the 1-2.5 ms bucket
    assert 250 < figures["p99_ms"] <= 500  # the failed one's 400 ms
    assert figures["batch_size"] == 3


def test_the_rings_keep_15_minutes_of_seconds_and_24_hours_of_minutes() -> None:
    clock = Clock(0.0)
    metrics, series = fed(clock)
    for second in range(3 * SECOND_POINTS):
        metrics.series("m", "1").succeeded(1_000, 0, 1_000)
        clock.now = second + 1.0
        metrics.flush()
        series.tick()
    window = series.window("m", "1")
    assert window is not None
    assert len(window.seconds) == SECOND_POINTS
    assert window.seconds[-1].t == 3 * SECOND_POINTS - 1
    assert len(window.minutes) == 3 * SECOND_POINTS // 60 - 1  # the last minute is in progress
    assert all(point.requests == 60 for point in window.minutes)
    assert window.minutes.maxlen == MINUTE_POINTS


def test_quantiles_interpolate_inside_the_bucket_like_prometheus() -> None:
    buckets = [0] * 18
    assert quantile(buckets, 0.5) is None
    buckets[3] = 10  # (500 µs, 1 ms]
    assert quantile(buckets, 0.5) == 750_000
    buckets[-1] = 1000  # +Inf answers the largest bound
    assert quantile(buckets, 0.99) == 30e9


def test_workers_points_add_up_by_second() -> None:
    a, b = Point(5, 10, 1, [0] * 18, 2, 8), Point(5, 30, 0, [0] * 18, 1, 4)
    a.latency[2], b.latency[6] = 10, 30
    c = Point(6, 7)
    docs = [
        {"m\n1": {"s": [a.raw(), c.raw()], "m": []}},
        {"m\n1": {"s": [b.raw()], "m": []}},
    ]
    merged = imported(docs)[("m", "1")]["s"]
    assert [p.t for p in merged] == [5, 6]
    five = merged[0]
    assert (five.requests, five.errors, five.batches, five.batch_rows) == (40, 1, 3, 12)
    assert five.latency[2] == 10 and five.latency[6] == 30
    assert five.figures(1)["batch_size"] == 4.0
