"""X's webhook endpoint: ``x-twitter-webhooks-signature`` over recorded-shape bodies, and the CRC.

The endpoint is the one the registry lists. Signatures are computed here independently of the
code under test (base64 HMAC-SHA256 of the raw body with the consumer secret, X webhooks docs)
over a fixture's bytes as stored, with secret rotation: any secret valid now verifies, no other
does. The CRC answer is the same HMAC over the token, so only tokens of X's shape are answered
(docs/security.md, finding 1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from parley_providers.base import WebhookEndpoint, WebhookSecrets
from parley_providers.x.webhook import crc_response, is_crc_token, x_signature

from tests.support import fixtures, webhooks
from tests.support.webhooks import b64_header, hex_header, one_byte_changed

pytestmark = [pytest.mark.unit, pytest.mark.contract]

BODY = fixtures.body("x", "dm_inbound")
OLD = "old-consumer-secret"
NEW = "new-consumer-secret"


def endpoint() -> WebhookEndpoint:
    return webhooks.endpoint("x")


def verify(body: bytes, header: str | None, *secrets: str) -> bool:
    return webhooks.verifies("x", body, header, *secrets)


def test_the_endpoint_reads_the_x_twitter_webhooks_signature_header() -> None:
    assert endpoint().signature_header == "x-twitter-webhooks-signature"


# --- X ---------------------------------------------------------------------------------


def test_x_signature_is_the_prefixed_base64_hmac_sha256_of_the_body() -> None:
    assert x_signature(BODY, NEW) == b64_header(BODY, NEW)


@pytest.mark.parametrize("signing_secret", [OLD, NEW])
def test_x_accepts_either_secret_while_rotating(signing_secret: str) -> None:
    assert verify(BODY, b64_header(BODY, signing_secret), OLD, NEW)


def test_x_rejects_a_body_signed_with_another_secret() -> None:
    assert not verify(BODY, b64_header(BODY, "attacker-secret"), OLD, NEW)


@pytest.mark.parametrize("header", [None, ""])
def test_x_rejects_a_missing_header(header: str | None) -> None:
    assert not verify(BODY, header, NEW)


def test_x_rejects_a_header_without_the_sha256_prefix() -> None:
    bare = base64.b64encode(hmac.new(NEW.encode(), BODY, hashlib.sha256).digest()).decode()
    assert not verify(BODY, bare, NEW)


def test_x_rejects_a_body_changed_by_one_byte() -> None:
    header = b64_header(BODY, NEW)
    assert verify(BODY, header, NEW)
    assert not verify(one_byte_changed(BODY), header, NEW)


def test_x_rejects_the_hex_form_meta_uses() -> None:
    assert not verify(BODY, hex_header(BODY, NEW), NEW)


def test_x_treats_base64_as_case_sensitive() -> None:
    header = b64_header(BODY, NEW)
    swapped = "sha256=" + header.removeprefix("sha256=").swapcase()
    assert swapped != header
    assert not verify(BODY, swapped, NEW)


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
        fixtures.body("meta", "messenger_text").decode(),
        '{"for_user_id":"1"}',
        "two words",
        "ünïcode",
        "x\x00y",
    ],
    ids=["empty", "too-long", "x-delivery", "meta-delivery", "x-body", "space", "non-ascii", "nul"],
)
def test_a_crc_token_not_of_the_documented_shape_is_never_signed(token: str) -> None:
    assert not is_crc_token(token)
    with pytest.raises(ValueError, match="crc_token"):
        crc_response(token, NEW)


def test_no_json_object_has_the_shape_of_a_crc_token() -> None:
    # the oracle needs a body that parses as a delivery: every such body has a brace
    assert all(not is_crc_token(body) for body in ("{}", "[]", '{"a":"b"}'))
    assert is_crc_token("a" * 128)


def test_the_handshake_answers_the_crc_with_the_current_secret_and_refuses_other_tokens() -> None:
    secrets = WebhookSecrets((NEW, OLD))
    answer = endpoint().handshake({"crc_token": "abc123"}, secrets)
    assert answer.status == 200 and answer.json == {"response_token": b64_header(b"abc123", NEW)}
    assert endpoint().handshake({}, secrets).refusal == "missing"
    forged = endpoint().handshake({"crc_token": BODY.decode()}, secrets)
    assert (forged.status, forged.refusal) == (400, "malformed")
    assert endpoint().rate_limited_code == "crc_token_rate_limited"  # the answer is a signature


@pytest.mark.parametrize("name", fixtures.names("x"))
def test_every_recorded_body_verifies_with_the_current_or_the_previous_secret_only(name: str) -> None:
    body = fixtures.body("x", name)
    assert verify(body, b64_header(body, NEW), NEW, OLD)
    assert verify(body, b64_header(body, OLD), NEW, OLD)
    assert not verify(body, b64_header(body, OLD), NEW)  # rotated out
    assert not verify(body, b64_header(body, "attacker-secret"), NEW, OLD)
