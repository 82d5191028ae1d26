"""Ingest on the bus. The webhook process publishes archived deliveries; the normalizer consumes
them and publishes one normalized event per provider event (a bad item is dead-lettered alone)."""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from parley_events import (
    CustomerAliasRecorded,
    HandoverReceived,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessageStatusChanged,
    MessagingLimitChanged,
    NumberThroughputChanged,
    TemplateCategoryChanged,
    TemplateQualityChanged,
    TemplateStatusChanged,
    WebhookReceived,
    topics,
)
from parley_shared.kafka import (
    CONSUMER_ACK_POLICY,
    DeadLetterSink,
    acknowledge_other_types,
    of_type,
    publishes,
    service_router,
)

from parley_ingest.domain.normalize import ItemFailure
from parley_ingest.service import Normalizer, UnprocessableDelivery
from parley_ingest.settings import IngestSettings, NormalizerSettings


def webhook_router(settings: IngestSettings) -> KafkaRouter:
    """The webhook process subscribes to nothing: it archives what the providers send."""
    router = service_router(settings.topic_namespace)
    publishes(
        router,
        WebhookReceived,
        title="archived-webhooks",
        description="Every verified webhook delivery, archived byte for byte before the provider's 200.",
    )
    return router


def normalizer_router(
    settings: NormalizerSettings, normalizer: Normalizer, dead_letter: DeadLetterSink
) -> KafkaRouter:
    """The normalizer's subscriber and publications; bad items go to the raw topic's DLQ one by one."""
    router = service_router(settings.topic_namespace)
    publishes(
        router,
        MessageReceived,
        MessageEdited,
        MessageDeleted,
        MessageStatusChanged,
        HandoverReceived,
        TemplateStatusChanged,
        TemplateCategoryChanged,
        TemplateQualityChanged,
        MessagingLimitChanged,
        NumberThroughputChanged,
        title="normalized-events",
        description="One event per provider message, edit or removal of a message, delivery "
        "receipt, handover, template review, category or quality change, messaging limit update or "
        "number throughput change.",
    )
    publishes(
        router,
        CustomerAliasRecorded,
        title="customer-aliases",
        description="A customer's other identifier leads to their conversation; read back as a read model.",
    )

    deliveries = router.subscriber(
        topics.WEBHOOKS_RAW.name,
        group_id=settings.group_id("normalizer"),
        ack_policy=CONSUMER_ACK_POLICY,
        auto_offset_reset="earliest",
        title="normalize-webhooks",
        description="Archived webhook deliveries in; one MessageReceived per message out.",
    )

    @deliveries(filter=of_type(WebhookReceived))
    async def normalize_webhook(raw: WebhookReceived, message: KafkaMessage) -> None:
        """Normalize one archived delivery; its bad items are dead-lettered alone."""
        with structlog.contextvars.bound_contextvars(delivery_id=raw.delivery_id, provider=raw.provider):
            failures = await normalizer.normalize(raw)
            # after the good events: a crash in between redelivers the record, and ids dedupe
            await dead_letter_items(dead_letter, message.raw_message, raw, failures)

    acknowledge_other_types(deliveries)
    return router


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
