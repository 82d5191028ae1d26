"""OpenTelemetry tracing: one trace from the webhook request through every consumer.

Trace context travels in Kafka headers (W3C ``traceparent``), injected on publish and extracted
on consume by FastStream's telemetry middleware; ingest starts the trace from the webhook
request's own ``traceparent`` when the provider or a proxy sends one. Spans are exported over
OTLP/HTTP only when ``PARLEY_OTLP_ENDPOINT`` is set; otherwise they are created (so the context
propagates) and dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracer_provider(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """A provider for this process (not installed globally: each app owns its own)."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"parley-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    return provider


@contextmanager
def span_from_headers(provider: TracerProvider, name: str, headers: Mapping[str, str]) -> Iterator[None]:
    """A server span continuing the trace named in incoming HTTP headers (or a new trace)."""
    context = propagate.extract(dict(headers))
    tracer = provider.get_tracer("parley")
    with tracer.start_as_current_span(name, context=context, kind=trace.SpanKind.SERVER):
        yield
