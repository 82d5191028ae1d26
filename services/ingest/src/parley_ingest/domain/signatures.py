"""Webhook signature rules (pure): Meta signs with hex HMAC-SHA256, X with base64.

Several secrets may be valid at once so that a secret can be rotated without downtime.
Comparison is constant-time. The raw body bytes are verified, never a re-serialization.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

PREFIX = "sha256="


def meta_signature(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for a body."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def x_signature(body: bytes, secret: str) -> str:
    """The ``x-twitter-webhooks-signature`` value X sends for a body (also the CRC form)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return PREFIX + base64.b64encode(digest).decode()


def verify_meta(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True if the header matches the body under any of the secrets."""
    if not header or not header.startswith(PREFIX):
        return False
    given = header.strip().lower().encode()
    return _any_match(given, (meta_signature(body, s).encode() for s in secrets))


def verify_x(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True if the header matches the body under any of the secrets."""
    if not header or not header.startswith(PREFIX):
        return False
    given = header.strip().encode()
    return _any_match(given, (x_signature(body, s).encode() for s in secrets))


def _any_match(given: bytes, expected: Iterable[bytes]) -> bool:
    matched = False
    for candidate in expected:
        # no early exit: the time taken does not depend on which secret matched
        matched |= hmac.compare_digest(given, candidate)
    return matched
