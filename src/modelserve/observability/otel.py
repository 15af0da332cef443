"""OpenTelemetry tracing over OTLP/HTTP (protobuf). Imported only when an OTLP endpoint is set
(``tracing.make_tracing``); needs the ``tracing`` extra.

The tracer provider is this server's own, never OpenTelemetry's global one. Sampling follows
the standard ``OTEL_TRACES_SAMPLER`` variables (default: parent-based, always on); spans go out
in batches from the SDK's background thread.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelserve.observability.context import RequestContext
from modelserve.observability.tracing import Tracing

__all__ = ["OtlpTracing", "traces_url"]

TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


class OtlpTracing(Tracing):
    enabled = True

    def __init__(
        self, endpoint: str, service_name: str, exporter: SpanExporter | None = None
    ) -> None:
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=traces_url(endpoint)))
        )
        self._tracer = self._provider.get_tracer("modelserve")
        self._propagator = TraceContextTextMapPropagator()

    def export(self, ctx: RequestContext, status: int | str) -> None:
        if not ctx.outcome:
            return  # not an inference request
        carrier = {}
        if ctx.traceparent:
            carrier["traceparent"] = ctx.traceparent
            if ctx.tracestate:
                carrier["tracestate"] = ctx.tracestate
        parent = self._propagator.extract(carrier) if carrier else None
        offset = ctx.started_wall_ns - ctx.started_ns  # perf_counter_ns -> epoch ns
        name = f"{ctx.method} {ctx.target}" if ctx.transport == "http" else ctx.target
        span = self._tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            start_time=ctx.started_wall_ns,
            attributes={
                "modelserve.request_id": ctx.request_id,
                "modelserve.serving.model": ctx.model,
                "modelserve.model_version": ctx.version,
                "modelserve.outcome": ctx.outcome,
                "modelserve.transport": ctx.transport,
                "modelserve.status": str(status),
            },
        )
        if ctx.outcome != "success":
            span.set_status(Status(StatusCode.ERROR, ctx.outcome))
        elif ctx.submitted_ns:
            inside = trace.set_span_in_context(span)
            queued = ctx.submitted_ns + offset
            started = queued + ctx.queue_ns
            self._tracer.start_span(
                "queue", context=inside, start_time=queued, attributes={"modelserve.rows": ctx.rows}
            ).end(end_time=started)
            self._tracer.start_span(
                "compute",
                context=inside,
                start_time=started,
                attributes={"modelserve.batch_size": ctx.batch_size},
            ).end(end_time=started + ctx.compute_ns)
        span.end()

    def shutdown(self) -> None:
        self._provider.shutdown()
