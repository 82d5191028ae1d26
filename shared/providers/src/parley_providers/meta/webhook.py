"""Meta's webhook signature (pure): ``X-Hub-Signature-256`` is hex HMAC-SHA256 of the raw body.

Meta signs an escaped-unicode form of the JSON it sends, so only the raw bytes verify.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

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
