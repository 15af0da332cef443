"""Triton's statistics extension on the wire: the REST JSON document and the gRPC
``ModelStatisticsResponse``, from the neutral snapshots (observability/stats.py). Counts and
nanoseconds are uint64 in both: JSON numbers, never strings (perf_analyzer reads them with
``GetUint64``)."""

from __future__ import annotations

from typing import Any

from modelserve.observability import Duration, ModelStatistics
from modelserve.transports._generated import grpc_service_pb2 as pb

__all__ = ["statistics_document", "statistics_response"]

_DURATIONS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)
_BATCH_DURATIONS = ("compute_input", "compute_infer", "compute_output")


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
                "inference_stats": {key: _duration(getattr(s, key)) for key in _DURATIONS},
                "batch_stats": [
                    {
                        "batch_size": b.batch_size,
                        **{key: _duration(getattr(b, key)) for key in _BATCH_DURATIONS},
                    }
                    for b in s.batch_stats
                ],
                "memory_usage": [],
            }
            for s in stats
        ]
    }


def _fill(target: Any, value: Duration) -> None:
    target.count = value.count
    target.ns = value.ns


def statistics_response(stats: list[ModelStatistics]) -> pb.ModelStatisticsResponse:
    """The ModelStatistics RPC."""
    response = pb.ModelStatisticsResponse()
    for s in stats:
        message = response.model_stats.add(
            name=s.name,
            version=s.version,
            last_inference=s.last_inference,
            inference_count=s.inference_count,
            execution_count=s.execution_count,
        )
        for key in _DURATIONS:
            _fill(getattr(message.inference_stats, key), getattr(s, key))
        for b in s.batch_stats:
            batch = message.batch_stats.add(batch_size=b.batch_size)
            for key in _BATCH_DURATIONS:
                _fill(getattr(batch, key), getattr(b, key))
    return response
