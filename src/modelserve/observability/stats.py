"""Triton's statistics extension: cumulative per-model-version counters and their snapshots.

Counters are plain integers bumped on the event loop after each inference; everything that
touches them runs on the loop, so there is no lock. Nothing here knows about HTTP, gRPC or
Prometheus: the transports encode the frozen snapshots (``ModelStatistics``).

Counting rules (see docs/metrics.md, "Triton statistics"):
- ``success`` / ``fail``: one per request; ``ns`` is the time the request spent in the dataplane
  (resolve, validate, queue, execute, build the answer).
- ``queue``, ``compute_input``, ``compute_infer``, ``compute_output``: one each per successful
  request, so their counts are always equal (perf_analyzer checks it). ``compute_input`` is the
  validation before the request is queued, ``compute_infer`` the execution of the batch the
  request ran in (concatenate, predict, split), ``compute_output`` building the answer's tensors.
- ``inference_count``: rows inferred (a request's batch size; 1 for a model without batching).
  ``execution_count``: batches executed. ``batch_stats``: one entry per executed batch size, its
  count being the executions of that size.
- ``last_inference``: milliseconds since the epoch of the latest request, success or failure.
- The response cache, as Triton counts it: a hit is a ``success`` and a ``queue`` entry (of
  0 ns), never a ``compute_*`` one, and adds nothing to ``inference_count``,
  ``execution_count`` or ``batch_stats``; ``cache_hit`` has the lookup time of hits,
  ``cache_miss`` the lookup and insertion time of misses (their requests run as usual).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["BatchStatistics", "Duration", "ModelStatistics", "StatsBook", "VersionStats"]


@dataclass(frozen=True, slots=True)
class Duration:
    count: int = 0
    ns: int = 0


ZERO = Duration()


@dataclass(frozen=True, slots=True)
class BatchStatistics:
    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


@dataclass(frozen=True, slots=True)
class ModelStatistics:
    """One model version's statistics, as Triton's ``ModelStatistics`` message."""

    name: str
    version: str
    last_inference: int
    """Milliseconds since the epoch; 0 before the first request."""
    inference_count: int
    execution_count: int
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    cache_hit: Duration = ZERO
    cache_miss: Duration = ZERO
    batch_stats: tuple[BatchStatistics, ...] = ()


class VersionStats:
    """The live counters of one model version."""

    __slots__ = (
        "_batches",
        "cache_hit_count",
        "cache_hit_ns",
        "cache_miss_count",
        "cache_miss_ns",
        "execution_count",
        "fail_count",
        "fail_ns",
        "infer_ns",
        "inference_count",
        "input_ns",
        "last_inference_ms",
        "output_ns",
        "queue_ns",
        "success_count",
        "success_ns",
    )

    def __init__(self) -> None:
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success_count = 0
        self.success_ns = 0
        self.fail_count = 0
        self.fail_ns = 0
        self.queue_ns = 0
        self.input_ns = 0
        self.infer_ns = 0
        self.output_ns = 0
        self.cache_hit_count = 0
        self.cache_hit_ns = 0
        self.cache_miss_count = 0
        self.cache_miss_ns = 0
        self._batches: dict[int, list[int]] = {}
        """batch size -> [executions, input ns, infer ns, output ns]"""

    def succeeded(
        self, rows: int, total_ns: int, queue_ns: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.inference_count += rows
        self.success_count += 1
        self.success_ns += total_ns
        self.queue_ns += queue_ns
        self.input_ns += input_ns
        self.infer_ns += infer_ns
        self.output_ns += output_ns

    def executed(self, batch_size: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One batch of ``batch_size`` rows ran (called once per execution)."""
        self.execution_count += 1
        entry = self._batches.get(batch_size)
        if entry is None:
            self._batches[batch_size] = [1, input_ns, infer_ns, output_ns]
        else:
            entry[0] += 1
            entry[1] += input_ns
            entry[2] += infer_ns
            entry[3] += output_ns

    def cache_hit(self, total_ns: int, lookup_ns: int) -> None:
        """A request answered from the response cache."""
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.success_count += 1
        self.success_ns += total_ns
        self.cache_hit_count += 1
        self.cache_hit_ns += lookup_ns

    def cache_miss(self, lookup_ns: int) -> None:
        """A request the cache did not have (it ran, and ``succeeded`` counts it too)."""
        self.cache_miss_count += 1
        self.cache_miss_ns += lookup_ns

    def failed(self, total_ns: int) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.fail_count += 1
        self.fail_ns += total_ns

    def snapshot(self, name: str, version: str) -> ModelStatistics:
        ok = self.success_count
        computed = ok - self.cache_hit_count
        batches = tuple(
            BatchStatistics(
                size,
                Duration(count, input_ns),
                Duration(count, infer_ns),
                Duration(count, output_ns),
            )
            for size, (count, input_ns, infer_ns, output_ns) in sorted(self._batches.items())
        )
        return ModelStatistics(
            name=name,
            version=version,
            last_inference=self.last_inference_ms,
            inference_count=self.inference_count,
            execution_count=self.execution_count,
            success=Duration(ok, self.success_ns),
            fail=Duration(self.fail_count, self.fail_ns),
            queue=Duration(ok, self.queue_ns),
            compute_input=Duration(computed, self.input_ns),
            compute_infer=Duration(computed, self.infer_ns),
            compute_output=Duration(computed, self.output_ns),
            cache_hit=Duration(self.cache_hit_count, self.cache_hit_ns),
            cache_miss=Duration(self.cache_miss_count, self.cache_miss_ns),
            batch_stats=batches,
        )


class StatsBook:
    """Every model version's counters, kept for the life of the process (a reloaded version
    goes on counting where it was)."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], VersionStats] = {}

    def version(self, name: str, version: str) -> VersionStats:
        key = (name, version)
        stats = self._versions.get(key)
        if stats is None:
            stats = self._versions[key] = VersionStats()
        return stats

    def snapshot(self, name: str, version: str) -> ModelStatistics:
        """Zeros for a version that has not served yet."""
        stats = self._versions.get((name, version))
        return (stats or VersionStats()).snapshot(name, version)
