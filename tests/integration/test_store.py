"""Conversations and idempotency keys on the real MongoDB-wire store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from parley_events import Author, Content, Direction, MessageReceived, Provider
from parley_routing.adapters.repository import ConcurrentUpdate, MongoConversationRepository
from parley_routing.domain.model import Conversation
from parley_routing.handlers import record_message
from parley_shared.mongo import MongoIdempotencyStore

pytestmark = pytest.mark.integration


def message(n: int, conversation_id: str = "conv_1") -> MessageReceived:
    return MessageReceived(
        event_id=f"msg_{n}",
        tenant_id="tenant-a",
        channel_id="channel-a",
        provider=Provider.MESSENGER,
        account_id="page-1",
        conversation_id=conversation_id,
        conversation_key="dm:customer-1",
        direction=Direction.INBOUND,
        author=Author(id="customer-1"),
        content=Content(text=f"message {n}"),
        provider_message_id=f"m_{n}",
        provider_timestamp=datetime(2026, 11, 1, 12, 0, n, tzinfo=UTC),
        delivery_id=f"d{n}",
    )


async def test_a_stored_conversation_reads_back_the_same(mongo_db: Any) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"])
    await repo.ensure_indexes()
    await record_message(message(1), repo)
    await record_message(message(2), repo)
    stored = await repo.get("conv_1")
    assert stored is not None
    assert stored.sequence == 3
    assert stored.version == 2
    assert stored.queue.value == "new"
    assert list(stored.recent) == ["msg_1", "msg_2"]
    assert stored.last_activity_at == datetime(2026, 11, 1, 12, 0, 2, tzinfo=UTC)


async def test_a_stale_write_is_refused(mongo_db: Any) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"])
    await record_message(message(1), repo)
    first = await repo.get("conv_1")
    second = await repo.get("conv_1")
    assert first is not None and second is not None
    first.receive(message(2))
    await repo.save(first)
    second.receive(message(3))
    with pytest.raises(ConcurrentUpdate):
        await repo.save(second)
    stored = await repo.get("conv_1")
    assert stored is not None and list(stored.recent) == ["msg_1", "msg_2"]


async def test_two_writers_opening_the_same_conversation_conflict_instead_of_overwriting(
    mongo_db: Any,
) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"])
    a = Conversation.open(message(1))
    a.receive(message(1))
    b = Conversation.open(message(2))
    b.receive(message(2))
    await repo.save(a)
    with pytest.raises(ConcurrentUpdate):
        await repo.save(b)


async def test_a_redelivered_message_changes_nothing_and_returns_the_same_events(mongo_db: Any) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"])
    first = await record_message(message(1), repo)
    again = await record_message(message(1), repo)
    assert [e.event_id for e in again] == [e.event_id for e in first]
    stored = await repo.get("conv_1")
    assert stored is not None and stored.sequence == 2 and stored.version == 1


async def test_idempotency_store_keeps_the_first_result(mongo_db: Any) -> None:
    store = MongoIdempotencyStore(mongo_db["idempotency"])
    await store.ensure_indexes()
    assert await store.result("cmd-1") is None
    assert await store.record("cmd-1", {"status": "applied", "n": 1}) is True
    assert await store.record("cmd-1", {"status": "other", "n": 2}) is False
    assert await store.result("cmd-1") == {"status": "applied", "n": 1}
