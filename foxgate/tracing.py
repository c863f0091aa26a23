"""Traces through OpenTelemetry: one trace per task, from its admission in a web process through each upstream
attempt in the worker cluster to its settlement, continuing the caller's `traceparent` when it sends one.

Configured by the standard environment variables and off unless an OTLP endpoint is named
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; OTEL_SDK_DISABLED=true turns it off
again): spans then go over OTLP/HTTP (protobuf) in batches, named by OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES, with the exporter's own OTEL_EXPORTER_OTLP_* settings (headers, timeout,
certificate). Off, every span is the API's no-op, and no trace context is stored.

The trace crosses from the web process to the worker on the task row: admission stores its span's
`traceparent` (W3C Trace Context), and the worker's spans continue it."""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

PROPAGATOR = TraceContextTextMapPropagator()
_tracer: Tracer = trace.NoOpTracer()
_enabled = False


def tracing_start() -> "TracerProvider | None":
    """Export spans if the environment asks for it (at each process's start); the provider, if so."""
    asked = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if not asked or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "foxgate")})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracing_use(provider)
    return provider


def tracing_use(provider: trace.TracerProvider | None) -> None:
    """Trace with `provider` from now on (None: not at all)."""
    global _tracer, _enabled
    _tracer = trace.NoOpTracer() if provider is None else provider.get_tracer("foxgate")
    _enabled = provider is not None


def remote_parent(headers: Mapping[str, str]) -> Context | None:
    """The caller's trace context, from its `traceparent` (and `tracestate`) header."""
    if not _enabled or "traceparent" not in headers:
        return None
    return PROPAGATOR.extract(
        {"traceparent": headers["traceparent"], "tracestate": headers.get("tracestate", "")}
    )


def stored_parent(traceparent: str) -> Context | None:
    """The trace context a task's row carries (its admission span)."""
    return PROPAGATOR.extract({"traceparent": traceparent}) if _enabled and traceparent else None


def traceparent_of(span: Span) -> str:
    """The `traceparent` naming `span`, for a task's row; empty when not tracing."""
    if not _enabled or not span.get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


@contextmanager
def span(
    name: str, *, parent: Span | Context | None = None, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any
) -> Iterator[Span]:
    """A span, child of `parent` (a span, or a context from remote_parent or stored_parent), ended on exit
    and marked as an error if an exception left it. Attributes are named foxgate.<name>."""
    context = trace.set_span_in_context(parent) if isinstance(parent, Span) else parent
    attrs = {f"foxgate.{key}": value for key, value in attributes.items() if value is not None}
    with _tracer.start_as_current_span(name, context=context, kind=kind, attributes=attrs) as current:
        yield current
