"""Batch subscribers of some event types: each record handled alone, in order, one commit a batch."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.specification import AsyncAPI
from parley_events import (
    ChannelSnapshot,
    ChannelStatus,
    ConversationReadRequested,
    MessageReceived,
    Provider,
)
from parley_shared.kafka import (
    RetryPolicy,
    RetryThenDeadLetter,
    encode_event,
    handle_typed_records,
    service_router,
    typed_batches,
)

pytestmark = pytest.mark.unit


def snapshot(revision: int) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id="ch-1",
        tenant_id="t-1",
        provider=Provider.MESSENGER,
        account_id="page-1",
        status=ChannelStatus.ACTIVE,
        revision=revision,
    )


def record(event_type: str | None, value: bytes, offset: int) -> SimpleNamespace:
    headers = [("ce_type", event_type.encode())] if event_type else []
    return SimpleNamespace(topic="t", partition=0, offset=offset, headers=headers, value=value)


class Sink:
    def __init__(self) -> None:
        self.dead: list[tuple[int, str]] = []

    async def __call__(self, rec: Any, error: BaseException, attempts: int) -> None:
        self.dead.append((rec.offset, type(error).__name__))


async def no_sleep(_: float) -> None:
    return None


async def test_handled_types_are_decoded_and_handled_in_order_and_others_passed_over() -> None:
    seen: list[tuple[str, int]] = []

    async def on_snapshot(event: ChannelSnapshot) -> None:
        seen.append(("snapshot", event.revision))

    handlers = {ChannelSnapshot.event_type: (ChannelSnapshot, on_snapshot)}
    retry = RetryThenDeadLetter(Sink(), RetryPolicy(max_attempts=2, backoff_s=0), sleep=no_sleep)
    records = [
        record(ChannelSnapshot.event_type, encode_event(snapshot(1)), 0),
        record("parley.something.else.v1", b"not even json", 1),  # not decoded: no DLQ
        record(None, b"{}", 2),
        record(ChannelSnapshot.event_type, encode_event(snapshot(2)), 3),
    ]

    await handle_typed_records(retry, handlers, records)

    assert seen == [("snapshot", 1), ("snapshot", 2)]
    assert retry.sink.dead == []  # type: ignore[union-attr]


async def test_a_bad_record_is_dead_lettered_alone_and_the_batch_goes_on() -> None:
    seen: list[int] = []
    failures = {2: 0}

    async def on_snapshot(event: ChannelSnapshot) -> None:
        if event.revision == 2:
            failures[2] += 1
            raise RuntimeError("this one always fails")
        seen.append(event.revision)

    sink = Sink()
    retry = RetryThenDeadLetter(sink, RetryPolicy(max_attempts=3, backoff_s=0), sleep=no_sleep)
    records = [
        record(ChannelSnapshot.event_type, b'{"broken": ', 0),  # does not decode: at once
        record(ChannelSnapshot.event_type, encode_event(snapshot(2)), 1),  # fails three times
        record(ChannelSnapshot.event_type, encode_event(snapshot(3)), 2),
    ]

    await handle_typed_records(retry, {ChannelSnapshot.event_type: (ChannelSnapshot, on_snapshot)}, records)

    assert seen == [3]
    assert failures[2] == 3
    assert sink.dead == [(0, "ValidationError"), (1, "RuntimeError")]


async def test_a_typed_batch_subscriber_on_the_broker_handles_only_its_types() -> None:
    got: list[int] = []

    async def on_snapshot(event: ChannelSnapshot) -> None:
        got.append(event.revision)

    router = service_router("")
    retry = RetryThenDeadLetter(Sink(), RetryPolicy(max_attempts=1, backoff_s=0), sleep=no_sleep)
    typed_batches(
        router,
        "parley.channels.v1",
        group_id="g",
        retry=retry,
        handlers=[(ChannelSnapshot, on_snapshot)],
        title="snapshots",
        description="d",
    )
    broker = KafkaBroker()
    broker.include_router(router)
    async with TestKafkaBroker(broker) as test_broker:
        for event_type, revision in ((ChannelSnapshot.event_type, 7), ("parley.other.v1", 8)):
            await test_broker.publish(
                encode_event(snapshot(revision)), topic="parley.channels.v1", headers={"ce_type": event_type}
            )
    assert got == [7]


def test_the_asyncapi_document_names_every_handled_event_type() -> None:
    async def ignore(_: Any) -> None:
        return None

    router = service_router("")
    retry = RetryThenDeadLetter(Sink(), RetryPolicy(max_attempts=1, backoff_s=0), sleep=no_sleep)
    typed_batches(
        router,
        "parley.conversations.v1",
        group_id="g",
        retry=retry,
        handlers=[(ConversationReadRequested, ignore), (MessageReceived, ignore)],
        title="two-types",
        description="d",
    )
    broker = KafkaBroker()
    broker.include_router(router)
    document = AsyncAPI(broker, schema_version="3.0.0").to_specification().to_json()
    assert "ConversationReadRequested" in document and "MessageReceived" in document
