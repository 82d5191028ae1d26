"""Parley's own spans: real ones when the process exports spans, cheap non-recording hops when not."""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from parley_shared.tracing import span, span_from_headers, tracer_provider

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def traceparent() -> str:
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers["traceparent"]


def test_without_an_exporter_each_hop_has_its_own_span_id_in_the_callers_trace() -> None:
    provider = tracer_provider("test", None)
    with span_from_headers(provider, "webhook meta", {"traceparent": PARENT}):
        request = traceparent()
        with span(provider, "topic publish", trace.SpanKind.PRODUCER):
            published = traceparent()
            assert not trace.get_current_span().is_recording()
        assert traceparent() == request  # the publish's span ended with its block
    _, trace_id, request_span, flags = request.split("-")
    _, published_trace, published_span, _ = published.split("-")
    assert trace_id == published_trace == PARENT.split("-")[1]
    assert len({request_span, published_span, PARENT.split("-")[2]}) == 3
    assert flags == "01"


def test_without_a_callers_trace_a_new_one_starts() -> None:
    provider = tracer_provider("test", None)
    with span_from_headers(provider, "webhook meta", {}):
        first = traceparent()
    with span_from_headers(provider, "webhook meta", {}):
        second = traceparent()
    assert first.split("-")[1] != second.split("-")[1]
    assert int(first.split("-")[1], 16) != 0


def test_a_provider_with_its_own_exporter_records_real_spans() -> None:
    # a provider made elsewhere than tracer_provider (a test's, with its own exporter) gets the
    # SDK's spans, as an exporting process does
    exported = InMemorySpanExporter()
    other = TracerProvider()
    other.add_span_processor(SimpleSpanProcessor(exported))
    attributes = {"messaging.system": "kafka"}
    with (
        span_from_headers(other, "webhook meta", {"traceparent": PARENT}),
        span(other, "topic publish", trace.SpanKind.PRODUCER, attributes=attributes),
    ):
        pass
    names = [s.name for s in exported.get_finished_spans()]
    assert names == ["topic publish", "webhook meta"]
    publish = exported.get_finished_spans()[0]
    assert publish.kind is trace.SpanKind.PRODUCER
    assert publish.attributes is not None and publish.attributes["messaging.system"] == "kafka"
