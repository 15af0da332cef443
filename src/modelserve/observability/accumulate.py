"""Lock-free histogram accumulation for the hot path, flushed into prometheus_client histograms.

prometheus_client's ``Histogram.observe`` takes two locks per call (about 2 µs here), too much
for every request of a model that answers in 100 µs. Everything that records per-request
figures runs on the event loop, so an ``Accumulator`` counts with plain integers (one bisect and
two adds) and ``flush`` moves its counts into a prometheus_client histogram child before each
scrape. The flush adds to the child's per-bucket values and sum (``_buckets``, ``_sum``), which
prometheus_client keeps for every value class, multiprocess files included, so the figures add
up across worker processes like any other histogram's; tests/unit/test_observability.py guards
this use of its internals.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import Histogram

__all__ = ["Accumulator"]


class Accumulator:
    """Observations bucketed by ``bounds`` (ascending; the last bucket is +Inf)."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[int, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0

    def observe(self, value: int) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value

    def flush(self, child: Callable[[], Histogram], scale: float = 1.0) -> None:
        """Add what was observed since the last flush to ``child()`` (resolved only when
        there is something to add), its sum multiplied by ``scale``; start over."""
        counts = self.counts
        if not any(counts):
            return
        target = child()
        target._sum.inc(self.total * scale)
        for index, count in enumerate(counts):
            if count:
                target._buckets[index].inc(count)
        self.counts = [0] * len(counts)
        self.total = 0
