"""A producer whose state the cluster lost is replaced, so the service publishes again; sends in
flight keep their order.

Killing every Kafka node at once (``make fault``'s Kafka fault on three brokers) left ingest
answering 503 for good: the restarted cluster answered the idempotent producer's next batch with
OUT_OF_ORDER_SEQUENCE_NUMBER, and aiokafka stops a producer's sender on that error, so every later
send failed the same way. Here the broker gives the same answer for real: the producer's next
sequence number is moved ahead of what the broker holds for it.
"""

from __future__ import annotations

import aiokafka.errors
import pytest
from faststream.kafka import KafkaBroker
from parley_events import ChannelSnapshot, ChannelStatus, Provider, qualify, topics
from parley_shared.kafka import EventPublisher, SendWindow, current_producer, make_broker
from parley_shared.settings import ServiceSettings

from tests.conftest import Infra
from tests.support.kafka import read_records

pytestmark = pytest.mark.integration


def snapshot(n: int) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id="ch-renewal",
        tenant_id="tenant-renewal",
        provider=Provider.MESSENGER,
        account_id="page-renewal",
        status=ChannelStatus.ACTIVE,
        revision=n,
    )


def snapshot_publisher(infra: Infra, namespace: str, client_id: str) -> tuple[KafkaBroker, EventPublisher]:
    """A broker (not yet connected) and a publisher of channel snapshots through it."""
    broker = make_broker(ServiceSettings(kafka_bootstrap_servers=infra.kafka), client_id)
    publisher = EventPublisher(
        broker, source="/parley/test", namespace=namespace, declared=frozenset({ChannelSnapshot.event_type})
    )
    return broker, publisher


async def test_a_publish_after_an_out_of_order_sequence_goes_through_a_new_producer(
    infra: Infra, namespace: str
) -> None:
    broker, publisher = snapshot_publisher(infra, namespace, "parley-test-renewal")
    await broker.connect()
    try:
        await publisher.publish(snapshot(1), event_id="e1")
        first = current_producer(broker)
        assert first is not None
        # as if the broker had lost this producer's last batches: its next sequence is far ahead
        sequences = first._txn_manager._sequence_numbers  # type: ignore[attr-defined]
        assert sequences, "the first publish numbered no batch"
        for partition in list(sequences):
            sequences[partition] += 1000
        with pytest.raises(aiokafka.errors.OutOfOrderSequenceNumber):
            await publisher.publish(snapshot(2), event_id="e2")
        await publisher.publish(snapshot(3), event_id="e3")  # raised the same error before the renewal
        assert current_producer(broker) is not first
        await publisher.publish(snapshot(4), event_id="e4")
    finally:
        await broker.stop()
    records = await read_records(
        infra.kafka, qualify(topics.CHANNELS.name, namespace), until=lambda rs: len(rs) >= 3
    )
    revisions = [ChannelSnapshot.model_validate_json(r.value).revision for r in records]
    assert revisions == [1, 3, 4]  # the refused batch was never written


async def test_sends_in_flight_keep_their_order_and_are_confirmed_together(
    infra: Infra, namespace: str
) -> None:
    broker, publisher = snapshot_publisher(infra, namespace, "parley-test-in-flight")
    await broker.connect()
    try:
        window = SendWindow(publisher)
        for n in range(1, 501):
            await window.publish(snapshot(n), f"e{n}")
        assert not all(s.ack.done() for s in window.pending), (
            "every send was answered before the window waited"
        )
        await window.confirm()
    finally:
        await broker.stop()
    records = await read_records(
        infra.kafka, qualify(topics.CHANNELS.name, namespace), until=lambda rs: len(rs) >= 500
    )
    assert [ChannelSnapshot.model_validate_json(r.value).revision for r in records] == list(range(1, 501))
