"""Meta's webhook signature (pure): ``X-Hub-Signature-256`` is hex HMAC-SHA256 of the raw body.

Meta signs an escaped-unicode form of the JSON it sends, so only the raw bytes verify.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from parley_providers.base import HandshakeAnswer, WebhookSecrets
from parley_providers.inbound import ParseResult
from parley_providers.meta.inbound import parse_meta
from parley_providers.webhook import PREFIX, any_match

SIGNATURE_HEADER = "x-hub-signature-256"


def meta_signature(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for a body."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_meta(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True if the header matches the body under any of the secrets."""
    if not header or not header.startswith(PREFIX):
        return False
    given = header.strip().lower().encode()
    return any_match(given, (meta_signature(body, s).encode() for s in secrets))


class MetaWebhook:
    """``/webhooks/meta``: Pages (Messenger, feed), Instagram and WhatsApp Business Accounts."""

    name = "meta"
    signature_header = SIGNATURE_HEADER
    rate_limited_code: str | None = None  # the handshake echoes a challenge: it signs nothing

    def handshake(self, query: Mapping[str, str], secrets: WebhookSecrets) -> HandshakeAnswer:
        """Graph API webhooks, getting started: ``hub.mode=subscribe`` with our verify token gets
        ``hub.challenge`` back as text; anything else is refused."""
        expected = (secrets.verify_token or "").encode()
        given = query.get("hub.verify_token", "").encode()
        if query.get("hub.mode") == "subscribe" and expected and hmac.compare_digest(given, expected):
            return HandshakeAnswer(200, text=query.get("hub.challenge", ""))
        return HandshakeAnswer(403, refusal="refused")

    def verify(self, body: bytes, header: str | None, secrets: WebhookSecrets) -> bool:
        return verify_meta(body, header, secrets.signing)

    def parse(self, payload: Any, now: datetime | None = None) -> ParseResult:
        return parse_meta(payload, now)
