"""Operations on the running system: dead-letter queues and consumer lag (used by the CLI)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from parley_events import all_topics

from parley_shared.kafka import FROM_THE_BEGINNING

DLQ_HEADER_PREFIX = "parley_dlq_"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record in a DLQ, with why it is there and where it came from."""

    dlq: str
    partition: int
    offset: int
    key: str | None
    error: str
    attempts: str
    origin: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def dlq_topics(namespace: str = "") -> list[str]:
    return [spec.qualified(namespace) for spec in all_topics() if spec.name.endswith(".dlq")]


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def dlq_sizes(bootstrap: str, namespace: str = "") -> dict[str, int]:
    """How many records each DLQ holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        sizes: dict[str, int] = {}
        for topic in dlq_topics(namespace):
            tps = await _partitions(consumer, topic)
            if not tps:
                continue
            ends = await consumer.end_offsets(tps)
            begins = await consumer.beginning_offsets(tps)
            sizes[topic] = sum(ends[tp] - begins[tp] for tp in tps)
        return sizes
    finally:
        await consumer.stop()


READ_TIMEOUT_S = 30.0
"""How long :func:`read_dlq` may take to read a DLQ to its end before it gives up with an error."""


async def read_dlq(
    bootstrap: str, dlq: str, limit: int = 100, timeout_s: float = READ_TIMEOUT_S
) -> list[DeadLetter]:
    """The records of one DLQ, oldest first (up to ``limit``).

    Reads until every partition's end (as it was when the read began) or ``limit``: an empty
    poll is not the end (a busy broker can answer a fetch with nothing). :class:`TimeoutError`
    when that takes longer than ``timeout_s``, never a shorter list than the DLQ holds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=FROM_THE_BEGINNING,
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, dlq)
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[DeadLetter] = []
        pending = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        deadline = time.monotonic() + timeout_s
        while pending and len(found) < limit:
            if time.monotonic() >= deadline:
                where = [
                    f"[{tp.partition}] at {await consumer.position(tp)} of {ends[tp]}"
                    for tp in sorted(pending)
                ]
                raise TimeoutError(f"{dlq} not read to its end within {timeout_s:g} s: {', '.join(where)}")
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:  # dead-lettered after the read began
                        continue
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    found.append(
                        DeadLetter(
                            dlq=dlq,
                            partition=record.partition,
                            offset=record.offset,
                            key=record.key.decode(errors="replace") if record.key else None,
                            error=headers.get("parley_dlq_error", ""),
                            attempts=headers.get("parley_dlq_attempts", ""),
                            origin=f"{headers.get('parley_dlq_topic')}[{headers.get('parley_dlq_partition')}]"
                            f"@{headers.get('parley_dlq_offset')}",
                            value=record.value or b"",
                            headers=tuple(record.headers),
                        )
                    )
            # by position, not by the last record: offsets a record does not hold (transaction
            # markers, compacted records) end a partition too
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return found[:limit]
    finally:
        await consumer.stop()


async def redrive(bootstrap: str, dlq: str, limit: int = 1000) -> int:
    """Publish a DLQ's records back to their original topic (after the cause was fixed).

    The DLQ keeps its records (Kafka topics are append-only): consumers are idempotent, so a
    record redriven twice is applied once. Returns how many were sent back.
    """
    letters = await read_dlq(bootstrap, dlq, limit)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for letter in letters:
            origin = dict(letter.headers).get("parley_dlq_topic", b"").decode() or dlq.removesuffix(".dlq")
            headers = [(k, v) for k, v in letter.headers if not k.startswith(DLQ_HEADER_PREFIX)]
            headers.append(("parley_redriven_from", f"{dlq}[{letter.partition}]@{letter.offset}".encode()))
            await producer.send_and_wait(
                origin, letter.value, key=letter.key.encode() if letter.key else None, headers=headers
            )
        return len(letters)
    finally:
        await producer.stop()


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    topic: str
    lag: int


async def consumer_lag(bootstrap: str, prefix: str = "parley") -> list[GroupLag]:
    """Lag per consumer group (of the given prefix) and topic: end offsets minus committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="parley-admin")
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(f"{prefix}.")]
        result: list[GroupLag] = []
        for group in sorted(groups):
            offsets: dict[Any, Any] = await admin.list_consumer_group_offsets(group)
            by_topic: dict[str, int] = {}
            if offsets:
                ends = await consumer.end_offsets(list(offsets))
                for tp, meta in offsets.items():
                    by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, ends[tp] - meta.offset)
            result.extend(GroupLag(group, topic, lag) for topic, lag in sorted(by_topic.items()))
        return result
    finally:
        await consumer.stop()
        await admin.close()
