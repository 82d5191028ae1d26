"""Helpers for tests that talk to the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.structs import TopicPartition
from parley_events import ChannelSnapshot, ChannelStatus, Provider, qualify, topics


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[Any, Any]]], bool],
    timeout: float = 30.0,
) -> list[ConsumerRecord[Any, Any]]:
    """Read a topic from the beginning until ``until(records)`` holds; fail on timeout."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s reading {topic}; got {len(records)} record(s): "
                    + repr([(r.key, r.value[:200] if r.value else None) for r in records])
                )
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def count_records(bootstrap: str, topic: str) -> int:
    """How many records a topic holds (end minus beginning offsets, all partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - begins[tp] for tp in tps)
    finally:
        await consumer.stop()


async def publish_channel(
    bootstrap: str,
    namespace: str,
    *,
    channel_id: str,
    tenant_id: str,
    account_id: str,
    provider: Provider = Provider.MESSENGER,
    revision: int = 1,
) -> ChannelSnapshot:
    """Stand in for onboarding: publish a channel snapshot on the compacted channels topic."""
    snapshot = ChannelSnapshot(
        channel_id=channel_id,
        tenant_id=tenant_id,
        provider=provider,
        account_id=account_id,
        status=ChannelStatus.ACTIVE,
        revision=revision,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            qualify(topics.CHANNELS.name, namespace),
            snapshot.model_dump_json().encode(),
            key=channel_id.encode(),
        )
    finally:
        await producer.stop()
    return snapshot


async def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Await ``check()`` until it returns a truthy value; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def publish_events(bootstrap: str, namespace: str, *events: Any, source: str = "/parley/test") -> None:
    """Publish events as Parley does: on their catalog topic, CloudEvents headers, keyed."""
    from datetime import UTC, datetime

    from parley_shared.kafka import encode_event, event_headers

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            event_id = getattr(event, "event_id", None) or getattr(event, "reply_id", None) or event.key()
            headers = event_headers(event, event_id=event_id, source=source, time=datetime.now(UTC))
            await producer.send_and_wait(
                qualify(event.topic.name, namespace),
                encode_event(event),
                key=event.key().encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
    finally:
        await producer.stop()
