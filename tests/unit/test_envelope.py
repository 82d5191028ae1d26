"""CloudEvents attributes as Kafka headers (binary mode), with Parley's tenantid extension."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from parley_events import CloudEventAttributes, MissingCloudEventHeader

pytestmark = pytest.mark.unit

AT = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)


def attributes(**overrides: object) -> CloudEventAttributes:
    fields: dict[str, object] = {
        "id": "cev_123",
        "source": "/parley/routing",
        "type": "parley.conversation.created.v1",
        "time": AT,
        "subject": "conv_1",
        "tenantid": "ten_acme",
    }
    fields.update(overrides)
    return CloudEventAttributes(**fields)  # type: ignore[arg-type]


def test_headers_carry_every_attribute_under_its_ce_name() -> None:
    headers = attributes().to_headers()

    assert headers["ce_id"] == "cev_123"
    assert headers["ce_source"] == "/parley/routing"
    assert headers["ce_type"] == "parley.conversation.created.v1"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_subject"] == "conv_1"
    assert headers["content-type"] == "application/json"


def test_the_tenant_travels_as_the_ce_tenantid_extension() -> None:
    assert attributes(tenantid="ten_acme").to_headers()["ce_tenantid"] == "ten_acme"


def test_optional_attributes_are_left_out_when_unset() -> None:
    headers = attributes(subject=None, tenantid=None).to_headers()
    assert "ce_subject" not in headers
    assert "ce_tenantid" not in headers


def test_ce_time_is_utc_and_ends_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    headers = attributes(time=datetime(2024, 5, 1, 14, 30, tzinfo=plus_two)).to_headers()

    assert headers["ce_time"].endswith("Z")
    assert "+" not in headers["ce_time"]
    assert datetime.fromisoformat(headers["ce_time"]) == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_headers_round_trip() -> None:
    original = attributes()
    assert CloudEventAttributes.from_headers(original.to_headers()) == original


def test_headers_round_trip_without_optional_attributes() -> None:
    original = attributes(subject=None, tenantid=None)
    assert CloudEventAttributes.from_headers(original.to_headers()) == original


def test_headers_round_trip_from_kafka_style_bytes_pairs() -> None:
    original = attributes()
    pairs = [(k, v.encode()) for k, v in original.to_headers().items()]

    restored = CloudEventAttributes.from_headers(pairs)

    assert restored == original
    assert restored.tenantid == "ten_acme"
    assert restored.time == AT


def test_from_headers_ignores_headers_that_are_not_ce() -> None:
    headers = {**attributes().to_headers(), "traceparent": "00-abc-def-01", "x-other": "1"}
    assert CloudEventAttributes.from_headers(headers) == attributes()


@pytest.mark.parametrize("missing", ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time"])
def test_a_missing_required_header_is_reported_by_name(missing: str) -> None:
    headers = attributes().to_headers()
    del headers[missing]

    with pytest.raises(MissingCloudEventHeader, match=missing):
        CloudEventAttributes.from_headers(headers)


def test_missing_cloud_event_header_is_a_value_error() -> None:
    assert issubclass(MissingCloudEventHeader, ValueError)
