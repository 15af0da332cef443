"""Triton's statistics extension: the REST JSON document, from the neutral snapshots
(observability/stats.py); the gRPC ``ModelStatisticsResponse`` is built from the same field
lists in grpc/codec.py. Counts and nanoseconds are uint64 in both: JSON numbers, never strings
(perf_analyzer reads them with ``GetUint64``)."""

from __future__ import annotations

from typing import Any

from modelserve.observability import Duration, ModelStatistics

__all__ = ["BATCH_DURATIONS", "DURATIONS", "statistics_document"]

DURATIONS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)
BATCH_DURATIONS = ("compute_input", "compute_infer", "compute_output")


def _duration(value: Duration) -> dict[str, int]:
    return {"count": value.count, "ns": value.ns}


def statistics_document(stats: list[ModelStatistics]) -> dict[str, Any]:
    """``GET /v2/models[/m[/versions/v]]/stats``."""
    return {
        "model_stats": [
            {
                "name": s.name,
                "version": s.version,
                "last_inference": s.last_inference,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {key: _duration(getattr(s, key)) for key in DURATIONS},
                "batch_stats": [
                    {
                        "batch_size": b.batch_size,
                        **{key: _duration(getattr(b, key)) for key in BATCH_DURATIONS},
                    }
                    for b in s.batch_stats
                ],
                "memory_usage": [],
            }
            for s in stats
        ]
    }
