"""Subscriber: archived deliveries in, normalized message events out."""

from __future__ import annotations

import base64

import orjson
from faststream.kafka.annotations import KafkaMessage
from parley_events import WebhookReceived
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import EventPublisher, decode_event
from parley_shared.logging import get_logger

from parley_ingest import metrics
from parley_ingest.domain.normalize import parse_meta, to_event

log = get_logger(__name__)


class NormalizerHandler:
    """Parse the raw record, normalize it, look up channels, publish one event per message."""

    def __init__(
        self, directory: KafkaChannelDirectory, publisher: EventPublisher, catch_up_s: float
    ) -> None:
        self.directory = directory
        self.publisher = publisher
        self.catch_up_s = catch_up_s

    async def __call__(self, message: KafkaMessage) -> None:
        raw = decode_event(WebhookReceived, message.body)
        result = parse_meta(orjson.loads(base64.b64decode(raw.body_b64)))
        for kind in result.skipped:
            metrics.SKIPPED.labels(kind=kind).inc()
        for parsed in result.messages:
            channel = self.directory.lookup(parsed.provider, parsed.account_id)
            if channel is None:
                await self.directory.catch_up(timeout=self.catch_up_s)
                channel = self.directory.lookup(parsed.provider, parsed.account_id)
            if channel is None:
                metrics.UNKNOWN_ACCOUNTS.labels(provider=parsed.provider.value).inc()
                log.warning(
                    "no channel claims this account; archived, not normalized",
                    provider=parsed.provider.value,
                    account_id=parsed.account_id,
                    delivery_id=raw.delivery_id,
                )
                continue
            event = to_event(parsed, channel, raw.delivery_id)
            await self.publisher.publish(event, event_id=event.event_id, time=event.provider_timestamp)
            metrics.NORMALIZED.labels(provider=parsed.provider.value).inc()
