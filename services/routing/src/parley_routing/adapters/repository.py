"""Where conversations are kept: a port and its MongoDB adapter (optimistic concurrency).

Concurrency control is a *version claim*: saving version N+1 of a conversation first inserts
``<conversation id>:<N+1>`` into ``conversations_commits``, whose unique ``_id`` lets exactly one
writer win. The winner's commit holds the full new document, and the winner then writes it to
the ``conversations`` collection (the projection that queries read). A conditional
``replace_one`` on the version would be simpler, but FerretDB 1.24 does not apply conditional
updates atomically (two concurrent writers both match), while a unique-key insert is atomic on
every store (docs/storage.md). A writer that crashes between its commit and the projection write
leaves a commit ahead of the projection: every ``get`` rolls forward to the newest commit and
repairs the projection, so nobody is stuck.

Events are recorded in the document with the change (an in-document outbox); ``mark_published_many``
records how far they were published, and ``pending_outbox`` finds conversations whose events may
not have reached Kafka (a crash between the write and the publish).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from parley_events import ConversationEvent, Queue
from parley_shared.mongo import (
    DUPLICATE_KEY,
    MAX_WRITE_STATEMENTS,
    MongoVersionedDocuments,
    VersionConflict,
    bulk_write_chunked,
)
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from parley_routing.domain.model import Conversation


class ConcurrentUpdate(Exception):
    """Someone else changed the conversation since it was read: reload and try again."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a conversation listing, newest activity first."""

    items: list[Conversation]
    next_cursor: tuple[datetime, str] | None


class ConversationRepository(Protocol):
    """Load and save conversations; ``save`` fails if the stored version moved on."""

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def save(self, conversation: Conversation) -> None: ...


class MongoConversationRepository:
    """Conversations and their event history in MongoDB (or FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        history: AsyncCollection[dict[str, Any]] | None = None,
    ) -> None:
        self.collection = collection
        self.history = history
        self.documents = MongoVersionedDocuments(collection)

    async def ensure_indexes(self) -> None:
        await self.collection.create_index(
            [
                ("tenant_id", ASCENDING),
                ("channel_id", ASCENDING),
                ("queue", ASCENDING),
                ("last_activity_at", DESCENDING),
            ],
            name="queue_by_activity",
        )
        await self.collection.create_index(
            [("tenant_id", ASCENDING), ("owner_id", ASCENDING), ("last_activity_at", DESCENDING)],
            name="owner_by_activity",
        )
        await self.collection.create_index([("outbox_pending", ASCENDING)], name="outbox")
        await self.documents.ensure_indexes()
        if self.history is not None:
            await self.history.create_index(
                [("conversation_id", ASCENDING), ("sequence", ASCENDING)], name="history_by_sequence"
            )

    async def get(self, conversation_id: str) -> Conversation | None:
        doc = await self.documents.get(conversation_id)
        return None if doc is None else Conversation.from_document(doc)

    async def save(self, conversation: Conversation) -> None:
        expected = conversation.version
        conversation.version = expected + 1
        try:
            await self.documents.save(conversation.to_document())
        except VersionConflict as exc:
            conversation.version = expected
            raise ConcurrentUpdate(conversation.id) from exc

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, Conversation]:
        docs = await self.documents.get_many(conversation_ids)
        return {i: Conversation.from_document(d) for i, d in docs.items()}

    async def save_many(self, conversations: Sequence[Conversation]) -> set[str]:
        """Save each at its next version; returns the ids someone else changed first (not saved)."""
        for conversation in conversations:
            conversation.version += 1
        lost = await self.documents.save_many([c.to_document() for c in conversations])
        for conversation in conversations:
            if conversation.id in lost:
                conversation.version -= 1
        return lost

    async def record_history(self, events: Sequence[ConversationEvent]) -> None:
        """Append published events to the queryable history (idempotent on event ids)."""
        if self.history is None or not events:
            return
        docs = [
            {
                "_id": e.event_id,
                "conversation_id": e.conversation_id,
                "sequence": e.sequence,
                "type": e.event_type,
                "data": e.model_dump(mode="json"),
            }
            for e in events
        ]
        for start in range(0, len(docs), MAX_WRITE_STATEMENTS):
            try:
                await self.history.insert_many(docs[start : start + MAX_WRITE_STATEMENTS], ordered=False)
            except BulkWriteError as exc:
                if any(err.get("code") != DUPLICATE_KEY for err in exc.details.get("writeErrors", [])):
                    raise

    async def history_of(self, conversation_id: str, limit: int = 500) -> list[dict[str, Any]]:
        if self.history is None:
            return []
        cursor = (
            self.history.find({"conversation_id": conversation_id}).sort("sequence", ASCENDING).limit(limit)
        )
        return [{"type": d["type"], **d["data"]} async for d in cursor]

    async def mark_published_many(self, published: Sequence[tuple[str, int, int]]) -> None:
        """Record how far each conversation's events reached Kafka: ``(id, sequence, version)``.

        Filters are on ``_id`` alone (FerretDB reads the whole collection for anything more,
        docs/storage.md): ``published_sequence`` only ever rises (``$max``) and the outbox flag
        is cleared. A newer change saved meanwhile must keep the flag until it publishes its own
        events; every save claims ``<id>:<version>`` before writing the document, so a claim
        above ``version`` found *after* clearing the flag means a newer change exists, and the
        flag is set again for it (its own document write, if still to come, sets it too).
        """
        if not published:
            return
        marks = [
            UpdateOne(
                {"_id": conversation_id},
                {"$max": {"published_sequence": sequence}, "$set": {"outbox_pending": False}},
            )
            for conversation_id, sequence, _ in published
        ]
        await bulk_write_chunked(self.collection, marks, ordered=False)
        # one after the other on one connection: concurrent lookups would each take a connection
        newer = [await self.documents.claimed(i, version + 1) for i, _, version in published]
        reopened = [
            UpdateOne({"_id": conversation_id}, {"$set": {"outbox_pending": True}})
            for (conversation_id, _, _), claimed in zip(published, newer, strict=True)
            if claimed
        ]
        if reopened:
            await bulk_write_chunked(self.collection, reopened, ordered=False)

    async def pending_outbox(self, limit: int = 100) -> list[Conversation]:
        cursor = self.collection.find({"outbox_pending": True}).limit(limit)
        return [Conversation.from_document(d) async for d in cursor]

    async def idle(
        self, channel_id: str, queue: Queue, before: datetime, limit: int = 200
    ) -> list[Conversation]:
        """Conversations of a channel in a queue whose last activity is before ``before``."""
        cursor = (
            self.collection.find(
                {"channel_id": channel_id, "queue": queue.value, "last_activity_at": {"$lte": before}}
            )
            .sort("last_activity_at", ASCENDING)
            .limit(limit)
        )
        return [Conversation.from_document(d) async for d in cursor]

    async def list_visible(
        self,
        tenant_id: str,
        channel_ids: Sequence[str],
        *,
        queue: Queue | None = None,
        owner_id: str | None = None,
        limit: int = 50,
        after: tuple[datetime, str] | None = None,
    ) -> Page:
        """Conversations on the given channels, newest activity first, keyset-paginated."""
        query: dict[str, Any] = {"tenant_id": tenant_id, "channel_id": {"$in": list(channel_ids)}}
        if queue is not None:
            query["queue"] = queue.value
        if owner_id is not None:
            query["owner_id"] = owner_id
        if after is not None:
            at, last_id = after
            query["$or"] = [
                {"last_activity_at": {"$lt": at}},
                {"last_activity_at": at, "_id": {"$lt": last_id}},
            ]
        cursor = (
            self.collection.find(query)
            .sort([("last_activity_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit + 1)
        )
        items = [Conversation.from_document(d) async for d in cursor]
        more = len(items) > limit
        items = items[:limit]
        next_cursor = (items[-1].last_activity_at, items[-1].id) if more and items else None
        return Page(items=items, next_cursor=next_cursor)
