"""The data store-bound benchmarks start from (issue #18): conversations with their history.

By default 50,000 conversations across 20 channels, each with 10 events in its history (created,
then 9 messages: 500,000 history entries), written through routing's own port
(``ConversationRepository.commit`` and ``published``), so the rows or documents are exactly what
routing writes, on whichever store the URL names (PostgreSQL or MongoDB, FerretDB included).
Deterministic: the same arguments give the same ids, texts and times.

    python -m bench.dataset --store-url postgresql://... [--conversations 50000] [--events 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_events import Author, Content, ConversationEvent, Direction, MessageReceived, Provider
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import MongoConversationRepository
from parley_routing.domain.model import Conversation
from parley_shared.store import Store, open_store

from bench.common import STORE_URL

CONVERSATIONS = 50_000
EVENTS_PER_CONVERSATION = 10
CHANNELS = 20
CHUNK = 500
"""Conversations per commit (one transaction on PostgreSQL)."""
START = datetime(2026, 1, 1, tzinfo=UTC)


def channel_id(n: int) -> str:
    return f"channel-bench-{n % CHANNELS}"


def conversation_messages(n: int, events: int) -> list[MessageReceived]:
    """The messages of conversation ``n``: ``events - 1`` of them (its creation is the first event)."""
    channel = channel_id(n)
    opened = START + timedelta(seconds=37 * n)
    return [
        MessageReceived(
            event_id=f"msg_d{n}_{turn}",
            tenant_id="tenant-bench",
            channel_id=channel,
            provider=Provider.MESSENGER,
            account_id=f"page-{channel}",
            conversation_id=f"conv-data-{n}",
            conversation_key=f"dm:customer-{n}",
            direction=Direction.INBOUND if turn % 3 else Direction.OUTBOUND,
            author=Author(id=f"customer-{n}"),
            content=Content(text=f"message {turn} about order {n:06d}: where is my parcel? " * 2),
            provider_message_id=f"m_d{n}_{turn}",
            provider_timestamp=opened + timedelta(minutes=turn),
            delivery_id=f"delivery-d{n}-{turn}",
        )
        for turn in range(events - 1)
    ]


def conversations(count: int, events: int) -> Iterator[Conversation]:
    for n in range(count):
        messages = conversation_messages(n, events)
        conversation = Conversation.open(messages[0])
        for message in messages:
            conversation.receive(message)
        yield conversation


def repository_of(store: Store) -> Any:
    if store.kind == "postgresql":
        return PostgresConversationRepository(store.postgres)
    db = store.db
    return MongoConversationRepository(
        db["conversations"],
        db["conversation_history"],
        notes=db["conversation_notes"],
        seen=db["conversation_seen_messages"],
    )


async def load(store: Store, count: int = CONVERSATIONS, events: int = EVENTS_PER_CONVERSATION) -> int:
    """Write the data set through routing's port; returns the history entries written."""
    repository = repository_of(store)
    await repository.ensure_indexes()
    now = datetime.now(UTC)
    written = 0
    chunk: list[Conversation] = []

    async def flush() -> None:
        nonlocal written
        lost = await repository.commit(chunk, now)
        if lost:
            raise RuntimeError(f"{len(lost)} conversations already exist: load into an empty store")
        sent: list[tuple[Conversation, list[ConversationEvent]]] = [(c, c.unpublished()) for c in chunk]
        await repository.published(sent)
        written += sum(len(events) for _, events in sent)
        chunk.clear()

    for conversation in conversations(count, events):
        chunk.append(conversation)
        if len(chunk) == CHUNK:
            await flush()
    if chunk:
        await flush()
    await repository.pending_outbox()  # settles the last chunk's published events
    return written


async def main_async(url: str, count: int, events: int) -> None:
    store = await open_store(url)
    try:
        started = time.perf_counter()
        written = await load(store, count, events)
        print(f"{count} conversations, {written} history entries in {time.perf_counter() - started:.1f} s")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-url", default=STORE_URL)
    parser.add_argument("--conversations", type=int, default=CONVERSATIONS)
    parser.add_argument("--events", type=int, default=EVENTS_PER_CONVERSATION)
    args = parser.parse_args()
    asyncio.run(main_async(args.store_url, args.conversations, args.events))


if __name__ == "__main__":
    main()
