"""Typed subscribers on a service router against the real broker: records are chosen by their
ce_type header, a record of a type the subscriber does not handle is acknowledged (not
dead-lettered, not redelivered), and a record whose value does not decode or validate is
dead-lettered at once, exactly as the retry middleware treats bad data."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream import BaseMiddleware
from parley_events import (
    MessageStatusChanged,
    TemplateStatusChanged,
    dlq_name,
    qualify,
    topics,
)
from parley_shared.kafka import (
    CONSUMER_ACK_POLICY,
    RetryPolicy,
    RetryThenDeadLetter,
    acknowledge_other_types,
    encode_event,
    event_headers,
    kafka_dead_letter_sink,
    make_broker,
    of_type,
    service_router,
)
from parley_shared.settings import ServiceSettings

from tests.conftest import Infra
from tests.support.kafka import count_records, eventually, read_records
from tests.unit.factories import T0, message

pytestmark = pytest.mark.integration


class CountDeliveries(BaseMiddleware):
    """Counts how often each offset reaches the subscriber (a nacked record comes back)."""

    seen: Counter[int] = Counter()

    async def on_receive(self) -> None:
        CountDeliveries.seen[self.msg.offset] += 1
        await super().on_receive()


def template_review() -> TemplateStatusChanged:
    return TemplateStatusChanged(
        event_id="evt_tpl_1",
        tenant_id="ten_1",
        business_account_id="waba_1",
        template_name="order_update",
        language="en",
        status="APPROVED",
        provider_timestamp=T0,
        delivery_id="dlv_1",
    )


def headers_of(event: Any, event_id: str) -> dict[str, str]:
    return event_headers(event, event_id=event_id, source="/test", time=T0)


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def run_template_subscriber(
    infra: Infra, namespace: str, group: str, records: list[tuple[bytes, dict[str, str]]]
) -> list[TemplateStatusChanged]:
    """A service router whose one subscriber handles template reviews (and acknowledges the rest);
    publish ``records`` in order to one partition and return what the handler received."""
    retry = RetryThenDeadLetter(None, RetryPolicy(max_attempts=3, backoff_s=0.01))
    broker = make_broker(
        ServiceSettings(kafka_bootstrap_servers=infra.kafka), "parley-test", [CountDeliveries, retry]
    )
    retry.sink = kafka_dead_letter_sink(broker)
    router = service_router(namespace)
    handled: list[TemplateStatusChanged] = []
    reviews = router.subscriber(
        topics.MESSAGES_INBOUND.name,
        group_id=group,
        ack_policy=CONSUMER_ACK_POLICY,
        auto_offset_reset="earliest",
    )

    @reviews(filter=of_type(TemplateStatusChanged))
    async def record_review(review: TemplateStatusChanged) -> None:
        handled.append(review)

    acknowledge_other_types(reviews)
    broker.include_router(router)
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    await broker.start()
    try:
        for value, headers in records:
            await broker.publish(value, topic=topic, key=b"same-key", partition=0, headers=headers)
        await eventually(lambda: committed_is(infra.kafka, group, topic, len(records)))
    finally:
        await broker.stop()
    return handled


async def committed_is(bootstrap: str, group: str, topic: str, offset: int) -> bool:
    return await committed(bootstrap, group, topic) == offset


async def test_a_record_of_a_type_the_subscriber_does_not_handle_is_committed_not_dead_lettered(
    infra: Infra, namespace: str, unique: str
) -> None:
    CountDeliveries.seen.clear()
    review = template_review()
    inbound = message(1)
    records = [
        (encode_event(inbound), headers_of(inbound, inbound.event_id)),  # handled by others
        (b'{"from": "another producer"}', {"content-type": "application/json"}),  # no ce_type at all
        (encode_event(review), headers_of(review, review.event_id)),
    ]

    handled = await run_template_subscriber(infra, namespace, f"g{unique}", records)

    assert handled == [review]  # the next record was processed, typed
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    assert await count_records(infra.kafka, dlq_name(topic)) == 0
    # each record reached the subscriber once: nothing was nacked and redelivered
    assert CountDeliveries.seen == Counter({0: 1, 1: 1, 2: 1})


async def test_a_handled_type_whose_value_is_not_json_or_not_its_model_is_dead_lettered_at_once(
    infra: Infra, namespace: str, unique: str
) -> None:
    CountDeliveries.seen.clear()
    review = template_review()
    receipt_type = {"ce_type": TemplateStatusChanged.event_type}
    records = [
        (b"not json", {**receipt_type, "content-type": "application/json"}),
        (b'{"status": "APPROVED"}', receipt_type),  # JSON, but not a template review
        (encode_event(review), headers_of(review, review.event_id)),
    ]

    handled = await run_template_subscriber(infra, namespace, f"g{unique}", records)

    assert handled == [review]
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    dead = await read_records(infra.kafka, dlq_name(topic), until=lambda rs: len(rs) >= 2)
    errors = [dict(r.headers)["parley_dlq_error"].decode() for r in dead]
    assert [r.value for r in dead] == [b"not json", b'{"status": "APPROVED"}']
    assert errors[0].startswith("UndecodableRecord") and errors[1].startswith("ValidationError")
    # bad data is permanent: one attempt each, no retries
    assert [dict(r.headers)["parley_dlq_attempts"] for r in dead] == [b"1", b"1"]
    assert CountDeliveries.seen == Counter({0: 1, 1: 1, 2: 1})


async def test_without_the_last_handler_a_record_of_another_type_would_stall_its_partition(
    infra: Infra, namespace: str, unique: str
) -> None:
    """Why acknowledge_other_types exists: FastStream 0.7 finds no handler for the record, raises
    outside the consume middlewares, and NACK_ON_ERROR seeks back to it, again and again."""
    CountDeliveries.seen.clear()
    broker = make_broker(
        ServiceSettings(kafka_bootstrap_servers=infra.kafka), "parley-test", [CountDeliveries]
    )
    router = service_router(namespace)
    handled: list[MessageStatusChanged] = []
    group = f"g{unique}"

    subscriber = router.subscriber(
        topics.MESSAGES_INBOUND.name,
        group_id=group,
        ack_policy=CONSUMER_ACK_POLICY,
        auto_offset_reset="earliest",
    )

    @subscriber(filter=of_type(MessageStatusChanged))
    async def receipts(receipt: MessageStatusChanged) -> None:
        handled.append(receipt)

    broker.include_router(router)
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    inbound = message(1)
    await broker.start()
    try:
        await broker.publish(
            encode_event(inbound), topic=topic, partition=0, headers=headers_of(inbound, "e1")
        )
        await eventually(lambda: CountDeliveries.seen[0] > 3)
        await asyncio.sleep(0.2)
    finally:
        await broker.stop()
    assert await committed(infra.kafka, group, topic) is None
    assert handled == []
