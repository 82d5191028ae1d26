"""OpenTelemetry tracing: one trace from the webhook request through every consumer.

Trace context travels in Kafka headers (W3C ``traceparent``), injected on publish and extracted
on consume by FastStream's telemetry middleware (for batch subscribers, which FastStream gives
a trace of their own linked to each record's, :func:`record_traces` and :func:`trace_of` carry
each record's trace on to what is published because of it); ingest starts the trace from the webhook
request's own ``traceparent`` when the provider or a proxy sends one. Spans are exported over
OTLP/HTTP only when ``PARLEY_OTLP_ENDPOINT`` is set; otherwise FastStream's are created and
dropped, and Parley's own (:func:`span`) are non-recording ones with fresh ids, so each hop still
has its own span id in the headers.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator


def tracer_provider(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """A provider for this process (not installed globally: each app owns its own)."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"parley-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    _SPANS[provider] = _Spans(provider.get_tracer("parley"), exporting=bool(otlp_endpoint))
    return provider


@dataclass(frozen=True, slots=True)
class _Spans:
    tracer: trace.Tracer
    exporting: bool


_SPANS: weakref.WeakKeyDictionary[TracerProvider, _Spans] = weakref.WeakKeyDictionary()
_IDS = RandomIdGenerator()


def span(
    provider: TracerProvider,
    name: str,
    kind: trace.SpanKind,
    *,
    context: otel_context.Context | None = None,
    attributes: Mapping[str, str] | None = None,
) -> AbstractContextManager[object]:
    """Make a span of Parley's own (a request, a published record) the current one.

    When the process exports spans it is a real one. When it does not (no ``PARLEY_OTLP_ENDPOINT``)
    it is a non-recording span with a fresh span id in the same trace: what is published under it
    still names its own hop in ``traceparent``, without the SDK's work for a span nobody reads
    (two thirds of each published record's tracing cost in routing's profile, issue #18).
    """
    spans = _SPANS.get(provider)
    if spans is None:  # a provider not made by tracer_provider: spans as the SDK makes them
        spans = _SPANS[provider] = _Spans(provider.get_tracer("parley"), exporting=True)
    if spans.exporting:
        return spans.tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes)
    return _hop(context)


@contextmanager
def _hop(context: otel_context.Context | None) -> Iterator[object]:
    parent = trace.get_current_span(context).get_span_context()
    if parent.is_valid:
        ids = trace.SpanContext(parent.trace_id, _IDS.generate_span_id(), False, parent.trace_flags)
    else:
        ids = trace.SpanContext(
            _IDS.generate_trace_id(),
            _IDS.generate_span_id(),
            False,
            trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    hop = trace.NonRecordingSpan(ids)
    token = otel_context.attach(trace.set_span_in_context(hop, context))
    try:
        yield hop
    finally:
        otel_context.detach(token)


@contextmanager
def span_from_headers(provider: TracerProvider, name: str, headers: Mapping[str, str]) -> Iterator[None]:
    """A server span continuing the trace named in incoming HTTP headers (or a new trace)."""
    with span(provider, name, trace.SpanKind.SERVER, context=propagate.extract(headers)):
        yield


_RECORD_TRACES: ContextVar[dict[str, otel_context.Context] | None] = ContextVar("record_traces", default=None)


def _text_headers(record: Any) -> dict[str, str]:
    return {
        k: v.decode(errors="replace") if isinstance(v, bytes) else str(v) for k, v in record.headers or ()
    }


@contextmanager
def trace_of_record(record: Any) -> Iterator[None]:
    """Make the trace a consumed record carries (its ``traceparent``) the current one, so what is
    published while handling it joins that trace (a batch subscriber's own span does not)."""
    headers = _text_headers(record)
    if "traceparent" not in headers:
        yield
        return
    token = otel_context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def record_traces(records: Iterable[Any]) -> Iterator[None]:
    """Remember the trace context of each consumed record by its key (the latest record wins)."""
    traces: dict[str, otel_context.Context] = {}
    for record in records:
        headers = _text_headers(record)
        if "traceparent" in headers and record.key is not None:
            key = record.key.decode(errors="replace") if isinstance(record.key, bytes) else str(record.key)
            traces[key] = propagate.extract(headers)
    token = _RECORD_TRACES.set(traces)
    try:
        yield
    finally:
        _RECORD_TRACES.reset(token)


@contextmanager
def trace_of(key: str) -> Iterator[None]:
    """Within :func:`record_traces`: make the trace of the record with this key the current one."""
    traces = _RECORD_TRACES.get()
    found = traces.get(key) if traces else None
    if found is None:
        yield
        return
    token = otel_context.attach(found)
    try:
        yield
    finally:
        otel_context.detach(token)
