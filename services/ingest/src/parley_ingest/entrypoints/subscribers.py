"""Ingest on the bus. The webhook process publishes archived deliveries; the normalizer consumes
them and publishes one normalized event per provider event (a bad item is dead-lettered alone)."""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Any

import structlog
from aiokafka import TopicPartition
from faststream.kafka import KafkaRouter
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
    BATCH_WAIT_MS,
    CONSUMER_ACK_POLICY,
    FETCH_WAIT_MS,
    DeadLetterSink,
    KafkaMessage,
    RetryThenDeadLetter,
    batch_records,
    decode_event,
    documented_as_batch_of,
    partition_lanes,
    publishes,
    record_event_type,
    rewind,
    service_router,
    still_assigned,
    undecoded,
)
from parley_shared.logging import get_logger
from parley_shared.tracing import trace_of_record

from parley_ingest.domain.normalize import ItemFailure
from parley_ingest.service import Normalizer, UnprocessableDelivery
from parley_ingest.settings import IngestSettings, NormalizerSettings

log = get_logger(__name__)


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


NORMALIZE_BATCH_RECORDS = 200
"""Raw deliveries the normalizer takes per poll."""

NORMALIZE_BATCH_TIME_S = 30.0
"""After this long a batch starts no new delivery: the rest is fetched again by the next poll, so
content lookups retried through a provider's outage cannot keep the consumer from polling."""


def normalizer_router(
    settings: NormalizerSettings,
    normalizer: Normalizer,
    dead_letter: DeadLetterSink,
    retry: RetryThenDeadLetter,
) -> KafkaRouter:
    """The normalizer's subscriber and publications; bad items go to the raw topic's DLQ one by one.

    One consumer handles a poll's deliveries in partition lanes (:func:`partition_lanes`) and
    publishes their events without waiting for each acknowledgement (the normalizer's publish is
    a :class:`~parley_shared.kafka.SendWindow`); the batch is committed once the broker has
    acknowledged them all. Waiting for each event's acks=all acknowledgement before the next
    one, and committing after every delivery, held the pipeline near 48 deliveries a second on
    one partition (``make bench``, 2026-11-30).
    """
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

    async def normalize_record(record: Any) -> None:
        raw = decode_event(WebhookReceived, record.value)  # bad data is dead-lettered whole
        with structlog.contextvars.bound_contextvars(delivery_id=raw.delivery_id, provider=raw.provider):
            failures = await normalizer.normalize(raw)
            # after the good events: a crash in between redelivers the record, and ids dedupe
            await dead_letter_items(dead_letter, record, raw, failures)

    async def handle(record: Any) -> None:
        event_type = record_event_type(record)
        if event_type != WebhookReceived.event_type:
            if event_type is None:
                log.warning("a record without a ce_type header: acknowledged, not processed")
            return
        with trace_of_record(record):
            await retry.run(partial(normalize_record, record), record)

    async def normalize_batch(batch: Any, message: KafkaMessage) -> None:
        started = time.monotonic()

        def go_on(partition: TopicPartition) -> bool:
            return (
                still_assigned(message, partition)() and time.monotonic() - started < NORMALIZE_BATCH_TIME_S
            )

        stopped = await partition_lanes(batch_records(message), handle, go_on=go_on)
        # the batch's events acknowledged before its commit; if not, the whole batch is handled
        # again (its failure escapes to the consumer's batch retry) and repeats dedupe by id
        await normalizer.settle()
        if stopped:
            rewind(message, stopped)

    description = (
        "Archived webhook deliveries in; one event per provider message out. In batches: each "
        "partition's deliveries in order, the events published without waiting for each "
        "acknowledgement, one commit per batch once all are acknowledged."
    )
    documented_as_batch_of(normalize_batch, (WebhookReceived,), description)
    router.subscriber(
        topics.WEBHOOKS_RAW.name,
        group_id=settings.group_id("normalizer"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        batch=True,
        batch_timeout_ms=BATCH_WAIT_MS,
        max_records=NORMALIZE_BATCH_RECORDS,
        decoder=undecoded,
        title="normalize-webhooks",
        description=description,
    )(normalize_batch)
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
