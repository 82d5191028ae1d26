"""Conversations and idempotency keys on the real MongoDB-wire store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from parley_events import Author, Content, Direction, MessageReceived, Provider
from parley_routing.adapters.stores import ConcurrentUpdate, MongoConversationRepository
from parley_routing.domain.model import Conversation
from parley_routing.service import ConversationService, record_message
from parley_shared import mongo
from parley_shared.mongo import MongoIdempotencyStore
from pymongo import UpdateOne

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


async def test_a_batch_save_claims_each_version_once_and_reports_who_lost(mongo_db: Any) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"])
    await repo.ensure_indexes()
    await record_message(message(1, "conv_a"), repo)
    await record_message(message(1, "conv_b"), repo)
    batch = await repo.get_many(["conv_a", "conv_b", "conv_new"])
    assert sorted(batch) == ["conv_a", "conv_b"]
    stale_b = await repo.get("conv_b")
    assert stale_b is not None
    stale_b.receive(message(7, "conv_b"))
    await repo.save(stale_b)  # someone else moves conv_b on first

    fresh = Conversation.open(message(3, "conv_new"))
    fresh.receive(message(3, "conv_new"))
    batch["conv_a"].receive(message(2, "conv_a"))
    batch["conv_b"].receive(message(2, "conv_b"))
    lost = await repo.save_many([batch["conv_a"], batch["conv_b"], fresh])

    assert lost == {"conv_b"}
    assert batch["conv_b"].version == 1  # left as read, ready to be reloaded
    stored = await repo.get_many(["conv_a", "conv_b", "conv_new"])
    assert (stored["conv_a"].version, list(stored["conv_a"].recent)) == (2, ["msg_1", "msg_2"])
    assert (stored["conv_b"].version, list(stored["conv_b"].recent)) == (2, ["msg_1", "msg_7"])
    assert (stored["conv_new"].version, list(stored["conv_new"].recent)) == (1, ["msg_3"])


async def test_a_batch_rolls_forward_a_claim_whose_document_write_was_lost(mongo_db: Any) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"], mongo_db["conversation_history"])
    await repo.ensure_indexes()
    await record_message(message(1), repo)
    conversation = await repo.get("conv_1")
    assert conversation is not None
    conversation.receive(message(2))
    conversation.version += 1
    # a writer that died after its version claim, before writing the document itself
    await repo.documents.commits.insert_one(
        {"_id": "conv_1:2", "doc_id": "conv_1", "version": 2, "doc": conversation.to_document()}
    )

    async def publish(_: Any) -> None:
        return None

    # the batch reads the stale document, loses the claim of version 2, reloads rolling forward
    await ConversationService(repo, publish).on_messages([message(3)])

    stored = await repo.get("conv_1")
    assert stored is not None
    assert (stored.version, list(stored.recent)) == (3, ["msg_1", "msg_2", "msg_3"])
    projection = await mongo_db["conversations"].find_one({"_id": "conv_1"})
    assert projection["version"] == 3


BULK_WRITERS = 6
STATEMENTS_PER_WRITER = 200


async def test_concurrent_bulk_writers_never_exhaust_ferretdbs_connection_pool(mongo_db: Any) -> None:
    """FerretDB 1.24 (SQLite) holds a connection for every matching statement of a write command
    until the command ends, 100 per database: six writers of 50-statement chunks at once never got
    an answer, and nor did later writes to the database. Chunks of ``MAX_WRITE_STATEMENTS``, at
    most ``WRITE_COMMANDS_IN_FLIGHT`` of them at once, keep every writer answered. A hang fails
    the test at its deadline instead of hanging the suite."""
    collection = mongo_db["bulk_writes"]
    await collection.insert_many(
        [{"_id": f"w{w}-{i}", "n": 0} for w in range(BULK_WRITERS) for i in range(STATEMENTS_PER_WRITER)]
    )

    async def writer(w: int) -> int:
        updates = [UpdateOne({"_id": f"w{w}-{i}"}, {"$inc": {"n": 1}}) for i in range(STATEMENTS_PER_WRITER)]
        return await mongo.bulk_write_chunked(collection, updates, ordered=False)

    try:
        async with asyncio.timeout(120):
            matched = await asyncio.gather(*(writer(w) for w in range(BULK_WRITERS)))
    except TimeoutError:
        pytest.fail(
            f"{BULK_WRITERS} concurrent bulk writers in chunks of {mongo.MAX_WRITE_STATEMENTS} "
            f"({mongo.WRITE_COMMANDS_IN_FLIGHT} at once) got no answer within 120 s"
        )
    assert matched == [STATEMENTS_PER_WRITER] * BULK_WRITERS
    assert await collection.count_documents({"n": 1}) == BULK_WRITERS * STATEMENTS_PER_WRITER
    # the database still takes writes
    assert (await collection.update_one({"_id": "w0-0"}, {"$inc": {"n": 1}})).matched_count == 1


@pytest.mark.timeout(60)
async def test_a_batch_of_a_hundred_and_fifty_conversations_is_saved_and_marked_published(
    mongo_db: Any,
) -> None:
    # FerretDB 1.24 never answers a write command of 100+ statements: the writes go out in chunks
    repo = MongoConversationRepository(mongo_db["conversations"], mongo_db["conversation_history"])
    await repo.ensure_indexes()
    conversations = []
    for n in range(150):
        conversation = Conversation.open(message(1, f"conv_{n}"))
        conversation.receive(message(1, f"conv_{n}"))
        conversations.append(conversation)

    assert await repo.save_many(conversations) == set()
    await repo.record_history([e for c in conversations for e in c.unpublished()])
    await repo.mark_published_many([(c.id, c.sequence, c.version) for c in conversations])

    stored = await repo.get_many([c.id for c in conversations])
    assert len(stored) == 150
    assert all(c.published_sequence == 2 and c.version == 1 for c in stored.values())
    assert await mongo_db["conversation_history"].count_documents({}) == 300
    assert await mongo_db["conversations"].count_documents({"outbox_pending": True}) == 0


async def test_marking_published_keeps_the_outbox_open_for_a_newer_change(mongo_db: Any) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"])
    await repo.ensure_indexes()
    await record_message(message(1), repo)  # version 1, events 1-2, not yet published
    newer = await repo.get("conv_1")
    assert newer is not None
    newer.receive(message(2))
    await repo.save(newer)  # version 2 (event 3) saved before version 1's publish is marked

    await repo.mark_published_many([("conv_1", 2, 1)])

    stored = await mongo_db["conversations"].find_one({"_id": "conv_1"})
    assert (stored["published_sequence"], stored["outbox_pending"]) == (2, True)
    assert [c.id for c in await repo.pending_outbox()] == ["conv_1"]

    await repo.mark_published_many([("conv_1", 3, 2)])
    assert await repo.pending_outbox() == []

    await repo.mark_published_many([("conv_1", 2, 1)])  # a late, older mark moves nothing back
    stored = await mongo_db["conversations"].find_one({"_id": "conv_1"})
    assert stored["published_sequence"] == 3
    # ...though it may reopen the outbox (it cannot tell the newer change was published): the
    # relay then finds nothing to publish and settles it
    published: list[Any] = []

    async def publish(event: Any) -> None:
        published.append(event)

    await ConversationService(repo, publish).relay_outbox()
    assert published == []
    assert await repo.pending_outbox() == []


async def test_the_relay_publishes_a_claim_whose_writer_died_and_settles_its_flag(mongo_db: Any) -> None:
    repo = MongoConversationRepository(mongo_db["conversations"], mongo_db["conversation_history"])
    await repo.ensure_indexes()
    published: list[Any] = []

    async def publish(event: Any) -> None:
        published.append(event)

    service = ConversationService(repo, publish)
    await service.on_messages([message(1)])  # version 1, events 1-2, published and marked
    conversation = await repo.get("conv_1")
    assert conversation is not None
    conversation.receive(message(2))
    conversation.version += 1
    # a writer that claimed version 2 and died before writing the document or publishing
    await repo.documents.commits.insert_one(
        {"_id": "conv_1:2", "doc_id": "conv_1", "version": 2, "doc": conversation.to_document()}
    )
    await repo.mark_published_many([("conv_1", 2, 1)])  # a late mark sees the claim: reopens
    assert [c.id for c in await repo.pending_outbox()] == ["conv_1"]
    published.clear()

    assert await service.relay_outbox() == 1

    assert [e.sequence for e in published] == [3]
    assert await repo.pending_outbox() == []
