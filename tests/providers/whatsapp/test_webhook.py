"""WhatsApp's deliveries are signed like every Meta webhook and checked by Meta's endpoint.

The WhatsApp plugin has no endpoint of its own: WhatsApp Business Account deliveries arrive at
``/webhooks/meta`` signed with the Meta app's secret (``X-Hub-Signature-256``, hex HMAC-SHA256 of
the raw body; WhatsApp Cloud API webhooks). The signature is computed here independently of the
code under test over each fixture's bytes as stored.
"""

from __future__ import annotations

import pytest
from parley_providers import registry

from tests.support import fixtures, webhooks
from tests.support.webhooks import hex_header, one_byte_changed

pytestmark = [pytest.mark.unit, pytest.mark.contract]

OLD = "old-app-secret"
NEW = "new-app-secret"


def verify(body: bytes, header: str | None, *secrets: str) -> bool:
    return webhooks.verifies("meta", body, header, *secrets)  # WhatsApp's deliveries come to Meta's


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
    assert not verify(one_byte_changed(body), hex_header(body, NEW), NEW)
