"""WhatsApp's deliveries are signed like every Meta webhook and checked by Meta's endpoint.

The WhatsApp plugin has no endpoint of its own: WhatsApp Business Account deliveries arrive at
``/webhooks/meta`` signed with the Meta app's secret (``X-Hub-Signature-256``, hex HMAC-SHA256 of
the raw body; WhatsApp Cloud API webhooks). The signature is computed here independently of the
code under test over each fixture's bytes as stored.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from parley_providers import registry
from parley_providers.base import WebhookSecrets

from tests.support import fixtures

pytestmark = [pytest.mark.unit, pytest.mark.contract]

OLD = "old-app-secret"
NEW = "new-app-secret"


def hex_header(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, *secrets: str) -> bool:
    meta = registry.webhook_endpoint("meta")
    assert meta is not None
    return meta.verify(body, header, WebhookSecrets(secrets))


def test_whatsapp_has_no_endpoint_of_its_own() -> None:
    assert registry.plugins()["whatsapp"].webhook is None
    assert registry.webhook_endpoint("whatsapp") is None


@pytest.mark.parametrize("name", fixtures.names("whatsapp"))
def test_every_recorded_body_verifies_with_the_current_or_the_previous_secret_only(name: str) -> None:
    body = fixtures.body("whatsapp", name)
    assert verify(body, hex_header(body, NEW), NEW, OLD)
    assert verify(body, hex_header(body, OLD), NEW, OLD)
    assert not verify(body, hex_header(body, OLD), NEW)  # rotated out
    assert not verify(body, hex_header(body, "attacker-secret"), NEW, OLD)
    assert not verify(body[:-1] + bytes([body[-1] ^ 0x01]), hex_header(body, NEW), NEW)
