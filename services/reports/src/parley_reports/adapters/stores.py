"""Where the reports read model is kept: the ``ReportStore`` port and its MongoDB adapter.

Two kinds of documents: one bucket per channel per UTC hour (counters and serialized sketches,
and the ids of the events they counted), and one timing state per conversation. Both are saved
by version: a writer that lost the race reloads and applies its change again (several replicas
add to the same channel's hour from different partitions).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from parley_events import Queue
from parley_shared.mongo import MongoVersionedDocuments, VersionConflict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from parley_reports.domain.buckets import Bucket, bucket_id
from parley_reports.domain.timing import ConversationTiming

OPEN_QUEUES = (Queue.NEW.value, Queue.PENDING.value)


class ConcurrentUpdate(Exception):
    """Another writer saved this document's next version first: reload and apply again."""


class ReportStore(Protocol):
    """The buckets and the conversations' timing states."""

    async def ensure_indexes(self) -> None: ...

    async def get_state(self, conversation_id: str) -> ConversationTiming | None: ...

    async def save_state(self, state: ConversationTiming) -> None:
        """Save the next version (``state.version + 1``, set on success); ConcurrentUpdate if taken."""
        ...

    async def get_bucket(self, channel_id: str, hour: datetime) -> Bucket | None: ...

    async def save_bucket(self, bucket: Bucket) -> None:
        """Save the next version (``bucket.version + 1``, set on success); ConcurrentUpdate if taken."""
        ...

    async def buckets(self, channel_ids: Sequence[str], start: datetime, end: datetime) -> list[Bucket]:
        """The buckets of these channels whose hour starts in ``[start, end)``."""
        ...

    async def open_conversations(self, channel_ids: Sequence[str]) -> list[ConversationTiming]:
        """The states of these channels' conversations in New or Pending."""
        ...

    async def clear(self) -> int:
        """Delete every bucket and state (a rebuild starts from nothing); how many were deleted."""
        ...


class MongoReportStore:
    """Buckets and timing states in MongoDB (or FerretDB), saved by version claims."""

    def __init__(
        self, buckets: AsyncCollection[dict[str, Any]], states: AsyncCollection[dict[str, Any]]
    ) -> None:
        self._buckets = MongoVersionedDocuments(buckets)
        self._states = MongoVersionedDocuments(states)

    async def ensure_indexes(self) -> None:
        await self._buckets.ensure_indexes()
        await self._states.ensure_indexes()
        await self._buckets.collection.create_index(
            [("channel_id", ASCENDING), ("hour", ASCENDING)], name="buckets_by_channel_hour"
        )
        await self._states.collection.create_index(
            [("channel_id", ASCENDING), ("queue", ASCENDING)], name="states_by_channel_queue"
        )

    async def get_state(self, conversation_id: str) -> ConversationTiming | None:
        doc = await self._states.get(conversation_id)
        return None if doc is None else ConversationTiming.from_document(doc)

    async def save_state(self, state: ConversationTiming) -> None:
        doc = state.to_document()
        doc["version"] = state.version + 1
        try:
            await self._states.save(doc)
        except VersionConflict as exc:
            raise ConcurrentUpdate(state.conversation_id) from exc
        state.version += 1

    async def get_bucket(self, channel_id: str, hour: datetime) -> Bucket | None:
        doc = await self._buckets.get(bucket_id(channel_id, hour))
        return None if doc is None else Bucket.from_document(doc)

    async def save_bucket(self, bucket: Bucket) -> None:
        doc = bucket.to_document()
        doc["version"] = bucket.version + 1
        try:
            await self._buckets.save(doc)
        except VersionConflict as exc:
            raise ConcurrentUpdate(bucket.id) from exc
        bucket.version += 1

    async def buckets(self, channel_ids: Sequence[str], start: datetime, end: datetime) -> list[Bucket]:
        if not channel_ids:
            return []
        query = {"channel_id": {"$in": list(channel_ids)}, "hour": {"$gte": start, "$lt": end}}
        return [Bucket.from_document(d) async for d in self._buckets.collection.find(query)]

    async def open_conversations(self, channel_ids: Sequence[str]) -> list[ConversationTiming]:
        if not channel_ids:
            return []
        query = {"channel_id": {"$in": list(channel_ids)}, "queue": {"$in": list(OPEN_QUEUES)}}
        return [ConversationTiming.from_document(d) async for d in self._states.collection.find(query)]

    async def clear(self) -> int:
        deleted = 0
        for documents in (self._buckets, self._states):
            deleted += (await documents.collection.delete_many({})).deleted_count
            await documents.commits.delete_many({})
        return deleted
