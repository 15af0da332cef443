"""The access log: one record per request on logger ``modelserve.access``, at INFO.

The record's message is a one-line summary for people (``POST /v2/models/m/infer 200 1.234ms``,
``/inference.GRPCInferenceService/ModelInfer OK 0.321ms``);
its ``fields`` attribute carries the same facts as data, which the JSON formatter writes as keys
of the line: time (from the formatter), request_id, transport, method, path (HTTP) or rpc
(gRPC), model, version, status, latency_ms, rows and batch_size (inference requests only).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from modelserve.observability.context import RequestContext

__all__ = ["ACCESS_LOGGER", "AccessLog"]

ACCESS_LOGGER = "modelserve.access"


class AccessLog:
    def __init__(self, enabled: bool, logger: logging.Logger | None = None) -> None:
        self.enabled = enabled
        self._log = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def write(self, ctx: RequestContext, status: int | str) -> None:
        """Log one finished request (when enabled and INFO is on for the access logger)."""
        if not self.enabled or not self._log.isEnabledFor(logging.INFO):
            return
        latency_ms = round((time.perf_counter_ns() - ctx.started_ns) / 1e6, 3)
        fields: dict[str, Any] = {
            "request_id": ctx.request_id,
            "transport": ctx.transport,
            "method": ctx.method,
            "path" if ctx.transport == "http" else "rpc": ctx.target,
            "status": status,
            "latency_ms": latency_ms,
        }
        if ctx.outcome:
            fields["model"] = ctx.model
            fields["version"] = ctx.version
            fields["outcome"] = ctx.outcome
            if ctx.rows:
                fields["rows"] = ctx.rows
            if ctx.batch_size:
                fields["batch_size"] = ctx.batch_size
        what = f"{ctx.method} {ctx.target}" if ctx.transport == "http" else ctx.target
        self._log.info(
            "%s %s %.3fms",
            what,
            status,
            latency_ms,
            extra={"fields": fields, "request_id": ctx.request_id},
        )
