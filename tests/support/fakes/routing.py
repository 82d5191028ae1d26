"""The in-memory adapter of routing's one store port, ``ConversationRepository``.

Shared by every unit test of routing's service; tests/unit/test_fakes.py keeps its signatures
equal to the Protocol's and to the Mongo adapter's.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from parley_events import (
    ChannelRole,
    ConversationEvent,
    ConversationMessageAdded,
    ConversationNoteAdded,
    Queue,
)
from parley_routing.adapters.stores import ConcurrentUpdate, Epochs, Fenced, Page, newer_epochs
from parley_routing.domain.model import Conversation, Note

DAY = timedelta(days=1)


class FakeRepository:
    """Conversations as documents in a dict, with the Mongo adapter's contract.

    Reads yield to the event loop once after taking their snapshot, so concurrent tasks really
    interleave between a read and a write; the version check and the write are atomic.
    ``before_save`` (async, run once) plays a competing writer getting in before a save.
    """

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.history: list[ConversationEvent] = []
        self.notes: dict[str, ConversationNoteAdded] = {}
        self.seen: dict[tuple[str, str], datetime] = {}  # (conversation, provider message id) -> expiry
        self.seen_lookups: list[str] = []
        self.seen_many_calls = 0
        """How many times the batch path asked about several conversations at once."""
        self.save_attempts = 0
        self.saves = 0
        self.idle_reads: list[tuple[str, int]] = []
        self.before_save: Callable[[Conversation], Awaitable[None]] | None = None
        self.indexed = False
        self.epochs: dict[tuple[str, int], int] = {}  # (topic, partition) -> newest epoch taken
        self.fenced = 0  # commits refused for a newer epoch

    def _load(self, doc: dict[str, Any]) -> Conversation:
        return Conversation.from_document(copy.deepcopy(doc))

    def stored(self, conversation_id: str) -> Conversation:
        return self._load(self.documents[conversation_id])

    async def ensure_indexes(self) -> None:
        self.indexed = True

    async def get(self, conversation_id: str) -> Conversation | None:
        doc = self.documents.get(conversation_id)
        conversation = None if doc is None else self._load(doc)
        await asyncio.sleep(0)
        return conversation

    async def save(self, conversation: Conversation) -> None:
        self.save_attempts += 1
        if self.before_save is not None:
            hook, self.before_save = self.before_save, None
            await hook(conversation)
        expected = conversation.version
        stored = self.documents.get(conversation.id)
        if (expected == 0 and stored is not None) or (
            expected > 0 and (stored is None or stored["version"] != expected)
        ):
            raise ConcurrentUpdate(conversation.id)
        conversation.version = expected + 1
        self.documents[conversation.id] = copy.deepcopy(conversation.to_document())
        self.saves += 1

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, Conversation]:
        found = {i: self._load(self.documents[i]) for i in conversation_ids if i in self.documents}
        await asyncio.sleep(0)
        return found

    async def save_many(self, conversations: Sequence[Conversation]) -> set[str]:
        lost: set[str] = set()
        for conversation in conversations:
            try:
                await self.save(conversation)
            except ConcurrentUpdate:
                lost.add(conversation.id)
        return lost

    async def take_epochs(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        taken: dict[int, int] = {}
        for partition in dict.fromkeys(partitions):
            self.epochs[(topic, partition)] = taken[partition] = self.epochs.get((topic, partition), 0) + 1
        await asyncio.sleep(0)
        return taken

    async def commit(
        self, conversations: Sequence[Conversation], now: datetime, epochs: Epochs | None = None
    ) -> set[str]:
        # as on PostgreSQL: the epochs checked last, and a newer one takes back everything written
        fenced = bool(epochs and conversations)
        documents = copy.deepcopy(self.documents) if fenced else {}
        versions = [c.version for c in conversations]
        lost = await self.save_many(conversations)
        if epochs and fenced and (newer := newer_epochs(epochs, self.epochs)):
            self.documents = documents
            for conversation, version in zip(conversations, versions, strict=True):
                conversation.version = version
            self.fenced += 1
            raise Fenced(newer)
        events = [e for c in conversations if c.id not in lost for e in c.unpublished()]
        await self.record_projections(events, now)
        return lost

    async def published(self, sent: Sequence[tuple[Conversation, Sequence[ConversationEvent]]]) -> None:
        await self.record_history([e for _, events in sent for e in events])
        await self.mark_published_many([(c.id, events[-1].sequence, c.version) for c, events in sent])

    async def record_projections(self, events: Sequence[ConversationEvent], now: datetime) -> None:
        for event in events:
            if isinstance(event, ConversationNoteAdded):
                self.notes.setdefault(event.note_id, event)
            elif isinstance(event, ConversationMessageAdded):
                self.seen.setdefault((event.conversation_id, event.provider_message_id), now + 8 * DAY)

    async def seen_before(self, conversation_id: str, provider_message_ids: Sequence[str]) -> set[str]:
        self.seen_lookups.extend(provider_message_ids)
        return {i for i in provider_message_ids if (conversation_id, i) in self.seen}

    async def seen_before_many(self, asked: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
        self.seen_many_calls += 1
        return {
            conversation_id: await self.seen_before(conversation_id, ids)
            for conversation_id, ids in asked.items()
        }

    async def prune_seen(self, now: datetime) -> int:
        expired = [k for k, expires_at in self.seen.items() if expires_at < now]
        for key in expired:
            del self.seen[key]
        return len(expired)

    async def record_history(self, events: Sequence[ConversationEvent]) -> None:
        known = {e.event_id for e in self.history}
        self.history.extend(e for e in events if e.event_id not in known)

    async def mark_published(self, conversation_id: str, sequence: int) -> None:
        doc = self.documents.get(conversation_id)
        if doc is None:
            return
        doc["published_sequence"] = max(doc["published_sequence"], sequence)
        doc["outbox_pending"] = doc["sequence"] > doc["published_sequence"]

    async def mark_published_many(self, published: Sequence[tuple[str, int, int]]) -> None:
        for conversation_id, sequence, _ in published:
            await self.mark_published(conversation_id, sequence)

    async def pending_outbox(self, limit: int = 100) -> list[Conversation]:
        pending = [self._load(d) for d in self.documents.values() if d["sequence"] > d["published_sequence"]]
        await asyncio.sleep(0)
        return pending[:limit]

    async def claim_outbox(self, limit: int = 100) -> list[Conversation]:
        return await self.pending_outbox(limit)  # one process: nobody else to hold them

    async def idle(
        self, channel_id: str, queue: Queue, before: datetime, limit: int = 200
    ) -> list[Conversation]:
        docs = sorted(
            (
                d
                for d in self.documents.values()
                if d["channel_id"] == channel_id
                and d["queue"] == queue.value
                and d["last_activity_at"] <= before
            ),
            key=lambda d: d["last_activity_at"],
        )
        found = [self._load(d) for d in docs[:limit]]
        self.idle_reads.extend((c.id, c.version) for c in found)
        await asyncio.sleep(0)
        return found

    async def notes_of(self, conversation: Conversation) -> list[Note]:
        stored = [
            Note(e.note_id, e.author_id, e.text, e.occurred_at)
            for e in self.notes.values()
            if e.conversation_id == conversation.id
        ]
        known = {n.note_id for n in stored}
        return sorted(
            [*stored, *(n for n in conversation.legacy_notes if n.note_id not in known)],
            key=lambda n: n.created_at,
        )

    async def history_of(self, conversation_id: str, limit: int = 500) -> list[dict[str, Any]]:
        events = [e for e in self.history if e.conversation_id == conversation_id]
        # as the store's adapters answer it: the event type beside the event's fields
        ordered = sorted(events, key=lambda e: e.sequence)[:limit]
        return [{"type": e.event_type, **e.model_dump(mode="json")} for e in ordered]

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
        docs = [
            d
            for d in self.documents.values()
            if d["tenant_id"] == tenant_id
            and d["channel_id"] in channel_ids
            and (queue is None or d["queue"] == queue.value)
            and (owner_id is None or d.get("owner_id") == owner_id)
        ]
        ordered = sorted(docs, key=lambda d: (d["last_activity_at"], d["_id"]), reverse=True)
        if after is not None:
            ordered = [d for d in ordered if (d["last_activity_at"], d["_id"]) < after]
        items = [self._load(d) for d in ordered[:limit]]
        more = len(ordered) > limit
        return Page(items, (items[-1].last_activity_at, items[-1].id) if more and items else None)


class FakeChannelRoles:
    """Channel roles as a plain table: ``channels`` maps channel id to tenant, ``roles`` maps
    (tenant, user, channel) to the user's own role (the read models' answer, teams included)."""

    def __init__(self) -> None:
        self.channels: dict[str, str] = {}
        self.roles: dict[tuple[str, str, str], ChannelRole] = {}

    def role_of(self, tenant_id: str, user_id: str, channel_id: str) -> ChannelRole | None:
        if self.channels.get(channel_id) != tenant_id:
            return None
        return self.roles.get((tenant_id, user_id, channel_id))

    def channel_ids_of(self, tenant_id: str) -> list[str]:
        return [c for c, tenant in self.channels.items() if tenant == tenant_id]

    def has_channel(self, tenant_id: str, channel_id: str) -> bool:
        return self.channels.get(channel_id) == tenant_id
