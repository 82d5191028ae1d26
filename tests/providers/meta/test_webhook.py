"""Meta's webhook endpoint: ``X-Hub-Signature-256`` over recorded-shape bodies, and the handshake.

The endpoint is the one the registry lists. Signatures are computed here independently of the
code under test (hex HMAC-SHA256 of the raw body, Graph API webhooks) over a fixture's bytes as
stored, with secret rotation: any secret valid now verifies, no other does.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from parley_providers.base import WebhookEndpoint, WebhookSecrets
from parley_providers.meta.webhook import meta_signature, verify_meta

from tests.support import fixtures, webhooks
from tests.support.webhooks import b64_header, hex_header, one_byte_changed

pytestmark = [pytest.mark.unit, pytest.mark.contract]

BODY = fixtures.body("meta", "messenger_text")
OLD = "old-app-secret"
NEW = "new-app-secret"


def endpoint() -> WebhookEndpoint:
    return webhooks.endpoint("meta")


def verify(body: bytes, header: str | None, *secrets: str) -> bool:
    return webhooks.verifies("meta", body, header, *secrets)


def test_the_endpoint_reads_the_x_hub_signature_256_header() -> None:
    assert endpoint().signature_header == "x-hub-signature-256"


# --- Meta ------------------------------------------------------------------------------


def test_meta_signature_is_the_prefixed_hex_hmac_sha256_of_the_body() -> None:
    assert meta_signature(BODY, NEW) == hex_header(BODY, NEW)


def test_meta_accepts_a_body_signed_with_the_only_secret() -> None:
    assert verify(BODY, hex_header(BODY, NEW), NEW)


@pytest.mark.parametrize("signing_secret", [OLD, NEW])
def test_meta_accepts_either_secret_while_rotating(signing_secret: str) -> None:
    assert verify(BODY, hex_header(BODY, signing_secret), OLD, NEW)


def test_meta_accepts_the_second_secret_given_as_a_generator() -> None:
    assert verify_meta(BODY, hex_header(BODY, NEW), (s for s in [OLD, NEW]))


def test_meta_rejects_a_body_signed_with_another_secret() -> None:
    assert not verify(BODY, hex_header(BODY, "attacker-secret"), OLD, NEW)


def test_meta_rejects_when_no_secret_is_configured() -> None:
    assert not verify(BODY, hex_header(BODY, NEW))


@pytest.mark.parametrize("header", [None, ""])
def test_meta_rejects_a_missing_header(header: str | None) -> None:
    assert not verify(BODY, header, NEW)


def test_meta_rejects_a_header_without_the_sha256_prefix() -> None:
    bare_hex = hmac.new(NEW.encode(), BODY, hashlib.sha256).hexdigest()
    assert not verify(BODY, bare_hex, NEW)


def test_meta_rejects_a_body_changed_by_one_byte() -> None:
    header = hex_header(BODY, NEW)
    assert verify(BODY, header, NEW)
    assert not verify(one_byte_changed(BODY), header, NEW)


def test_meta_accepts_uppercase_hex() -> None:
    digest = hmac.new(NEW.encode(), BODY, hashlib.sha256).hexdigest().upper()
    assert verify(BODY, "sha256=" + digest, NEW)


def test_meta_rejects_the_base64_form_x_uses() -> None:
    assert not verify(BODY, b64_header(BODY, NEW), NEW)


def test_meta_rejects_a_truncated_signature() -> None:
    assert not verify(BODY, hex_header(BODY, NEW)[:-2], NEW)


def test_the_handshake_echoes_the_challenge_only_for_our_verify_token() -> None:
    secrets = WebhookSecrets((NEW, OLD), verify_token="verify-me")
    ok = endpoint().handshake(
        {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"}, secrets
    )
    assert (ok.status, ok.text) == (200, "42")
    wrong = endpoint().handshake(
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "42"}, secrets
    )
    assert (wrong.status, wrong.refusal) == (403, "refused")
    # an endpoint configured without a verify token accepts no handshake, not even an empty one
    empty = endpoint().handshake({"hub.mode": "subscribe", "hub.verify_token": ""}, WebhookSecrets(("s",)))
    assert empty.status == 403
    assert endpoint().rate_limited_code is None  # the answer echoes a challenge: it signs nothing


@pytest.mark.parametrize("name", fixtures.names("meta"))
def test_every_recorded_body_verifies_with_the_current_or_the_previous_secret_only(name: str) -> None:
    body = fixtures.body("meta", name)
    assert verify(body, hex_header(body, NEW), NEW, OLD)
    assert verify(body, hex_header(body, OLD), NEW, OLD)
    assert not verify(body, hex_header(body, OLD), NEW)  # rotated out
    assert not verify(body, hex_header(body, "attacker-secret"), NEW, OLD)
