"""Webhook signatures: Meta's hex form and X's base64 form, with secret rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from parley_ingest.domain.deliveries import is_json_object
from parley_ingest.domain.ratelimit import ClientBuckets, TokenBucket
from parley_providers.meta.webhook import meta_signature, verify_meta
from parley_providers.x.webhook import crc_response, is_crc_token, verify_x, x_signature

pytestmark = pytest.mark.unit

BODY = b'{"object":"page","entry":[{"id":"104512345678901","time":1700000000000}]}'
OLD = "old-app-secret"
NEW = "new-app-secret"


def hex_header(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def b64_header(body: bytes, secret: str) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def one_byte_changed(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 0x01])


# --- Meta ------------------------------------------------------------------------------


def test_meta_signature_is_the_prefixed_hex_hmac_sha256_of_the_body() -> None:
    assert meta_signature(BODY, NEW) == hex_header(BODY, NEW)


def test_meta_accepts_a_body_signed_with_the_only_secret() -> None:
    assert verify_meta(BODY, hex_header(BODY, NEW), [NEW])


@pytest.mark.parametrize("signing_secret", [OLD, NEW])
def test_meta_accepts_either_secret_while_rotating(signing_secret: str) -> None:
    assert verify_meta(BODY, hex_header(BODY, signing_secret), [OLD, NEW])


def test_meta_accepts_the_second_secret_given_as_a_generator() -> None:
    assert verify_meta(BODY, hex_header(BODY, NEW), (s for s in [OLD, NEW]))


def test_meta_rejects_a_body_signed_with_another_secret() -> None:
    assert not verify_meta(BODY, hex_header(BODY, "attacker-secret"), [OLD, NEW])


def test_meta_rejects_when_no_secret_is_configured() -> None:
    assert not verify_meta(BODY, hex_header(BODY, NEW), [])


@pytest.mark.parametrize("header", [None, ""])
def test_meta_rejects_a_missing_header(header: str | None) -> None:
    assert not verify_meta(BODY, header, [NEW])


def test_meta_rejects_a_header_without_the_sha256_prefix() -> None:
    bare_hex = hmac.new(NEW.encode(), BODY, hashlib.sha256).hexdigest()
    assert not verify_meta(BODY, bare_hex, [NEW])


def test_meta_rejects_a_body_changed_by_one_byte() -> None:
    header = hex_header(BODY, NEW)
    assert verify_meta(BODY, header, [NEW])
    assert not verify_meta(one_byte_changed(BODY), header, [NEW])


def test_meta_accepts_uppercase_hex() -> None:
    digest = hmac.new(NEW.encode(), BODY, hashlib.sha256).hexdigest().upper()
    assert verify_meta(BODY, "sha256=" + digest, [NEW])


def test_meta_rejects_the_base64_form_x_uses() -> None:
    assert not verify_meta(BODY, b64_header(BODY, NEW), [NEW])


def test_meta_rejects_a_truncated_signature() -> None:
    assert not verify_meta(BODY, hex_header(BODY, NEW)[:-2], [NEW])


# --- X ---------------------------------------------------------------------------------


def test_x_signature_is_the_prefixed_base64_hmac_sha256_of_the_body() -> None:
    assert x_signature(BODY, NEW) == b64_header(BODY, NEW)


@pytest.mark.parametrize("signing_secret", [OLD, NEW])
def test_x_accepts_either_secret_while_rotating(signing_secret: str) -> None:
    assert verify_x(BODY, b64_header(BODY, signing_secret), [OLD, NEW])


def test_x_rejects_a_body_signed_with_another_secret() -> None:
    assert not verify_x(BODY, b64_header(BODY, "attacker-secret"), [OLD, NEW])


@pytest.mark.parametrize("header", [None, ""])
def test_x_rejects_a_missing_header(header: str | None) -> None:
    assert not verify_x(BODY, header, [NEW])


def test_x_rejects_a_header_without_the_sha256_prefix() -> None:
    bare = base64.b64encode(hmac.new(NEW.encode(), BODY, hashlib.sha256).digest()).decode()
    assert not verify_x(BODY, bare, [NEW])


def test_x_rejects_a_body_changed_by_one_byte() -> None:
    header = b64_header(BODY, NEW)
    assert verify_x(BODY, header, [NEW])
    assert not verify_x(one_byte_changed(BODY), header, [NEW])


def test_x_rejects_the_hex_form_meta_uses() -> None:
    assert not verify_x(BODY, hex_header(BODY, NEW), [NEW])


def test_x_treats_base64_as_case_sensitive() -> None:
    header = b64_header(BODY, NEW)
    swapped = "sha256=" + header.removeprefix("sha256=").swapcase()
    assert swapped != header
    assert not verify_x(BODY, swapped, [NEW])


# --- the X CRC check (security #13, finding 1) ------------------------------------------------


def test_the_crc_answer_for_a_token_of_x_shape_is_the_base64_hmac_of_the_token() -> None:
    token = "qR3_8bZ-v0c4dW2tYfG1hJ6kL9mN0pQ7sT5uV8xY1z="
    assert crc_response(token, NEW) == b64_header(token.encode(), NEW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a" * 129,
        BODY.decode(),  # a whole delivery: answering it would sign it
        '{"for_user_id":"1"}',
        "two words",
        "ünïcode",
        "x\x00y",
    ],
    ids=["empty", "too-long", "meta-body", "x-body", "space", "non-ascii", "nul"],
)
def test_a_crc_token_not_of_the_documented_shape_is_never_signed(token: str) -> None:
    assert not is_crc_token(token)
    with pytest.raises(ValueError, match="crc_token"):
        crc_response(token, NEW)


def test_no_json_object_has_the_shape_of_a_crc_token() -> None:
    # the oracle needs a body that parses as a delivery: every such body has a brace
    assert all(not is_crc_token(body) for body in ("{}", "[]", '{"a":"b"}'))
    assert is_crc_token("a" * 128)


@pytest.mark.parametrize("scalar", ["null", "true", "123", "-1e5", "c2lnbiBtZQ=="])
def test_json_scalars_have_a_crc_tokens_shape_so_only_the_object_check_stops_their_replay(
    scalar: str,
) -> None:
    # the CRC answer for a scalar is a valid POST signature of the same bytes (review P1-1)
    assert is_crc_token(scalar)
    assert verify_x(scalar.encode(), crc_response(scalar, NEW), [NEW])
    assert not is_json_object(scalar.encode())


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


def test_every_client_has_its_own_crc_bucket() -> None:
    buckets = ClientBuckets(capacity=2, per_second=1.0)
    assert [buckets.take("flooder", 100.0) for _ in range(3)] == [True, True, False]
    assert buckets.take("x", 100.0)  # X's check is not spent by the flooder's
    assert buckets.take("x", 100.0)
    assert not buckets.take("x", 100.0)
    assert buckets.take("flooder", 101.1)  # each refills at its own rate


def test_the_least_recently_seen_client_is_forgotten_past_the_bound() -> None:
    buckets = ClientBuckets(capacity=1, per_second=0.001, max_clients=3)
    for client in ("a", "b", "c"):
        assert buckets.take(client, 0.0)
    assert not buckets.take("a", 0.0)  # "a" is now the most recently seen, "b" the least
    assert buckets.take("d", 0.0)
    assert len(buckets) == 3
    assert not buckets.take("a", 0.0)  # kept (and still empty)
    assert not buckets.take("c", 0.0)
    assert buckets.take("b", 0.0)  # forgotten: a full bucket again
    assert len(buckets) == 3


def test_the_token_bucket_allows_its_capacity_at_once_then_its_rate() -> None:
    bucket = TokenBucket(capacity=2, per_second=1.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]
    assert bucket.retry_after() == 1
    assert not bucket.take(100.5)
    assert bucket.take(101.6)  # refilled by the elapsed time
    assert not bucket.take(101.6)
    assert [bucket.take(1000.0), bucket.take(1000.0), bucket.take(1000.0)] == [True, True, False]
