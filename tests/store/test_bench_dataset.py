"""The benchmarks' data set (bench/dataset.py), loaded in bulk at a small size on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from parley_events import Author, Content, ConversationEvent, Direction, MessageReceived, Provider, Queue
from parley_routing.service import ConversationService
from parley_shared.store import Store

from bench import dataset
from bench.raw_consumers import MongoLoop, PostgresLoop

pytestmark = pytest.mark.store


async def test_the_data_set_is_routings_own_rows_spread_over_the_channels(store: Store) -> None:
    written = await dataset.load(store, count=45, events=4)

    assert written == 45 * 4  # created and three more events each
    repository = dataset.repository_of(store)
    assert await repository.pending_outbox() == []  # everything marked published
    history = await repository.history_of("conv-data-44")
    assert [h["sequence"] for h in history] == [1, 2, 3, 4]
    assert history[0]["type"] == "parley.conversation.created.v1"
    stored = await repository.get_many([f"conv-data-{n}" for n in range(45)])
    assert len(stored) == 45
    assert {c.sequence for c in stored.values()} == {4}
    assert {c.version for c in stored.values()} == {1}
    assert {c.channel_id for c in stored.values()} == {dataset.channel_id(n) for n in range(20)}
    page = await repository.list_visible("tenant-bench", [dataset.channel_id(3)], limit=10)
    assert sorted(c.id for c in page.items) == ["conv-data-23", "conv-data-3", "conv-data-43"]
    # the inbox has queues and owners to filter on
    pending = await repository.list_visible("tenant-bench", [dataset.channel_id(2)], queue=Queue.PENDING)
    assert [c.id for c in pending.items] == ["conv-data-42", "conv-data-22", "conv-data-2"]
    owned = await repository.list_visible(
        "tenant-bench", [dataset.channel_id(n) for n in range(20)], owner_id=dataset.owner_of(1)
    )
    assert sorted(c.id for c in owned.items) == ["conv-data-1", "conv-data-2"]


def _message(n: int, text: str = "where is it now?") -> MessageReceived:
    channel = dataset.channel_id(n)
    return MessageReceived(
        event_id=f"msg_t{n}",
        tenant_id=dataset.TENANT,
        channel_id=channel,
        provider=Provider.MESSENGER,
        account_id=f"page-{channel}",
        conversation_id=f"conv-data-{n}",
        conversation_key=f"dm:customer-{n}",
        direction=Direction.INBOUND,
        author=Author(id=f"customer-{n}"),
        content=Content(text=text),
        provider_message_id=f"m_t{n}",
        provider_timestamp=datetime.now(UTC) - timedelta(minutes=1),
        delivery_id=f"delivery-t{n}",
    )


async def test_routing_takes_the_next_message_of_a_loaded_conversation(store: Store) -> None:
    await dataset.load(store, count=8, events=5)
    repository = dataset.repository_of(store)
    published: list[ConversationEvent] = []

    async def publish(event: ConversationEvent) -> None:
        published.append(event)

    await ConversationService(repository, publish).on_messages([_message(3)])

    # a resolved conversation: the message, and its reopening
    assert [e.event_type for e in published] == [
        "parley.conversation.message_added.v1",
        "parley.conversation.status_changed.v1",
    ]
    stored = (await repository.get_many(["conv-data-3"]))["conv-data-3"]
    assert (stored.version, stored.sequence, stored.queue) == (2, 7, Queue.NEW)
    assert [h["sequence"] for h in await repository.history_of("conv-data-3")] == [1, 2, 3, 4, 5, 6, 7]


async def test_the_hand_written_loop_writes_what_routing_writes(store: Store) -> None:
    await dataset.load(store, count=8, events=5)
    loop: Any = PostgresLoop(store.postgres) if store.kind == "postgresql" else MongoLoop(store.db)
    message = orjson.loads(_message(3).model_dump_json())

    written = await loop.batch([message], datetime.now(UTC))
    await loop.batch([orjson.loads(_message(5).model_dump_json())], datetime.now(UTC))

    assert written == 2  # message_added and status_changed, as routing's domain writes them
    repository = dataset.repository_of(store)
    stored = (await repository.get_many(["conv-data-3"]))["conv-data-3"]
    assert (stored.version, stored.sequence, stored.queue) == (2, 7, Queue.NEW)
    # the second batch settled the first one's outbox rows (PostgreSQL), or the loop marked it
    # published (MongoDB)
    assert "conv-data-3" not in {c.id for c in await repository.pending_outbox()}
    history = await repository.history_of("conv-data-3")
    assert [(h["sequence"], h["type"]) for h in history[-2:]] == [
        (6, "parley.conversation.message_added.v1"),
        (7, "parley.conversation.status_changed.v1"),
    ]
    assert await repository.seen_before("conv-data-3", ["m_t3"]) == {"m_t3"}
