"""Builders of provider payloads and events for the unit tests (pure data, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from parley_events import (
    Author,
    ChannelSnapshot,
    ChannelStatus,
    Content,
    Direction,
    MessageReceived,
    Provider,
)

PAGE_ID = "104512345678901"
CUSTOMER_ID = "7654321098765432"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def ms(at: datetime) -> int:
    """A datetime as the epoch milliseconds Meta sends."""
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def messaging_text(
    mid: str,
    text: str = "hello",
    *,
    sender: str = CUSTOMER_ID,
    recipient: str = PAGE_ID,
    ts_ms: int | None = None,
    echo: bool = False,
) -> dict[str, Any]:
    """One ``messaging`` item carrying a text message."""
    message: dict[str, Any] = {"mid": mid, "text": text}
    if echo:
        message["is_echo"] = True
        message["app_id"] = 1517776481860111
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": ms(T0) if ts_ms is None else ts_ms,
        "message": message,
    }


def page_delivery(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "page", "entry": list(entries)}


def page_entry(items: list[dict[str, Any]], page_id: str = PAGE_ID, **extra: Any) -> dict[str, Any]:
    return {"id": page_id, "time": ms(T0), "messaging": items, **extra}


def channel(
    tenant_id: str = "ten_acme", channel_id: str = "chn_1", account_id: str = PAGE_ID
) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id=channel_id,
        tenant_id=tenant_id,
        provider=Provider.MESSENGER,
        account_id=account_id,
        status=ChannelStatus.ACTIVE,
        display_name="Acme Support",
        revision=1,
    )


def message(
    n: int,
    *,
    conversation_id: str = "conv_1",
    at: datetime | None = None,
    direction: Direction = Direction.INBOUND,
    text: str | None = None,
) -> MessageReceived:
    """The n-th normalized message of a conversation (distinct event id per n)."""
    return MessageReceived(
        event_id=f"msg_{conversation_id}_{n}",
        tenant_id="ten_acme",
        channel_id="chn_1",
        provider=Provider.MESSENGER,
        account_id=PAGE_ID,
        conversation_id=conversation_id,
        conversation_key=f"dm:{CUSTOMER_ID}",
        direction=direction,
        author=Author(id=CUSTOMER_ID if direction is Direction.INBOUND else PAGE_ID),
        content=Content(text=text if text is not None else f"message {n}"),
        provider_message_id=f"m_{n}",
        provider_timestamp=at if at is not None else T0 + timedelta(seconds=n),
        delivery_id=f"delivery_{n}",
    )
