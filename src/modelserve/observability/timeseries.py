"""``TimeSeries``: the dashboard's in-process ring buffer of per-second aggregates.

Per model version it keeps the last 15 minutes at 1 second and the last 24 hours at 1 minute:
requests, errors, the latency histogram (the Prometheus buckets, so quantiles come out the way
``histogram_quantile`` computes them) and the executed batches (count and rows).

Fed off the hot path: nothing here runs per request. The hot path already counts every request
in plain integers (``metrics.Series``: outcomes and histogram accumulators), which
``InferenceMetrics.flush`` moves into prometheus_client before each scrape; the time series is
a tap on that flush (it reads each series' counts just before they are moved), and ``tick``
flushes once a second. A scrape in between flushes too, and its counts go to the second in
progress, so nothing is counted twice or lost.

Points are kept as histograms, not quantiles, so points of several worker processes add up
exactly (``imported``): each worker writes its window to the shared directory
(``write_shared``).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelserve.observability.metrics import LATENCY_BOUNDS_NS, SUCCESS, Series

__all__ = [
    "MINUTE_POINTS",
    "SECOND_POINTS",
    "SHARED_PREFIX",
    "Point",
    "TimeSeries",
    "VersionWindow",
    "merge_points",
    "quantile",
    "write_shared",
]

SECOND_POINTS = 15 * 60
"""Points at 1 s: 15 minutes."""
MINUTE_POINTS = 24 * 60
"""Points at 1 min: 24 hours."""
BUCKETS = len(LATENCY_BOUNDS_NS) + 1
SHARED_PREFIX = "timeseries."
"""With several workers, each writes ``timeseries.<pid>.json`` in the metrics directory."""


@dataclass(slots=True)
class Point:
    """What one model version did in one interval starting at ``t`` (seconds since the epoch)."""

    t: int
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    """Requests per latency bucket (LATENCY_BOUNDS_NS, then +Inf)."""
    batches: int = 0
    batch_rows: int = 0

    def add(self, other: Point) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.batches += other.batches
        self.batch_rows += other.batch_rows
        mine = self.latency
        for index, count in enumerate(other.latency):
            mine[index] += count

    def figures(self, seconds: int) -> dict[str, Any]:
        """The point as the JSON API shows it (``seconds``: the interval's length)."""
        return {
            "t": self.t,
            "requests_per_s": round(self.requests / seconds, 3),
            "errors_per_s": round(self.errors / seconds, 3),
            "p50_ms": _ms(quantile(self.latency, 0.50)),
            "p95_ms": _ms(quantile(self.latency, 0.95)),
            "p99_ms": _ms(quantile(self.latency, 0.99)),
            "batch_size": round(self.batch_rows / self.batches, 2) if self.batches else None,
        }

    def raw(self) -> list[Any]:
        """A compact form for the shared files: [t, requests, errors, batches, rows, buckets]."""
        return [self.t, self.requests, self.errors, self.batches, self.batch_rows, self.latency]

    @classmethod
    def from_raw(cls, raw: list[Any]) -> Point:
        t, requests, errors, batches, rows, latency = raw
        buckets = [int(c) for c in latency][:BUCKETS]
        buckets += [0] * (BUCKETS - len(buckets))
        return cls(int(t), int(requests), int(errors), buckets, int(batches), int(rows))


def _ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def quantile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile (ns) of a bucketed distribution, interpolated linearly inside its
    bucket as Prometheus does; the +Inf bucket answers the largest bound. None when empty."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(LATENCY_BOUNDS_NS):
                return float(LATENCY_BOUNDS_NS[-1])
            low = LATENCY_BOUNDS_NS[index - 1] if index else 0
            high = LATENCY_BOUNDS_NS[index]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_NS[-1])


class VersionWindow:
    """One model version's two rings and the point in progress."""

    __slots__ = ("current", "minute", "minutes", "seconds")

    def __init__(self, now: int) -> None:
        self.current = Point(now)
        self.seconds: deque[Point] = deque(maxlen=SECOND_POINTS)
        self.minute = Point(now - now % 60)
        self.minutes: deque[Point] = deque(maxlen=MINUTE_POINTS)

    def close(self, now: int) -> None:
        """End the second in progress (and its minute, when it was the first of a new one);
        ``now`` starts the next."""
        done = self.current
        self.seconds.append(done)
        self.current = Point(now)
        minute_start = done.t - done.t % 60
        if minute_start != self.minute.t:
            self.minutes.append(self.minute)
            self.minute = Point(minute_start)
        self.minute.add(done)

    def total(self, seconds: int) -> Point:
        """The last ``seconds`` closed seconds added up."""
        total = Point(0)
        for point in list(self.seconds)[-seconds:]:
            total.add(point)
        return total


class TimeSeries:
    """Every model version's window; ``tap`` is given to ``InferenceMetrics.taps``."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], VersionWindow] = {}
        self.started = int(clock())

    def _window(self, key: tuple[str, str]) -> VersionWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = VersionWindow(int(self._clock()))
        return window

    def tap(self, key: tuple[str, str], series: Series) -> None:
        """Called by ``InferenceMetrics.flush`` for each series before its counts are moved."""
        outcomes = series.outcomes
        latency = series.latency.counts
        batch = series.batch
        if not outcomes and not any(batch.counts):
            return
        point = self._window(key).current
        requests = sum(outcomes.values())
        point.requests += requests
        point.errors += requests - outcomes.get(SUCCESS, 0)
        buckets = point.latency
        for index, count in enumerate(latency):
            buckets[index] += count
        point.batches += sum(batch.counts)
        point.batch_rows += batch.total

    def tick(self) -> None:
        """Close the second in progress of every version (called once a second, after a flush)."""
        now = int(self._clock())
        for window in self._windows.values():
            if window.current.t < now:
                window.close(now)

    def versions(self) -> list[tuple[str, str]]:
        return sorted(self._windows)

    def window(self, name: str, version: str) -> VersionWindow | None:
        return self._windows.get((name, version))

    def export(self) -> dict[str, Any]:
        """The closed points of every version, compact (what a worker shares)."""
        return {
            f"{name}\n{version}": {
                "s": [p.raw() for p in window.seconds],
                "m": [p.raw() for p in (*window.minutes, window.minute)],
            }
            for (name, version), window in self._windows.items()
        }


def write_shared(directory: str, document: bytes) -> None:
    """Write a worker's ``export`` (as JSON bytes, made on the loop) to
    ``<directory>/timeseries.<pid>.json`` atomically; whoever answers the dashboard adds the
    workers' files up (``imported``)."""
    target = os.path.join(directory, f"{SHARED_PREFIX}{os.getpid()}.json")
    temporary = target + ".tmp"
    with open(temporary, "wb") as file:
        file.write(document)
    os.replace(temporary, target)


def merge_points(sources: Iterable[Iterable[Point]]) -> list[Point]:
    """Points of several processes added up by timestamp, in time order."""
    merged: dict[int, Point] = {}
    for points in sources:
        for point in points:
            into = merged.get(point.t)
            if into is None:
                merged[point.t] = into = Point(point.t)
            into.add(point)
    return [merged[t] for t in sorted(merged)]


def imported(
    documents: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, list[Point]]]:
    """Several workers' ``export`` documents merged: (name, version) -> {"s": [...], "m": [...]}."""
    per_key: dict[tuple[str, str], dict[str, list[list[Point]]]] = {}
    for document in documents:
        for joined, rings in document.items():
            name, _, version = joined.partition("\n")
            entry = per_key.setdefault((name, version), {"s": [], "m": []})
            for ring in ("s", "m"):
                entry[ring].append([Point.from_raw(raw) for raw in rings.get(ring, [])])
    return {
        key: {ring: merge_points(lists) for ring, lists in entry.items()}
        for key, entry in per_key.items()
    }
