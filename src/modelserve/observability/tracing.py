"""Tracing: off by default (``Tracing``, which does nothing and imports nothing); with an OTLP
endpoint, OpenTelemetry spans exported over OTLP/HTTP (``observability/otel.py``, imported only
then, so a server without tracing never loads opentelemetry).

Spans are made after the fact, when the request has been answered, from the timings the
dataplane noted on the RequestContext: one server span per inference request (its parent is
the caller's W3C ``traceparent`` when one came with the request) with two children, ``queue``
and ``compute``. Requests that are not inferences (health, metadata, metrics) are not traced.
"""

from __future__ import annotations

from modelserve.observability.context import RequestContext

__all__ = ["Tracing", "make_tracing", "tracing_available"]


class Tracing:
    """No tracing: every method is free."""

    enabled = False

    def export(self, ctx: RequestContext, status: int | str) -> None:
        """Record the spans of one finished inference request."""

    def shutdown(self) -> None:
        """Flush what is buffered and stop exporting (blocking; call it from a thread)."""


def make_tracing(otlp_endpoint: str | None, service_name: str = "modelserve") -> Tracing:
    """Tracing to ``otlp_endpoint`` (``http://collector:4318``; ``/v1/traces`` is added unless
    the URL already ends with it), or none. Needs the ``tracing`` extra."""
    if not otlp_endpoint:
        return Tracing()
    from modelserve.observability.otel import OtlpTracing

    return OtlpTracing(otlp_endpoint, service_name)


def tracing_available() -> bool:
    """Whether the ``tracing`` extra is installed (checked without importing it)."""
    import importlib.util

    try:
        return (
            importlib.util.find_spec("opentelemetry.sdk") is not None
            and importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
        )
    except ModuleNotFoundError:
        return False
