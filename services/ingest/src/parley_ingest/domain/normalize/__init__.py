"""Normalization (pure): provider payloads become Parley's one message schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_providers import registry
from parley_providers.inbound import (
    SKIP_KINDS,
    ItemFailure,
    MalformedPayload,
    ParsedMessage,
    ParsedStatus,
    ParsedTemplateStatus,
    ParseResult,
)

from parley_ingest.domain.normalize.aliases import resolve
from parley_ingest.domain.normalize.events import (
    alias_event,
    change_event,
    conversation_id,
    handover_event,
    limit_event,
    message_event,
    message_event_id,
    status_event,
    template_event,
    throughput_event,
)


def parse_delivery(provider: str, payload: Any, now: datetime | None = None) -> ParseResult:
    """Parse with the parser of the webhook endpoint the delivery came through (the registry's).

    Items that cannot be normalized are in ``failures``; a delivery that is not the endpoint's
    shape at all raises :class:`MalformedPayload`.
    """
    endpoint = registry.webhook_endpoint(provider)
    if endpoint is None:
        raise MalformedPayload(f"unknown webhook provider {provider!r}")
    return endpoint.parse(payload, now)


__all__ = [
    "SKIP_KINDS",
    "ItemFailure",
    "MalformedPayload",
    "ParseResult",
    "ParsedMessage",
    "ParsedStatus",
    "ParsedTemplateStatus",
    "alias_event",
    "change_event",
    "conversation_id",
    "handover_event",
    "limit_event",
    "message_event",
    "message_event_id",
    "parse_delivery",
    "resolve",
    "status_event",
    "template_event",
    "throughput_event",
]
