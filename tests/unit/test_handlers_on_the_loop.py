"""A Parley subscriber handles its records on the event loop: no worker thread per record or batch.

FastDepends runs a synchronous decoder or context parameter in a worker thread (anyio's
``to_thread``). Each hop costs a queue put, a wake-up and the GIL handed over and back, for
every record a per-record subscriber handles and every batch a batch subscriber takes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage as FastStreamsOwnMessage
from parley_events import ChannelSnapshot, ChannelStatus, Provider
from parley_shared.kafka import (
    KafkaMessage,
    RetryPolicy,
    RetryThenDeadLetter,
    acknowledge_other_types,
    batch_records,
    encode_event,
    of_type,
    service_router,
    typed_batches,
    undecoded,
)

pytestmark = pytest.mark.unit

TOPIC = "parley.channels.v1"


def snapshot(revision: int) -> bytes:
    return encode_event(
        ChannelSnapshot(
            channel_id="ch-1",
            tenant_id="t-1",
            provider=Provider.MESSENGER,
            account_id="page-1",
            status=ChannelStatus.ACTIVE,
            revision=revision,
        )
    )


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions FastDepends handed to a worker thread."""
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        named = func.func if isinstance(func, functools.partial) else func
        hops.append(getattr(named, "__qualname__", repr(named)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return hops


async def no_sleep(_: float) -> None:
    return None


async def publish_both(broker: KafkaBroker) -> None:
    async with TestKafkaBroker(broker) as test_broker:
        for event_type, revision in ((ChannelSnapshot.event_type, 7), ("parley.other.v1", 8)):
            await test_broker.publish(snapshot(revision), topic=TOPIC, headers={"ce_type": event_type})


async def test_typed_records_other_types_and_typed_batches_are_handled_without_a_thread(
    thread_hops: list[str],
) -> None:
    per_record: list[tuple[int, str]] = []
    batched: list[int] = []
    router = service_router("")
    subscriber = router.subscriber(TOPIC, group_id="per-record")

    @subscriber(filter=of_type(ChannelSnapshot))
    async def on_record(event: ChannelSnapshot, message: KafkaMessage) -> None:
        per_record.append((event.revision, message.headers["ce_type"]))

    acknowledge_other_types(subscriber)

    async def on_snapshot(event: ChannelSnapshot) -> None:
        batched.append(event.revision)

    retry = RetryThenDeadLetter(
        lambda *_: no_sleep(0), RetryPolicy(max_attempts=1, backoff_s=0), sleep=no_sleep
    )
    typed_batches(
        router,
        TOPIC,
        group_id="batches",
        retry=retry,
        handlers=[(ChannelSnapshot, on_snapshot)],
        title="snapshots",
        description="d",
    )
    broker = KafkaBroker()
    broker.include_router(router)

    await publish_both(broker)

    assert per_record == [(7, ChannelSnapshot.event_type)]
    assert batched == [7]
    assert thread_hops == []


async def test_a_batch_handler_taking_the_message_gets_its_records_without_a_thread(
    thread_hops: list[str],
) -> None:
    seen: list[int] = []
    router = service_router("")

    @router.subscriber(TOPIC, group_id="g", batch=True, decoder=undecoded)
    async def on_batch(batch: Any, message: KafkaMessage) -> None:
        seen.extend(len(record.value) for record in batch_records(message))

    broker = KafkaBroker()
    broker.include_router(router)
    await publish_both(broker)

    assert seen == [len(snapshot(7)), len(snapshot(8))]
    assert thread_hops == []


async def test_faststreams_own_message_parameter_takes_a_thread_so_parley_has_its_own(
    thread_hops: list[str],
) -> None:
    """The counter sees a hop when there is one: FastStream's own annotation, for contrast."""
    got: list[str] = []
    router = service_router("")

    @router.subscriber(TOPIC, group_id="g")
    async def on_record(body: Any, message: FastStreamsOwnMessage) -> None:
        got.append(message.headers["ce_type"])

    broker = KafkaBroker()
    broker.include_router(router)
    await publish_both(broker)

    assert got == [ChannelSnapshot.event_type, "parley.other.v1"]
    assert thread_hops == ["Context.use"] * 2


def test_no_service_handler_takes_faststreams_own_message_parameter() -> None:
    """Parley's code imports the message parameter from parley_shared.kafka only."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for tree in ("services", "shared")
        for path in (root / tree).rglob("*.py")
        if "faststream.kafka.annotations import" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
