"""Normalization (pure): provider payloads become Parley's one message schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_providers.inbound import (
    SKIP_KINDS,
    ItemFailure,
    MalformedPayload,
    ParsedMessage,
    ParsedStatus,
    ParsedTemplateStatus,
    ParseResult,
)
from parley_providers.meta.inbound import parse_meta
from parley_providers.x.inbound import parse_x

from parley_ingest.domain.normalize.events import (
    conversation_id,
    message_event,
    message_event_id,
    status_event,
    template_event,
)


def parse_delivery(provider: str, payload: Any, now: datetime | None = None) -> ParseResult:
    """Dispatch on the webhook endpoint the delivery came through (``meta`` or ``x``).

    Items that cannot be normalized are in ``failures``; a delivery that is not the endpoint's
    shape at all raises :class:`MalformedPayload`.
    """
    if provider == "meta":
        return parse_meta(payload, now)
    if provider == "x":
        return parse_x(payload, now)
    raise MalformedPayload(f"unknown webhook provider {provider!r}")


__all__ = [
    "SKIP_KINDS",
    "ItemFailure",
    "MalformedPayload",
    "ParseResult",
    "ParsedMessage",
    "ParsedStatus",
    "ParsedTemplateStatus",
    "conversation_id",
    "message_event",
    "message_event_id",
    "parse_delivery",
    "parse_meta",
    "parse_x",
    "status_event",
    "template_event",
]
