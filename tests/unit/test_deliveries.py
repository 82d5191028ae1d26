"""What ingest archives about a delivery: its id, its partition key and the raw record."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from parley_ingest.domain.deliveries import archive_record, delivery_id, is_json_object, partition_key
from parley_providers.x.webhook import crc_response, is_crc_token, verify_x

pytestmark = pytest.mark.unit

BODY = b'{"object":"page","entry":[{"id":"104512345678901"}]}'


# --- delivery_id ------------------------------------------------------------------------


def test_the_same_bytes_give_the_same_delivery_id() -> None:
    assert delivery_id("meta", BODY) == delivery_id("meta", bytes(BODY))


def test_delivery_id_depends_on_the_provider() -> None:
    assert delivery_id("meta", BODY) != delivery_id("x", BODY)


def test_delivery_id_depends_on_every_byte_of_the_body() -> None:
    assert delivery_id("meta", BODY) != delivery_id("meta", BODY + b" ")


def test_delivery_id_keeps_provider_and_body_apart() -> None:
    # "meta" + b"x..." must not collide with "metax" + b"..."
    assert delivery_id("meta", b"xbody") != delivery_id("metax", b"body")


def test_delivery_id_is_a_sha256_hex_digest() -> None:
    did = delivery_id("meta", BODY)
    assert len(did) == 64
    assert int(did, 16) >= 0


# --- partition_key ----------------------------------------------------------------------


def test_partition_key_is_the_first_entry_id() -> None:
    payload = {"object": "page", "entry": [{"id": "111"}, {"id": "222"}]}
    assert partition_key(payload, "fallback") == "111"


def test_partition_key_accepts_a_numeric_entry_id() -> None:
    assert partition_key({"entry": [{"id": 104512345678901}]}, "fallback") == "104512345678901"


def test_partition_key_uses_for_user_id_for_x_deliveries() -> None:
    payload = {"for_user_id": "2244994945", "direct_message_events": []}
    assert partition_key(payload, "fallback") == "2244994945"


def test_partition_key_uses_the_filter_user_for_x_activity_api_deliveries() -> None:
    payload = {"data": {"event_uuid": "-1", "filter": {"user_id": "2244994945"}, "event_type": "dm.received"}}
    assert partition_key(payload, "fallback") == "2244994945"


def test_an_x_activity_api_delivery_without_a_filter_user_falls_back() -> None:
    assert partition_key({"data": {"filter": {}, "event_type": "oauth.revoke"}}, "fallback") == "fallback"
    assert partition_key({"data": {"filter": {"user_id": True}}}, "fallback") == "fallback"
    assert partition_key({"data": ["x"]}, "fallback") == "fallback"


def test_partition_key_prefers_the_entry_id_over_for_user_id() -> None:
    assert partition_key({"entry": [{"id": "111"}], "for_user_id": "999"}, "fallback") == "111"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        [{"id": "111"}],
        "a string",
        42,
        {},
        {"object": "page"},
        {"entry": []},
        {"entry": "111"},
        {"entry": ["111"]},
        {"entry": [{"time": 1}]},
        {"entry": [{"id": None}]},
        {"entry": [{"id": {"nested": "111"}}]},
        {"for_user_id": ["2244994945"]},
    ],
)
def test_partition_key_falls_back_for_junk_payloads(payload: Any) -> None:
    assert partition_key(payload, "the-delivery-id") == "the-delivery-id"


# --- archive_record ---------------------------------------------------------------------

HEADERS = {
    "Content-Type": "application/json",
    "X-Hub-Signature-256": "sha256=" + "ab" * 32,
    "X-Hub-Signature": "sha1=" + "cd" * 20,
    "x-twitter-webhooks-signature": "sha256=c2lnbmF0dXJl",
    "Authorization": "Bearer abcdefghijkl",
    "User-Agent": "facebookexternalua",
}
RECEIVED_AT = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_archive_record_drops_every_signature_header() -> None:
    record = archive_record("meta", BODY, HEADERS, RECEIVED_AT, {"entry": [{"id": "1"}]})
    lowered = {k.lower() for k in record.headers}
    assert "x-hub-signature-256" not in lowered
    assert "x-hub-signature" not in lowered
    assert "x-twitter-webhooks-signature" not in lowered
    assert not any("sha256=" in v or "sha1=" in v for v in record.headers.values())


def test_archive_record_drops_authorization() -> None:
    record = archive_record("meta", BODY, HEADERS, RECEIVED_AT, None)
    assert "authorization" not in {k.lower() for k in record.headers}


def test_archive_record_keeps_content_type_and_user_agent() -> None:
    record = archive_record("meta", BODY, HEADERS, RECEIVED_AT, None)
    assert record.headers == {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}


def test_archive_record_body_round_trips_the_exact_bytes() -> None:
    body = bytes(range(256)) + b"\r\n\x00 trailing"
    record = archive_record("meta", body, {}, RECEIVED_AT, None)
    assert base64.b64decode(record.body_b64, validate=True) == body


def test_archive_record_carries_the_delivery_id_provider_and_time() -> None:
    record = archive_record("x", BODY, HEADERS, RECEIVED_AT, {"for_user_id": "42"})
    assert record.delivery_id == delivery_id("x", BODY)
    assert record.provider == "x"
    assert record.received_at == RECEIVED_AT


def test_archive_record_is_keyed_by_the_business_account() -> None:
    record = archive_record("meta", BODY, {}, RECEIVED_AT, {"entry": [{"id": "104512345678901"}]})
    assert record.partition_key == "104512345678901"
    assert record.key() == "104512345678901"


def test_archive_record_of_an_unrecognised_payload_is_keyed_by_its_delivery_id() -> None:
    record = archive_record("meta", BODY, {}, RECEIVED_AT, ["not", "a", "delivery"])
    assert record.partition_key == delivery_id("meta", BODY)


# --- is_json_object: what ingest accepts as a delivery body -----------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (BODY, True),
        (b'{"for_user_id":"1"}', True),
        (b" \t\r\n{}", True),
        (b"{not json", True),  # a broken object is archived and dead-lettered with its reason
        (b"", False),
        (b"   ", False),
        (b"[]", False),
        (b'"a string"', False),
        (b"null", False),
        (b"\xef\xbb\xbf{}", False),  # a byte-order mark is not JSON whitespace
        (b"\x0c{}", False),  # nor is a form feed
    ],
)
def test_a_delivery_body_must_open_a_json_object(body: bytes, expected: bool) -> None:
    assert is_json_object(body) is expected


@pytest.mark.parametrize("scalar", ["null", "true", "123", "-1e5", "c2lnbiBtZQ=="])
def test_json_scalars_have_a_crc_tokens_shape_so_only_the_object_check_stops_their_replay(
    scalar: str,
) -> None:
    # the CRC answer for a scalar is a valid POST signature of the same bytes (review P1-1)
    assert is_crc_token(scalar)
    assert verify_x(scalar.encode(), crc_response(scalar, "consumer-secret"), ["consumer-secret"])
    assert not is_json_object(scalar.encode())
