"""The retry-then-DLQ middleware against the real broker: poison goes aside, the partition flows."""

from __future__ import annotations

import asyncio
from typing import Any

import pymongo.errors
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka.annotations import KafkaMessage
from parley_events import dlq_name, qualify, topics
from parley_shared.kafka import (
    CONSUMER_ACK_POLICY,
    RetryPolicy,
    RetryThenDeadLetter,
    kafka_dead_letter_sink,
    make_broker,
)
from parley_shared.settings import ServiceSettings

from tests.conftest import Infra
from tests.support.kafka import eventually, read_records

pytestmark = pytest.mark.integration


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, partition))
    finally:
        await consumer.stop()


async def committed_is(bootstrap: str, group: str, topic: str, offset: int) -> bool:
    return await committed_offset(bootstrap, group, topic, 0) == offset


def broker_with_retries(infra: Infra, attempts: int) -> tuple[Any, RetryThenDeadLetter]:
    settings = ServiceSettings(kafka_bootstrap_servers=infra.kafka)
    retry = RetryThenDeadLetter(None, RetryPolicy(max_attempts=attempts, backoff_s=0.01))
    broker = make_broker(settings, "parley-test", middlewares=[retry])
    retry.sink = kafka_dead_letter_sink(broker)
    return broker, retry


async def test_poison_record_goes_to_dlq_and_the_partition_keeps_flowing(
    infra: Infra, namespace: str, unique: str
) -> None:
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    group = f"g{unique}"
    broker, _ = broker_with_retries(infra, attempts=3)
    handled: list[bytes] = []
    attempts: dict[bytes, int] = {}

    @broker.subscriber(topic, group_id=group, ack_policy=CONSUMER_ACK_POLICY, auto_offset_reset="earliest")
    async def handle(message: KafkaMessage) -> None:
        attempts[message.body] = attempts.get(message.body, 0) + 1
        if message.body == b"poison":
            raise ValueError("cannot process this one")
        handled.append(message.body)

    await broker.start()
    try:
        for body in (b"first", b"poison", b"last"):
            await broker.publish(body, topic=topic, key=b"same-key", partition=0)
        await eventually(lambda: handled == [b"first", b"last"])
        dead = await read_records(infra.kafka, dlq_name(topic), until=lambda rs: len(rs) >= 1)
        assert attempts[b"poison"] == 3
        headers = {k: v.decode() for k, v in dead[0].headers}
        assert dead[0].value == b"poison"
        assert dead[0].key == b"same-key"
        assert headers["parley_dlq_attempts"] == "3"
        assert headers["parley_dlq_topic"] == topic
        assert headers["parley_dlq_partition"] == "0"
        assert headers["parley_dlq_offset"] == "1"
        assert "ValueError: cannot process this one" in headers["parley_dlq_error"]
        # every offset, the poison one included, is committed: nothing is processed twice
        await eventually(lambda: committed_is(infra.kafka, group, topic, 3))
    finally:
        await broker.stop()


async def test_unreachable_store_is_retried_in_place_and_never_dead_lettered(
    infra: Infra, namespace: str, unique: str
) -> None:
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    broker, _ = broker_with_retries(infra, attempts=2)
    calls: list[bytes] = []

    @broker.subscriber(
        topic, group_id=f"g{unique}", ack_policy=CONSUMER_ACK_POLICY, auto_offset_reset="earliest"
    )
    async def handle(message: KafkaMessage) -> None:
        calls.append(message.body)
        if len(calls) <= 4:  # more failures than max_attempts: still not dead-lettered
            raise pymongo.errors.AutoReconnect("store restarting")

    await broker.start()
    try:
        await broker.publish(b"needs-the-store", topic=topic, key=b"k")
        await eventually(lambda: len(calls) == 5)
        await asyncio.sleep(0.5)
    finally:
        await broker.stop()
    assert calls == [b"needs-the-store"] * 5
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka, group_id=None)
    await consumer.start()
    try:
        dlq = dlq_name(topic)
        parts = [TopicPartition(dlq, p) for p in range(2)]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    assert sum(ends.values()) == 0


async def test_a_record_whose_dead_letter_publish_failed_is_not_committed_and_comes_back(
    infra: Infra, namespace: str, unique: str
) -> None:
    """The DLQ write is part of the work: until it is acknowledged the offset stays put."""
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    broker, retry = broker_with_retries(infra, attempts=1)
    real_sink = retry.sink
    sink_calls = 0

    async def flaky_sink(record: Any, error: BaseException, attempts: int) -> None:
        nonlocal sink_calls
        sink_calls += 1
        if sink_calls == 1:
            raise ConnectionError("DLQ unavailable")
        assert real_sink is not None
        await real_sink(record, error, attempts)

    retry.sink = flaky_sink
    deliveries: list[int] = []

    @broker.subscriber(
        topic, group_id=f"g{unique}", ack_policy=CONSUMER_ACK_POLICY, auto_offset_reset="earliest"
    )
    async def handle(message: KafkaMessage) -> None:
        deliveries.append(message.raw_message.offset)
        raise ValueError("always fails")

    await broker.start()
    try:
        await broker.publish(b"poison", topic=topic, key=b"k", partition=0)
        dead = await read_records(infra.kafka, dlq_name(topic), until=lambda rs: len(rs) >= 1)
    finally:
        await broker.stop()
    assert sink_calls == 2
    assert deliveries == [0, 0]  # the same record, delivered again after the failed DLQ write
    assert dead[0].value == b"poison"
