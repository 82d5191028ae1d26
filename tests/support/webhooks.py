"""Webhook signatures as the providers compute them, written here apart from the code under test.

Meta: ``sha256=`` + hex HMAC-SHA256 of the raw body with the app secret (Graph API webhooks).
X: ``sha256=`` + base64 HMAC-SHA256 of the raw body with the consumer secret (X webhooks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from parley_providers import registry
from parley_providers.base import WebhookEndpoint, WebhookSecrets


def hex_header(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def b64_header(body: bytes, secret: str) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def one_byte_changed(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 0x01])


def endpoint(name: str) -> WebhookEndpoint:
    """The webhook endpoint the registry lists under ``name``."""
    found = registry.webhook_endpoint(name)
    assert found is not None, name
    return found


def verifies(name: str, body: bytes, header: str | None, *secrets: str) -> bool:
    """Whether endpoint ``name`` accepts ``header`` for ``body`` with these secrets valid now."""
    return endpoint(name).verify(body, header, WebhookSecrets(secrets))
