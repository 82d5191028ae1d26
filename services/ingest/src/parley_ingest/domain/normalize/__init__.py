"""Normalization (pure): provider payloads become Parley's one message schema."""

from __future__ import annotations

from typing import Any

from parley_ingest.domain.normalize.common import (
    MalformedPayload,
    ParsedMessage,
    ParsedStatus,
    ParsedTemplateStatus,
    ParseResult,
)
from parley_ingest.domain.normalize.events import (
    conversation_id,
    message_event,
    message_event_id,
    status_event,
    template_event,
)
from parley_ingest.domain.normalize.meta import parse_meta
from parley_ingest.domain.normalize.x import parse_x


def parse_delivery(provider: str, payload: Any) -> ParseResult:
    """Dispatch on the webhook endpoint the delivery came through (``meta`` or ``x``)."""
    if provider == "meta":
        return parse_meta(payload)
    if provider == "x":
        return parse_x(payload)
    raise MalformedPayload(f"unknown webhook provider {provider!r}")


__all__ = [
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
