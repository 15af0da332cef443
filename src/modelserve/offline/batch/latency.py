"""Per-batch latencies as a log-bucketed histogram: fixed size whatever the job's length,
mergeable across shards and Dask workers, percentiles within 1 %."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LatencyHistogram"]

RATIO = 1.02
_LOG_RATIO = math.log(RATIO)


@dataclass(slots=True)
class LatencyHistogram:
    counts: dict[int, int] = field(default_factory=dict)
    """bucket -> batches; bucket b holds latencies in [RATIO**b, RATIO**(b+1)) nanoseconds."""

    @classmethod
    def of(cls, nanoseconds: Sequence[int]) -> LatencyHistogram:
        """A histogram of many durations at once (vectorised)."""
        histogram = cls()
        if len(nanoseconds):
            values = np.maximum(np.asarray(nanoseconds, dtype=np.float64), 1.0)
            buckets, counts = np.unique(
                (np.log(values) / _LOG_RATIO).astype(np.int64), return_counts=True
            )
            histogram.counts = dict(zip(buckets.tolist(), counts.tolist(), strict=True))
        return histogram

    def add(self, nanoseconds: int) -> None:
        bucket = int(math.log(max(nanoseconds, 1)) / _LOG_RATIO)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1

    def merge(self, other: LatencyHistogram) -> None:
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in milliseconds (the bucket's middle); None when
        empty."""
        total = self.total
        if total == 0:
            return None
        rank = max(1, math.ceil(total * q / 100))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return float(RATIO ** (bucket + 0.5) / 1e6)
        raise AssertionError("unreachable: rank <= total")
