"""Routing's in-memory conversations (parley_routing.cache) and the service that uses them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from parley_events import ConversationEvent, ReplySent, SenderType
from parley_routing.cache import ConversationCache
from parley_routing.domain.model import Conversation
from parley_routing.service import ConversationService

from tests.support.fakes.routing import FakeRepository
from tests.unit.factories import T0, message

pytestmark = pytest.mark.unit


def conversation(conversation_id: str) -> Conversation:
    return Conversation.open(message(1, conversation_id=conversation_id))


class CountingRepository(FakeRepository):
    """The fake, counting which conversations each batch read from the store."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, Conversation]:
        self.reads.append(sorted(conversation_ids))
        return await super().get_many(conversation_ids)


class Publisher:
    def __init__(self) -> None:
        self.published: list[ConversationEvent] = []
        self.failing = False

    async def __call__(self, event: ConversationEvent) -> None:
        if self.failing:
            raise ConnectionError("the broker did not answer")
        self.published.append(event)


def test_each_partition_keeps_its_most_recently_used_conversations_up_to_the_bound() -> None:
    cache = ConversationCache(per_partition=2)
    partitions = {"a": 0, "b": 0, "c": 0, "x": 1}
    cache.keep(partitions, [conversation("a"), conversation("b"), conversation("x")], cache.generation)
    cache.keep(partitions, [conversation("a")], cache.generation)  # a used again: b is now the oldest
    cache.keep(partitions, [conversation("c")], cache.generation)

    assert "b" not in cache
    assert {"a", "c", "x"} <= set(cache.take(["a", "b", "c", "x"]))
    assert len(cache) == 0  # taken out


def test_a_revoked_partition_is_dropped_and_the_others_kept() -> None:
    cache = ConversationCache()
    partitions = {"a": 0, "b": 1, "c": 2}
    cache.keep(partitions, [conversation(i) for i in partitions], cache.generation)

    cache.drop_partitions([1])
    assert set(cache.take(["a", "b"])) == {"a"}
    cache.keep_only([0])  # an assignment without partition 2
    assert "c" not in cache


def test_a_batch_that_started_before_a_revoke_keeps_nothing() -> None:
    cache = ConversationCache()
    started = cache.generation
    cache.drop_partitions([0])  # revoked while the batch ran
    cache.keep({"a": 0}, [conversation("a")], started)
    assert len(cache) == 0


async def test_a_batch_reads_from_the_store_only_the_conversations_not_kept() -> None:
    repository = CountingRepository()
    service = ConversationService(repository, Publisher(), lambda: T0)
    partitions = {"conv_a": 0, "conv_b": 1}

    await service.on_messages([message(1, conversation_id="conv_a")], partitions)
    await service.on_messages(
        [message(2, conversation_id="conv_a"), message(1, conversation_id="conv_b")], partitions
    )
    await service.on_messages(
        [message(3, conversation_id="conv_a"), message(2, conversation_id="conv_b")], partitions
    )

    assert repository.reads == [["conv_a"], ["conv_b"]]
    assert repository.stored("conv_a").sequence == 4  # created and three messages


async def test_a_conversation_another_replica_changed_is_read_again_and_nothing_is_lost() -> None:
    repository = CountingRepository()
    publisher = Publisher()
    ours = ConversationService(repository, publisher, lambda: T0)
    theirs = ConversationService(repository, publisher, lambda: T0)  # a replica handed the partition
    await ours.on_messages([message(1, conversation_id="conv_a")], {"conv_a": 0})

    await theirs.on_messages([message(2, conversation_id="conv_a")], {"conv_a": 0})
    await ours.on_messages([message(3, conversation_id="conv_a")], {"conv_a": 0})  # ours is stale

    stored = repository.stored("conv_a")
    assert stored.sequence == 4 and stored.version == 3
    sequences = [e.sequence for e in publisher.published]
    assert sequences == [1, 2, 3, 4]  # each once, nothing overwritten
    assert "conv_a" in ours.cache  # kept again, as now committed


async def test_a_change_through_another_path_drops_the_kept_copy() -> None:
    repository = CountingRepository()
    service = ConversationService(repository, Publisher(), lambda: T0)
    await service.on_messages([message(1, conversation_id="conv_a")], {"conv_a": 0})
    assert "conv_a" in service.cache

    sent = ReplySent(
        reply_id="rpl_1",
        conversation_id="conv_a",
        tenant_id="ten_acme",
        channel_id="chn_1",
        sender_type=SenderType.HUMAN,
        agent_id="agent_a",
        provider_message_id="m_reply_1",
        text="hello",
        sent_at=T0,
    )
    await service.on_reply_sent(sent, None)
    assert "conv_a" not in service.cache


async def test_a_batch_whose_publish_fails_keeps_nothing() -> None:
    repository = CountingRepository()
    publisher = Publisher()
    service = ConversationService(repository, publisher, lambda: T0)
    publisher.failing = True
    with pytest.raises(ConnectionError):
        await service.on_messages([message(1, conversation_id="conv_a")], {"conv_a": 0})
    assert len(service.cache) == 0
