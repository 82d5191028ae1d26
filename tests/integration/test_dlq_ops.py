"""Operators find, read and redrive dead letters with the CLI; lag is visible per group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka.annotations import KafkaMessage
from parley_events import dlq_name, qualify, topics
from parley_shared.kafka import (
    CONSUMER_ACK_POLICY,
    RetryPolicy,
    RetryThenDeadLetter,
    kafka_dead_letter_sink,
    make_broker,
)
from parley_shared.ops import read_dlq
from parley_shared.settings import ServiceSettings

from tests.conftest import Infra
from tests.support.kafka import eventually, read_records

pytestmark = pytest.mark.integration

PARLEY = str(Path(sys.executable).parent / "parley")


def cli(*args: str, infra: Infra, namespace: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env |= {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
    }
    return subprocess.run([PARLEY, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_a_poison_message_is_listed_inspected_and_redriven_after_the_fix(
    infra: Infra, namespace: str
) -> None:
    topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
    retry = RetryThenDeadLetter(None, RetryPolicy(max_attempts=2, backoff_s=0.01))
    broker = make_broker(
        ServiceSettings(kafka_bootstrap_servers=infra.kafka), "parley-test", middlewares=[retry]
    )
    retry.sink = kafka_dead_letter_sink(broker)
    fixed = False
    processed: list[tuple[bytes, str | None]] = []

    @broker.subscriber(
        topic, group_id=f"{namespace}.worker", ack_policy=CONSUMER_ACK_POLICY, auto_offset_reset="earliest"
    )
    async def handle(message: KafkaMessage) -> None:
        if message.body == b"poison" and not fixed:
            raise ValueError("the normalizer bug of the day")
        processed.append((message.body, message.headers.get("parley_redriven_from")))

    await broker.start()
    try:
        await broker.publish(b"poison", topic=topic, key=b"conv-1")
        await broker.publish(b"fine", topic=topic, key=b"conv-1")
        await read_records(infra.kafka, dlq_name(topic), until=lambda rs: len(rs) == 1)
        await eventually(lambda: processed == [(b"fine", None)])

        listed = cli("dlq", "list", infra=infra, namespace=namespace)
        assert listed.returncode == 0, listed.stderr
        assert f"{dlq_name(topic)}\t1" in listed.stdout.splitlines()

        inspected = cli("dlq", "inspect", topics.MESSAGES_INBOUND.name, infra=infra, namespace=namespace)
        assert inspected.returncode == 0, inspected.stderr
        assert "ValueError: the normalizer bug of the day" in inspected.stdout
        assert f"{topic}[" in inspected.stdout
        assert "attempts=2" in inspected.stdout

        fixed = True
        redriven = cli("dlq", "redrive", topics.MESSAGES_INBOUND.name, infra=infra, namespace=namespace)
        assert redriven.returncode == 0, redriven.stderr
        assert "redrove 1 record(s)" in redriven.stdout
        await eventually(lambda: len(processed) == 2)
        body, origin = processed[1]
        assert body == b"poison"
        assert origin is not None
        assert origin.startswith(dlq_name(topic))

        await eventually(lambda: "\t0" in cli("lag", infra=infra, namespace=namespace).stdout)
        lag = cli("lag", infra=infra, namespace=namespace)
        assert f"{namespace}.worker\t{topic}\t0" in lag.stdout.splitlines()
    finally:
        await broker.stop()


async def test_reading_a_dlq_goes_to_its_end_past_offsets_without_records(
    infra: Infra, namespace: str
) -> None:
    """A transaction's commit marker takes an offset of its own after the last record: the read
    ends there, by its position, and has every record; it never stops early and says less."""
    dlq = dlq_name(qualify(topics.MESSAGES_INBOUND.name, namespace))
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, transactional_id=f"{namespace}.tx")
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(3):
                await producer.send(dlq, f"letter {n}".encode(), key=b"k", partition=0)
            await producer.send(dlq, b"after", key=b"k", partition=1)
    finally:
        await producer.stop()

    letters = await read_dlq(infra.kafka, dlq)
    assert sorted(letter.value for letter in letters) == [b"after", b"letter 0", b"letter 1", b"letter 2"]
    assert len(await read_dlq(infra.kafka, dlq, limit=2)) == 2

    # out of time before the end: an error that says where it stopped, not a short list
    with pytest.raises(TimeoutError, match=r"not read to its end within 0 s: \[0\] at 0 of 4"):
        await read_dlq(infra.kafka, dlq, timeout_s=0)
