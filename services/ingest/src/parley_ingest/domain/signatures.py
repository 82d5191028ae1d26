"""Webhook signature rules (pure): Meta signs with hex HMAC-SHA256, X with base64.

Several secrets may be valid at once so that a secret can be rotated without downtime.
Comparison is constant-time. The raw body bytes are verified, never a re-serialization.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable

PREFIX = "sha256="

CRC_TOKEN_MAX_CHARS = 128
# X's crc_tokens are short base64 strings. The CRC answer is the very HMAC that signs POST bodies,
# so answering any token would sign anything (a JSON body sent as a token): only this shape is
# answered, and no JSON document fits it (no braces, quotes, colons or spaces).
_CRC_TOKEN = re.compile(rf"[A-Za-z0-9+/=_-]{{1,{CRC_TOKEN_MAX_CHARS}}}", re.ASCII)


def meta_signature(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for a body."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def x_signature(body: bytes, secret: str) -> str:
    """The ``x-twitter-webhooks-signature`` value X sends for a body (also the CRC form)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return PREFIX + base64.b64encode(digest).decode()


def is_crc_token(token: str) -> bool:
    """True if ``token`` has the shape of an X crc_token: 1-128 base64 or base64url characters."""
    return _CRC_TOKEN.fullmatch(token) is not None


def crc_response(token: str, secret: str) -> str:
    """The CRC ``response_token`` for a token of the documented shape; anything else raises."""
    if not is_crc_token(token):
        raise ValueError("not a crc_token: 1-128 characters of A-Z a-z 0-9 + / = _ -")
    return x_signature(token.encode(), secret)


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
