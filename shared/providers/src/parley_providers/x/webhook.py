"""X's webhook checks (pure): the POST signature and the CRC answer, both base64 HMAC-SHA256.

The CRC answer is the very HMAC that signs POST bodies, so answering any token would sign
anything (a JSON body sent as a token): only tokens of X's shape are answered, and no JSON
document fits that shape (no braces, quotes, colons or spaces). docs/security.md, finding 1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from parley_providers.base import HandshakeAnswer, WebhookSecrets
from parley_providers.inbound import ParseResult
from parley_providers.webhook import PREFIX, any_match
from parley_providers.x.inbound import parse_x

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
CRC_TOKEN_MAX_CHARS = 128
_CRC_TOKEN = re.compile(rf"[A-Za-z0-9+/=_-]{{1,{CRC_TOKEN_MAX_CHARS}}}", re.ASCII)


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


def verify_x(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True if the header matches the body under any of the secrets."""
    if not header or not header.startswith(PREFIX):
        return False
    given = header.strip().encode()
    return any_match(given, (x_signature(body, s).encode() for s in secrets))


class XWebhook:
    """``/webhooks/x``: account activity (direct messages, posts)."""

    name = "x"
    signature_header = SIGNATURE_HEADER
    rate_limited_code: str | None = "crc_token_rate_limited"  # the CRC answer is a signature

    def handshake(self, query: Mapping[str, str], secrets: WebhookSecrets) -> HandshakeAnswer:
        """X's CRC: the response token for a crc_token of X's shape, with the current secret."""
        token = query.get("crc_token")
        if not token:
            return HandshakeAnswer(
                400, json={"code": "crc_token_missing", "message": "crc_token is required"}, refusal="missing"
            )
        if not is_crc_token(token):
            message = f"crc_token must be 1-{CRC_TOKEN_MAX_CHARS} characters of A-Z a-z 0-9 + / = _ -"
            return HandshakeAnswer(
                400, json={"code": "crc_token_malformed", "message": message}, refusal="malformed"
            )
        return HandshakeAnswer(200, json={"response_token": crc_response(token, secrets.signing[0])})

    def verify(self, body: bytes, header: str | None, secrets: WebhookSecrets) -> bool:
        return verify_x(body, header, secrets.signing)

    def parse(self, payload: Any, now: datetime | None = None) -> ParseResult:
        return parse_x(payload, now)
