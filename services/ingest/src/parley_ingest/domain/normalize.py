"""Normalization (pure): provider payloads become Parley's one message schema.

Walking-skeleton scope: Messenger text and attachment messages, including the business's own
echoes. Every other kind is reported as skipped (counted and archived, never an error).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from parley_events import (
    Attachment,
    Author,
    ChannelSnapshot,
    Content,
    Direction,
    MessageReceived,
    Provider,
)


class MalformedPayload(ValueError):
    """The delivery is signed but not shaped like the provider documents."""


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A provider message before Parley knows which tenant and channel it belongs to."""

    provider: Provider
    account_id: str
    customer_id: str
    conversation_key: str
    direction: Direction
    author: Author
    content: Content
    provider_message_id: str
    provider_timestamp: datetime


@dataclass(frozen=True, slots=True)
class ParseResult:
    """The messages found in one delivery and the kinds of event that were skipped."""

    messages: tuple[ParsedMessage, ...] = ()
    skipped: tuple[str, ...] = field(default_factory=tuple)


def _ms(value: Any) -> datetime:
    if not isinstance(value, int | float):
        raise MalformedPayload("timestamp is not a number")
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str | int) or value == "":
        raise MalformedPayload(f"{key} is missing")
    return str(value)


def _messenger_event(account_id: str, event: Mapping[str, Any]) -> ParsedMessage | str:
    message = event.get("message")
    if not isinstance(message, Mapping):
        for kind in ("postback", "delivery", "read", "reaction", "optin", "referral"):
            if kind in event:
                return f"messenger.{kind}"
        return "messenger.unknown"
    sender = event.get("sender") or {}
    recipient = event.get("recipient") or {}
    if not isinstance(sender, Mapping) or not isinstance(recipient, Mapping):
        raise MalformedPayload("sender or recipient is not an object")
    echo = bool(message.get("is_echo"))
    # In an echo the page is the sender and the customer the recipient.
    customer_id = _str(recipient, "id") if echo else _str(sender, "id")
    attachments = tuple(
        Attachment(
            type=str(a.get("type", "file")),
            url=(a.get("payload") or {}).get("url") if isinstance(a.get("payload"), Mapping) else None,
        )
        for a in message.get("attachments") or ()
        if isinstance(a, Mapping)
    )
    text = message.get("text")
    return ParsedMessage(
        provider=Provider.MESSENGER,
        account_id=account_id,
        customer_id=customer_id,
        conversation_key=f"dm:{customer_id}",
        direction=Direction.OUTBOUND if echo else Direction.INBOUND,
        author=Author(id=_str(sender, "id")),
        content=Content(text=text if isinstance(text, str) else None, attachments=attachments),
        provider_message_id=_str(message, "mid"),
        provider_timestamp=_ms(event.get("timestamp")),
    )


def parse_meta(payload: Any) -> ParseResult:
    """Split a Meta delivery (possibly a batch) into messages; unknown kinds are skipped."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("entry"), list):
        raise MalformedPayload("not a Meta webhook delivery (no entry list)")
    obj = payload.get("object")
    messages: list[ParsedMessage] = []
    skipped: list[str] = []
    for entry in payload["entry"]:
        if not isinstance(entry, Mapping):
            raise MalformedPayload("entry is not an object")
        if obj != "page":
            skipped.append(f"{obj}.entry")
            continue
        account_id = _str(entry, "id")
        for event in entry.get("messaging") or ():
            if not isinstance(event, Mapping):
                raise MalformedPayload("messaging item is not an object")
            parsed = _messenger_event(account_id, event)
            if isinstance(parsed, str):
                skipped.append(parsed)
            else:
                messages.append(parsed)
        for change in entry.get("changes") or ():
            field_name = change.get("field") if isinstance(change, Mapping) else None
            skipped.append(f"page.changes.{field_name}")
    return ParseResult(messages=tuple(messages), skipped=tuple(skipped))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def message_event_id(provider: Provider, account_id: str, provider_message_id: str) -> str:
    """Deterministic: the same provider message always gets the same id."""
    return "msg_" + _digest(provider.value, account_id, provider_message_id)


def conversation_id(tenant_id: str, channel_id: str, conversation_key: str) -> str:
    """Deterministic: one id per thread within a channel."""
    return "conv_" + _digest(tenant_id, channel_id, conversation_key)


def to_event(parsed: ParsedMessage, channel: ChannelSnapshot, delivery_id: str) -> MessageReceived:
    """Attach tenant and channel to a parsed message and give it its deterministic ids."""
    return MessageReceived(
        event_id=message_event_id(parsed.provider, parsed.account_id, parsed.provider_message_id),
        tenant_id=channel.tenant_id,
        channel_id=channel.channel_id,
        provider=parsed.provider,
        account_id=parsed.account_id,
        conversation_id=conversation_id(channel.tenant_id, channel.channel_id, parsed.conversation_key),
        conversation_key=parsed.conversation_key,
        direction=parsed.direction,
        author=parsed.author,
        content=parsed.content,
        provider_message_id=parsed.provider_message_id,
        provider_timestamp=parsed.provider_timestamp,
        delivery_id=delivery_id,
    )
