"""Routing's fence: partition ownership epochs (parley_routing.ownership), a batch refused when a
newer owner took one of its partitions, and a fenced batch left uncommitted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faststream.kafka.message import KafkaAckableMessage
from faststream.message import AckStatus
from parley_events import ConversationEvent, MessageReceived
from parley_routing.adapters.stores import Fenced
from parley_routing.entrypoints.subscribers import DropOnRevoke, on_inbound_batch
from parley_routing.ownership import PartitionEpochs
from parley_routing.service import ConversationService
from parley_shared.kafka import RetryPolicy, RetryThenDeadLetter, encode_event, leave_uncommitted
from prometheus_client import REGISTRY

from tests.support.fakes.routing import FakeRepository
from tests.unit.factories import message

pytestmark = pytest.mark.unit

TOPIC = "parley.messages.inbound.v1"


def fenced_so_far(by: str = "store") -> float:
    return REGISTRY.get_sample_value("parley_routing_fenced_batches_total", {"by": by}) or 0.0


class Published:
    def __init__(self) -> None:
        self.events: list[ConversationEvent] = []

    async def __call__(self, event: ConversationEvent) -> None:
        self.events.append(event)


async def owning(repository: FakeRepository, *partitions: int) -> ConversationService:
    """A service whose replica was assigned these partitions of the inbound topic."""
    service = ConversationService(repository, Published())
    await service.ownership.assigned({(TOPIC, p) for p in partitions})
    await service.ownership.of([])  # the epochs taken
    return service


# --- epochs ------------------------------------------------------------------------------------


async def test_each_assignment_takes_a_newer_epoch_and_a_revoke_gives_it_up() -> None:
    repository = FakeRepository()
    first, second = PartitionEpochs(repository), PartitionEpochs(repository)

    await first.assigned({(TOPIC, 0), (TOPIC, 1)})
    assert await first.of([(TOPIC, 0), (TOPIC, 1)]) == {(TOPIC, 0): 1, (TOPIC, 1): 1}
    await second.assigned({(TOPIC, 1)})  # partition 1 moved: its epoch rises
    assert await second.of([(TOPIC, 1)]) == {(TOPIC, 1): 2}

    await first.revoked([(TOPIC, 1)])
    with pytest.raises(Fenced) as refused:
        await first.of([(TOPIC, 0), (TOPIC, 1)])  # no longer held: fenced without asking the store
    assert refused.value.partitions == [(TOPIC, 1)]
    assert await first.of([(TOPIC, 0)]) == {(TOPIC, 0): 1}


async def test_a_consumer_without_rebalances_carries_no_epochs() -> None:
    assert await PartitionEpochs(FakeRepository()).of([(TOPIC, 0)]) is None


class FlakyRepository(FakeRepository):
    """Takes epochs only once released, after failing ``failures`` times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.release = asyncio.Event()

    async def take_epochs(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the store did not answer")
        return await super().take_epochs(topic, partitions)


async def test_a_batch_waits_for_the_epochs_being_taken_which_outlast_a_failing_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("parley_routing.ownership.RETRY_S", (0.0,))
    repository = FlakyRepository(failures=2)
    epochs = PartitionEpochs(repository)
    await epochs.assigned({(TOPIC, 3)})  # returns at once: the listener must not block the consumer

    waiting = asyncio.create_task(epochs.of([(TOPIC, 3)]))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    repository.release.set()
    assert await asyncio.wait_for(waiting, 5) == {(TOPIC, 3): 1}


async def test_a_revoke_while_epochs_are_taken_leaves_the_waiting_batch_fenced() -> None:
    repository = FlakyRepository(failures=0)
    epochs = PartitionEpochs(repository)
    await epochs.assigned({(TOPIC, 3)})
    waiting = asyncio.create_task(epochs.of([(TOPIC, 3)]))
    await asyncio.sleep(0.01)

    await epochs.revoked([(TOPIC, 3)])

    with pytest.raises(Fenced):
        await asyncio.wait_for(waiting, 5)


async def test_the_rebalance_listener_gives_up_revoked_epochs_and_takes_new_ones() -> None:
    service = ConversationService(FakeRepository(), Published())
    listener = DropOnRevoke(service.cache, service.ownership)
    both = {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}

    await listener.on_partitions_assigned(both)
    assert await service.ownership.of([(TOPIC, 0), (TOPIC, 1)]) == {(TOPIC, 0): 1, (TOPIC, 1): 1}
    await listener.on_partitions_revoked(both)  # aiokafka's eager rebalance revokes everything
    await listener.on_partitions_assigned({TopicPartition(TOPIC, 1)})

    assert await service.ownership.of([(TOPIC, 1)]) == {(TOPIC, 1): 2}
    with pytest.raises(Fenced):
        await service.ownership.of([(TOPIC, 0)])


# --- the service ---------------------------------------------------------------------------------


async def test_a_batch_of_the_current_owner_is_written() -> None:
    repository = FakeRepository()
    service = await owning(repository, 0)

    await service.on_owned_batch([message(1)], {"conv_1": (TOPIC, 0)})

    assert repository.stored("conv_1").sequence == 2  # created, message added


async def test_a_batch_whose_partition_a_newer_owner_took_writes_nothing_and_is_counted() -> None:
    repository = FakeRepository()
    old_owner = await owning(repository, 0, 1)
    await old_owner.on_owned_batch([message(1)], {"conv_1": (TOPIC, 0)})
    before = fenced_so_far()

    await owning(repository, 1)  # another replica was assigned partition 1 meanwhile
    batch = [message(2), message(1, conversation_id="conv_2")]
    with pytest.raises(Fenced) as refused:
        await old_owner.on_owned_batch(batch, {"conv_1": (TOPIC, 0), "conv_2": (TOPIC, 1)})

    assert refused.value.partitions == [(TOPIC, 1)]
    assert repository.fenced == 1  # refused by the store, not before it
    assert fenced_so_far() == before + 1
    # nothing of the batch, not even the conversation of the partition still held
    assert repository.stored("conv_1").sequence == 2
    assert "conv_2" not in repository.documents
    assert "conv_1" not in old_owner.cache and "conv_2" not in old_owner.cache


async def test_the_store_refuses_a_batch_that_outlived_its_partition() -> None:
    """The epoch read at the batch's start is what its write carries: a newer owner's epoch taken
    while the batch was being written (its replica not yet told of the revoke) refuses it, and
    what the batch had written is taken back."""
    repository = FakeRepository()
    old_owner = await owning(repository, 0)

    async def meanwhile(_: Any) -> None:
        await owning(repository, 0)

    repository.before_save = meanwhile  # inside the commit, before the epochs are checked
    with pytest.raises(Fenced):
        await old_owner.on_owned_batch([message(1)], {"conv_1": (TOPIC, 0)})

    assert repository.saves == 1 and repository.documents == {}


# --- the subscriber ------------------------------------------------------------------------------


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: list[tuple[str, bytes]]


def record(event: MessageReceived, partition: int, offset: int) -> Record:
    return Record(TOPIC, partition, offset, encode_event(event), [("ce_type", event.event_type.encode())])


def no_retry() -> RetryThenDeadLetter:
    async def sleep(_: float) -> None:
        return None

    return RetryThenDeadLetter(None, RetryPolicy(max_attempts=1, backoff_s=0), sleep=sleep)


async def test_a_batch_for_a_partition_the_replica_gave_up_is_fenced_without_asking_the_store() -> None:
    repository = FakeRepository()
    service = await owning(repository, 0, 1)
    await service.ownership.revoked([(TOPIC, 1)])
    before = fenced_so_far("replica")

    with pytest.raises(Fenced):
        await service.on_owned_batch([message(1)], {"conv_1": (TOPIC, 1)})

    assert fenced_so_far("replica") == before + 1
    assert repository.saves == 0 and repository.fenced == 0


async def test_a_fenced_batch_tells_the_subscriber_not_to_commit_it() -> None:
    repository = FakeRepository()
    old_owner = await owning(repository, 0)
    await owning(repository, 0)

    applied = await on_inbound_batch(old_owner, no_retry(), [record(message(1), 0, 7)])

    assert applied is False
    assert repository.documents == {}


async def test_a_batch_taken_apart_record_by_record_is_fenced_too() -> None:
    """A batch that fails as a whole is retried record by record; those writes carry the epochs
    as well, and the first fenced record stops the rest (none of them is dead-lettered)."""
    repository = FakeRepository()
    old_owner = await owning(repository, 0)
    calls = 0
    real_commit = repository.commit

    async def first_fails(*args: Any, **kwargs: Any) -> set[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await owning(repository, 0)  # meanwhile a newer owner took the partition
            raise ValueError("a record the batch could not apply")
        return await real_commit(*args, **kwargs)

    repository.commit = first_fails  # type: ignore[method-assign]
    records = [record(message(1), 0, 7), record(message(2), 0, 8)]

    assert await on_inbound_batch(old_owner, no_retry(), records) is False
    assert calls == 2  # the batch, then the first record alone (fenced): the second never tried
    assert repository.documents == {}


async def test_a_batch_of_the_current_owner_is_committed() -> None:
    repository = FakeRepository()
    owner = await owning(repository, 0)

    assert await on_inbound_batch(owner, no_retry(), [record(message(1), 0, 7)]) is True
    assert repository.stored("conv_1").sequence == 2


class Consumer:
    """Seeks as aiokafka's consumer does: only on partitions still assigned."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.seeks: dict[TopicPartition, int] = {}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self.assigned:
            raise IllegalStateError(f"No current assignment for partition {partition}")
        self.seeks[partition] = offset

    async def commit(self) -> None:
        raise AssertionError("a fenced batch is never committed")


async def test_an_uncommitted_batch_rewinds_the_partitions_still_assigned_and_leaves_the_rest() -> None:
    kept = TopicPartition(TOPIC, 0)  # partition 1 went to another consumer
    consumer = Consumer({kept})
    records = tuple(
        SimpleNamespace(topic=TOPIC, partition=p, offset=o) for p, o in ((1, 40), (0, 12), (1, 41), (0, 11))
    )
    batch = KafkaAckableMessage(records, b"", consumer=consumer)

    await leave_uncommitted(batch)

    # the lost partition (first in the batch) did not stop the rewind of the one still held
    assert consumer.seeks == {kept: 11}
    assert batch.committed is AckStatus.NACKED
    await batch.ack()  # what FastStream does after the handler: nothing, once nacked
