"""What ingest records about a delivery before answering 200 (pure)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from parley_events import WebhookReceived

# Headers worth keeping for replay and audit; signatures are deliberately not among them.
KEPT_HEADERS = ("content-type", "user-agent", "x-forwarded-for", "traceparent")


_JSON_WHITESPACE = b" \t\r\n"


def is_json_object(body: bytes) -> bool:
    """True if the body opens a JSON object (its first non-whitespace byte is ``{``).

    Meta and X always deliver an object. X's CRC answer is the HMAC that signs POST bodies, so
    every string of a crc_token's shape (``null``, ``true``, ``123``, ...) has a valid signature
    for the asking; no crc_token can contain ``{``, so no such body passes this check.
    """
    return body.lstrip(_JSON_WHITESPACE)[:1] == b"{"


def delivery_id(provider: str, body: bytes) -> str:
    """The same bytes re-sent by the provider give the same id."""
    return hashlib.sha256(provider.encode() + b"\x00" + body).hexdigest()


def partition_key(payload: Any, fallback: str) -> str:
    """Key raw records by the first business account id so one account's deliveries stay in order.

    Meta: the first entry's id; X's Account Activity API: ``for_user_id``; X Activity API: the
    subscription filter's ``user_id`` (``data.filter.user_id``).
    """
    if isinstance(payload, Mapping):
        entries = payload.get("entry")
        if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
            account = entries[0].get("id")
            if isinstance(account, str | int):
                return str(account)
        for_user = payload.get("for_user_id")
        if isinstance(for_user, str | int):
            return str(for_user)
        data = payload.get("data")
        selector = data.get("filter") if isinstance(data, Mapping) else None
        user = selector.get("user_id") if isinstance(selector, Mapping) else None
        if isinstance(user, str | int) and not isinstance(user, bool):
            return str(user)
    return fallback


def archive_record(
    provider: str,
    body: bytes,
    headers: Mapping[str, str],
    received_at: datetime,
    payload: Any,
) -> WebhookReceived:
    """The raw record archived on the raw topic for one verified delivery."""
    did = delivery_id(provider, body)
    return WebhookReceived(
        delivery_id=did,
        provider=provider,
        received_at=received_at,
        headers={k: v for k, v in headers.items() if k.lower() in KEPT_HEADERS},
        body_b64=base64.b64encode(body).decode(),
        partition_key=partition_key(payload, did),
    )
