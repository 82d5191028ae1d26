"""Subscriber: archived deliveries in, normalized events out (one per provider event)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from faststream.kafka.annotations import KafkaMessage
from parley_events import ChannelSnapshot, Event, Provider, WebhookReceived
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import (
    DeadLetterSink,
    EventPublisher,
    PermanentError,
    decode_event,
    kafka_dead_letter_sink,
)
from parley_shared.logging import get_logger

from parley_ingest import metrics
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.domain.normalize import (
    SKIP_KINDS,
    ItemFailure,
    MalformedPayload,
    message_event,
    parse_delivery,
    status_event,
    template_event,
)

log = get_logger(__name__)


class UnprocessableDelivery(PermanentError):
    """The archived delivery cannot be normalized as it is; it goes to the DLQ for a fix and replay."""


Lookup = Callable[[Provider, str], ChannelSnapshot | None]


class Normalizer:
    """Normalize one archived delivery and publish its events, skipping recent repeats."""

    def __init__(
        self,
        directory: KafkaChannelDirectory,
        publish: Callable[[Event, str], Awaitable[None]],
        catch_up_s: float,
        recent: RecentIds,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.directory = directory
        self.publish = publish
        self.catch_up_s = catch_up_s
        self.recent = recent
        self.clock = clock

    async def channel(self, lookup: Lookup, provider: Provider, account_id: str) -> ChannelSnapshot | None:
        found = lookup(provider, account_id)
        if found is None:
            # it may have been registered a moment ago: read the channels topic up to now
            await self.directory.catch_up(timeout=self.catch_up_s)
            found = lookup(provider, account_id)
        if found is None:
            metrics.UNKNOWN_ACCOUNTS.labels(provider=provider.value).inc()
            log.warning(
                "no channel claims this account; archived, not normalized",
                provider=provider.value,
                account_id=account_id,
            )
        return found

    async def emit(self, event: Event, event_id: str, provider: str) -> None:
        if event_id in self.recent:
            metrics.DUPLICATES.labels(provider=provider).inc()
            return
        await self.publish(event, event_id)
        self.recent.add(event_id)
        metrics.NORMALIZED.labels(provider=provider, event_type=event.event_type).inc()

    async def normalize(self, raw: WebhookReceived) -> tuple[ItemFailure, ...]:
        """Publish the delivery's events; return the items that could not be normalized.

        A delivery that is not the endpoint's shape at all raises :class:`UnprocessableDelivery`.
        """
        try:
            payload = orjson.loads(base64.b64decode(raw.body_b64, validate=True))
            result = parse_delivery(raw.provider, payload, self.clock())
        except (MalformedPayload, orjson.JSONDecodeError, binascii.Error) as exc:
            metrics.NORMALIZATION_FAILURES.labels(provider=raw.provider).inc()
            raise UnprocessableDelivery(f"{raw.provider} delivery {raw.delivery_id}: {exc}") from exc
        for kind, count in Counter(result.skipped).items():
            # the domain names kinds from a fixed set; the label is checked against it all the same
            metrics.SKIPPED.labels(kind=kind if kind in SKIP_KINDS else "other").inc(count)
        if result.failures:
            metrics.ITEM_FAILURES.labels(provider=raw.provider).inc(len(result.failures))
            for failure in result.failures:
                log.warning(
                    "item not normalized, dead-lettering it alone",
                    position=failure.position,
                    reason=failure.reason,
                )
        for parsed in result.messages:
            channel = await self.channel(self.directory.lookup, parsed.provider, parsed.account_id)
            if channel is not None:
                event = message_event(parsed, channel, raw.delivery_id)
                await self.emit(event, event.event_id, parsed.provider.value)
        for status in result.statuses:
            channel = await self.channel(self.directory.lookup, status.provider, status.account_id)
            if channel is not None:
                receipt = status_event(status, channel, raw.delivery_id)
                await self.emit(receipt, receipt.event_id, status.provider.value)
        for template in result.templates:
            channel = await self.channel(
                self.directory.lookup_business, Provider.WHATSAPP, template.business_account_id
            )
            if channel is not None:
                update = template_event(template, channel.tenant_id, raw.delivery_id)
                await self.emit(update, update.event_id, Provider.WHATSAPP.value)
        return result.failures


def item_error(raw: WebhookReceived, failure: ItemFailure) -> UnprocessableDelivery:
    """The error a bad item is dead-lettered with: the delivery, the item's position, the reason."""
    return UnprocessableDelivery(
        f"{raw.provider} delivery {raw.delivery_id} at {failure.position}: {failure.reason}"
    )


MAX_ITEM_DEAD_LETTERS = 20
"""Dead letters per delivery: each carries the whole archived delivery (up to the body limit), so a
delivery of a thousand bad items must not write a thousand copies of itself."""


async def dead_letter_items(
    sink: DeadLetterSink, record: Any, raw: WebhookReceived, failures: tuple[ItemFailure, ...]
) -> None:
    """One DLQ record per bad item: the archived record as it is (``parley dlq redrive`` replays
    the delivery; its good events come out again under the same ids), with the item's position
    and the delivery id in ``parley_dlq_item`` and ``parley_dlq_delivery_id``.

    Beyond :data:`MAX_ITEM_DEAD_LETTERS` bad items, the last record stands for the rest too: its
    ``parley_dlq_more_items`` header lists their positions (the delivery it carries holds them all).
    """
    for index, failure in enumerate(failures[:MAX_ITEM_DEAD_LETTERS]):
        extra = [
            ("parley_dlq_delivery_id", raw.delivery_id.encode()),
            ("parley_dlq_item", failure.position.encode()),
        ]
        error = item_error(raw, failure)
        rest = failures[MAX_ITEM_DEAD_LETTERS:] if index == MAX_ITEM_DEAD_LETTERS - 1 else ()
        if rest:
            extra.append(("parley_dlq_more_items", " ".join(f.position for f in rest)[:4000].encode()))
            error = UnprocessableDelivery(f"{error}; and {len(rest)} more bad items (parley_dlq_more_items)")
        marked = dataclasses.replace(record, headers=(*(record.headers or ()), *extra))
        await sink(marked, error, 1)


def normalizer_subscriber(
    directory: KafkaChannelDirectory,
    publisher: EventPublisher,
    catch_up_s: float,
    dedupe_window: int,
    dead_letter: DeadLetterSink | None = None,
) -> Callable[[KafkaMessage], Awaitable[None]]:
    """The handler the raw topic's subscriber calls; bad items go to the raw topic's DLQ one by one."""
    sink = dead_letter or kafka_dead_letter_sink(publisher.broker)

    async def publish(event: Event, event_id: str) -> None:
        await publisher.publish(event, event_id=event_id)

    normalizer = Normalizer(directory, publish, catch_up_s, RecentIds(dedupe_window))

    async def handle(message: KafkaMessage) -> None:
        raw = decode_event(WebhookReceived, message.body)
        with structlog.contextvars.bound_contextvars(delivery_id=raw.delivery_id, provider=raw.provider):
            failures = await normalizer.normalize(raw)
            # after the good events: a crash in between redelivers the record, and ids dedupe
            await dead_letter_items(sink, message.raw_message, raw, failures)

    return handle
