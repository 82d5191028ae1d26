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

Partition ownership epochs (``routing_partition_epochs``): on being assigned an inbound partition a
routing replica takes a new epoch for it (:meth:`MongoConversationRepository.take_epochs`), and the
batches it writes carry the epochs of their partitions; :meth:`~MongoConversationRepository.commit`
refuses (:class:`Fenced`) a batch for which a newer epoch exists. On MongoDB each epoch is a claim
``<topic>:<partition>:<epoch>`` (a unique ``_id``, atomic on FerretDB too, where ``$inc`` under
concurrency is not), and the check, before the version claims, looks up the next epoch's claim.
It refuses every write that starts after the new owner took its epoch, but a write whose check
passed just before can still land in the one round trip between the check and its claims.
PostgreSQL closes that gap (the check holds a lock until its transaction commits); here the
version claims remain what keeps such a write from overwriting anything (docs/storage.md).

Bounded (security #13): a conversation document is refused above :data:`MAX_DOCUMENT_BYTES` of
BSON (:class:`DocumentTooLarge`, a clear error instead of the store's 16 MiB failure). Notes live
in their own collection (``conversation_notes``, one document per note, written from the
``note_added`` events before they are published, so a crash leaves them to the outbox relay), and
the provider message ids of recorded messages in ``conversation_seen_messages`` for
``seen_retention`` (FerretDB has no TTL indexes: each entry carries ``expires_at`` and
:meth:`MongoConversationRepository.prune_seen` deletes the expired ones periodically).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import bson
from parley_events import ConversationEvent, ConversationMessageAdded, ConversationNoteAdded, Queue
from parley_shared.mongo import (
    DUPLICATE_KEY,
    MAX_WRITE_STATEMENTS,
    MongoVersionedDocuments,
    VersionConflict,
    bulk_write_chunked,
)
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from parley_routing.domain.model import Conversation, Note, key_of

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Largest conversation document saved (BSON bytes), far below MongoDB's 16 MiB: with the
domain's caps a conversation stays well under it; above it a save is refused."""
EPOCH_CLAIMS_KEPT = 100
"""Epoch claims kept per partition below the newest (MongoDB): a batch holding an epoch is fenced
by the claim of the next one, so that claim must outlive any batch still running (a hundred
rebalances during one batch would be needed to lose it)."""
DEFAULT_SEEN_RETENTION = timedelta(days=8)
"""How long a recorded provider message id is remembered: longer than the providers' retries
(Meta's 36 hours, WhatsApp's 7 days), so a late redelivery is recognised as a duplicate."""


class ConcurrentUpdate(Exception):
    """Someone else changed the conversation since it was read: reload and try again."""


Epochs = Mapping[tuple[str, int], int]
"""The epoch a writer holds for each (topic, partition) it writes for."""


class Fenced(Exception):
    """A newer owner took one of the batch's partitions (a newer epoch exists): nothing was written.

    ``by``: ``store`` when the store refused the write, ``replica`` when the replica knew it no
    longer held a partition and did not try."""

    def __init__(self, partitions: Sequence[tuple[str, int]], by: str = "store") -> None:
        named = ", ".join(f"{topic}[{partition}]" for topic, partition in partitions)
        super().__init__(f"partitions taken by a newer owner: {named}")
        self.partitions = list(partitions)
        self.by = by


def newer_epochs(held: Epochs, stored: Mapping[tuple[str, int], int]) -> list[tuple[str, int]]:
    """The partitions for which the store knows a newer epoch than the one held, in order."""
    return sorted(tp for tp, epoch in held.items() if stored.get(tp, 0) > epoch)


class DocumentTooLarge(Exception):
    """The conversation would exceed :data:`MAX_DOCUMENT_BYTES`: nothing was saved."""

    code = "CONVERSATION_TOO_LARGE"

    def __init__(self, conversation_id: str, size: int) -> None:
        super().__init__(
            f"conversation {conversation_id} would be {size} bytes, above the {MAX_DOCUMENT_BYTES} allowed"
        )
        self.conversation_id = conversation_id
        self.size = size


def _bson_size(doc: dict[str, Any]) -> int:
    return len(bson.encode(doc))


def _checked(conversation: Conversation) -> dict[str, Any]:
    doc, size = conversation.bounded_document(_bson_size, MAX_DOCUMENT_BYTES)
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(conversation.id, size)
    return doc


async def _insert_new(collection: AsyncCollection[dict[str, Any]], docs: Sequence[dict[str, Any]]) -> None:
    """Insert documents by ``_id``, ignoring those already there (idempotent)."""
    for start in range(0, len(docs), MAX_WRITE_STATEMENTS):
        try:
            await collection.insert_many(list(docs[start : start + MAX_WRITE_STATEMENTS]), ordered=False)
        except BulkWriteError as exc:
            if any(err.get("code") != DUPLICATE_KEY for err in exc.details.get("writeErrors", [])):
                raise


def _note_document(conversation_id: str, tenant_id: str, note: Note) -> dict[str, Any]:
    return {
        "_id": note.note_id,
        "conversation_id": conversation_id,
        "tenant_id": tenant_id,
        "author_id": note.author_id,
        "text": note.text,
        "created_at": note.created_at,
    }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a conversation listing, newest activity first."""

    items: list[Conversation]
    next_cursor: tuple[datetime, str] | None


class ConversationRepository(Protocol):
    """Every store operation the conversation service and the agent API use (one port).

    ``save`` fails with :class:`ConcurrentUpdate` if the stored version moved on; ``save_many``
    returns the ids it could not save for that reason. :class:`MongoConversationRepository` is
    the production adapter; tests/support/fakes/routing.py keeps an in-memory one to the same
    contract (a unit test compares their signatures with this one).
    """

    async def ensure_indexes(self) -> None: ...

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def save(self, conversation: Conversation) -> None: ...

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, Conversation]: ...

    async def save_many(self, conversations: Sequence[Conversation]) -> set[str]: ...

    async def take_epochs(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """A new ownership epoch for each of these partitions of ``topic``: strictly greater than
        any taken before for it, by anyone (the first is 1)."""
        ...

    async def commit(
        self, conversations: Sequence[Conversation], now: datetime, epochs: Epochs | None = None
    ) -> set[str]:
        """Save each conversation at its next version together with what its unpublished events
        add outside the document (notes, seen provider message ids); returns the ids someone else
        changed first (their versions left as they were, nothing of theirs written).

        ``epochs``: the ownership epochs of the partitions the write is for. If a newer epoch
        exists for any of them (a newer owner took the partition) nothing is written and
        :class:`Fenced` is raised: on PostgreSQL checked in the same transaction, on MongoDB
        read just before the version claims (the module docstring says what that leaves open).

        On PostgreSQL this is one transaction that also holds the events' history and outbox rows
        (and settles what :meth:`published` recorded before): one write per conversation. On
        MongoDB (FerretDB's conditional writes are not atomic) it is :meth:`save_many`'s version
        claims followed by :meth:`record_projections`."""
        ...

    async def published(self, sent: Sequence[tuple[Conversation, Sequence[ConversationEvent]]]) -> None:
        """These events of these conversations reached Kafka. PostgreSQL keeps it in memory and
        settles it in the next :meth:`commit` (or the relay's :meth:`claim_outbox`), no write of its own;
        MongoDB appends them to the history and marks the conversations published."""
        ...

    async def record_projections(self, events: Sequence[ConversationEvent], now: datetime) -> None: ...

    async def seen_before(self, conversation_id: str, provider_message_ids: Sequence[str]) -> set[str]: ...

    async def seen_before_many(self, asked: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
        """:meth:`seen_before` for several conversations (conversation id -> the provider message
        ids asked about): an entry for each conversation asked about."""
        ...

    async def prune_seen(self, now: datetime) -> int: ...

    async def notes_of(self, conversation: Conversation) -> list[Note]: ...

    async def record_history(self, events: Sequence[ConversationEvent]) -> None: ...

    async def history_of(self, conversation_id: str, limit: int = 500) -> list[dict[str, Any]]: ...

    async def mark_published_many(self, published: Sequence[tuple[str, int, int]]) -> None: ...

    async def pending_outbox(self, limit: int = 100) -> list[Conversation]: ...

    async def claim_outbox(self, limit: int = 100) -> list[Conversation]:
        """The conversations this process's relay is to publish: on PostgreSQL those no other
        process holds (it committed them and is publishing, or another relay took them), each
        taken for a lease; on MongoDB every pending one (no claims there: two replicas' relays
        may both publish a conversation's events, at least once)."""
        ...

    async def idle(
        self, channel_id: str, queue: Queue, before: datetime, limit: int = 200
    ) -> list[Conversation]: ...

    async def list_visible(
        self,
        tenant_id: str,
        channel_ids: Sequence[str],
        *,
        queue: Queue | None = None,
        owner_id: str | None = None,
        limit: int = 50,
        after: tuple[datetime, str] | None = None,
    ) -> Page: ...


class MongoConversationRepository:
    """Conversations and their event history in MongoDB (or FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        history: AsyncCollection[dict[str, Any]] | None = None,
        notes: AsyncCollection[dict[str, Any]] | None = None,
        seen: AsyncCollection[dict[str, Any]] | None = None,
        seen_retention: timedelta = DEFAULT_SEEN_RETENTION,
        epochs: AsyncCollection[dict[str, Any]] | None = None,
    ) -> None:
        self.collection = collection
        self.history = history
        self.epochs = epochs if epochs is not None else collection.database["routing_partition_epochs"]
        # never optional: notes moved out of a document must land somewhere
        self.notes = notes if notes is not None else collection.database["conversation_notes"]
        self.seen = seen if seen is not None else collection.database["conversation_seen_messages"]
        self.seen_retention = seen_retention
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
        await self.notes.create_index(
            [("conversation_id", ASCENDING), ("created_at", ASCENDING)], name="notes_by_conversation"
        )
        await self.seen.create_index([("expires_at", ASCENDING)], name="seen_by_expiry")
        await self.epochs.create_index([("claim_of", ASCENDING), ("epoch", ASCENDING)], name="epoch_claims")
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
            doc = _checked(conversation)
            await self._move_legacy_notes([conversation])
            await self.documents.save(doc)
        except VersionConflict as exc:
            conversation.version = expected
            raise ConcurrentUpdate(conversation.id) from exc
        except DocumentTooLarge:
            conversation.version = expected
            raise

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, Conversation]:
        docs = await self.documents.get_many(conversation_ids)
        return {i: Conversation.from_document(d) for i, d in docs.items()}

    async def save_many(self, conversations: Sequence[Conversation]) -> set[str]:
        """Save each at its next version; returns the ids someone else changed first (not saved)."""
        for conversation in conversations:
            conversation.version += 1
        try:
            docs = [_checked(c) for c in conversations]
        except DocumentTooLarge:
            for conversation in conversations:
                conversation.version -= 1
            raise
        await self._move_legacy_notes(conversations)
        lost = await self.documents.save_many(docs)
        for conversation in conversations:
            if conversation.id in lost:
                conversation.version -= 1
        return lost

    async def take_epochs(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Claim the epoch after the newest for each partition: an insert of ``<topic>:<partition>:
        <epoch>`` (of two replicas claiming the same epoch one wins, the other claims the next),
        so the claims of a partition are contiguous. A head document ``<topic>:<partition>``
        remembers the newest (``$max``: only where to start; a head left behind by a race costs a
        few failed inserts). Claims more than :data:`EPOCH_CLAIMS_KEPT` below it are deleted."""
        taken: dict[int, int] = {}
        for partition in dict.fromkeys(partitions):
            head_id = f"{topic}:{partition}"
            head = await self.epochs.find_one({"_id": head_id})
            epoch = 0 if head is None else int(head["epoch"])
            while True:
                epoch += 1
                try:
                    await self.epochs.insert_one(
                        {"_id": f"{head_id}:{epoch}", "claim_of": head_id, "epoch": epoch}
                    )
                    break
                except DuplicateKeyError:
                    continue
            try:
                await self.epochs.update_one({"_id": head_id}, {"$max": {"epoch": epoch}}, upsert=True)
            except DuplicateKeyError:  # a concurrent upsert created it (FerretDB): update it
                await self.epochs.update_one({"_id": head_id}, {"$max": {"epoch": epoch}})
            if epoch > EPOCH_CLAIMS_KEPT:
                await self.epochs.delete_many(
                    {"claim_of": head_id, "epoch": {"$lt": epoch - EPOCH_CLAIMS_KEPT}}
                )
            taken[partition] = epoch
        return taken

    async def check_epochs(self, epochs: Epochs) -> None:
        """:class:`Fenced` if an epoch newer than held exists for any of these partitions: the claim
        of the next epoch (claims are contiguous), looked up by ``_id`` (FerretDB reads the whole
        collection for anything else)."""
        newer = [
            (topic, partition)
            for (topic, partition), epoch in sorted(epochs.items())
            if await self.epochs.find_one({"_id": f"{topic}:{partition}:{epoch + 1}"}, {"_id": 1}) is not None
        ]
        if newer:
            raise Fenced(newer)

    async def commit(
        self, conversations: Sequence[Conversation], now: datetime, epochs: Epochs | None = None
    ) -> set[str]:
        """The epochs checked (:meth:`check_epochs`), then version claims and projection writes
        (:meth:`save_many`), then the notes and seen message ids of the saved conversations'
        unpublished events (:meth:`record_projections`)."""
        if epochs and conversations:
            await self.check_epochs(epochs)
        lost = await self.save_many(conversations)
        events = [e for c in conversations if c.id not in lost for e in c.unpublished()]
        if events:
            await self.record_projections(events, now)
        return lost

    async def published(self, sent: Sequence[tuple[Conversation, Sequence[ConversationEvent]]]) -> None:
        """Append the events to the history, then mark the conversations published (second round
        of writes: the claim-based path, kept because FerretDB cannot do better)."""
        if not sent:
            return
        await self.record_history([e for _, events in sent for e in events])
        await self.mark_published_many([(c.id, events[-1].sequence, c.version) for c, events in sent])

    async def _move_legacy_notes(self, conversations: Sequence[Conversation]) -> None:
        """Notes an older version embedded in the document go to the notes collection first (the
        document is then written without them); idempotent, so a lost claim moves them again."""
        docs = [_note_document(c.id, c.tenant_id, n) for c in conversations for n in c.legacy_notes]
        if docs:
            await _insert_new(self.notes, docs)

    async def record_projections(self, events: Sequence[ConversationEvent], now: datetime) -> None:
        """Write what the events add outside the document: notes, and the provider message ids
        of recorded messages (remembered for ``seen_retention``). Idempotent; called before the
        events are published, so the outbox relay redoes it after a crash."""
        notes = [
            _note_document(
                e.conversation_id,
                e.tenant_id,
                Note(note_id=e.note_id, author_id=e.author_id, text=e.text, created_at=e.occurred_at),
            )
            for e in events
            if isinstance(e, ConversationNoteAdded)
        ]
        expires_at = now + self.seen_retention
        seen = [
            {
                "_id": key_of(e.conversation_id, e.provider_message_id),
                "conversation_id": e.conversation_id,
                "expires_at": expires_at,
            }
            for e in events
            if isinstance(e, ConversationMessageAdded)
        ]
        if notes:
            await _insert_new(self.notes, notes)
        if seen:
            await _insert_new(self.seen, seen)

    async def seen_before(self, conversation_id: str, provider_message_ids: Sequence[str]) -> set[str]:
        """Which of these provider message ids were recorded on the conversation (one lookup by
        ``_id`` each: FerretDB reads the whole collection for an ``$in``)."""
        found: set[str] = set()
        for provider_message_id in dict.fromkeys(provider_message_ids):
            key = key_of(conversation_id, provider_message_id)
            if await self.seen.find_one({"_id": key}, {"_id": 1}) is not None:
                found.add(provider_message_id)
        return found

    async def seen_before_many(self, asked: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
        """:meth:`seen_before` for each conversation in turn (lookups by ``_id``, for FerretDB)."""
        return {
            conversation_id: await self.seen_before(conversation_id, ids)
            for conversation_id, ids in asked.items()
        }

    async def prune_seen(self, now: datetime) -> int:
        """Forget provider message ids past their retention; returns how many."""
        result = await self.seen.delete_many({"expires_at": {"$lt": now}})
        return result.deleted_count

    async def notes_of(self, conversation: Conversation) -> list[Note]:
        """The conversation's notes, oldest first (including any still embedded in its document)."""
        cursor = self.notes.find({"conversation_id": conversation.id}).sort("created_at", ASCENDING)
        stored = {
            d["_id"]: Note(
                note_id=d["_id"], author_id=d["author_id"], text=d["text"], created_at=d["created_at"]
            )
            async for d in cursor
        }
        for note in conversation.legacy_notes:
            stored.setdefault(note.note_id, note)
        return sorted(stored.values(), key=lambda n: (n.created_at, n.note_id))

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
        await _insert_new(self.history, docs)

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

    async def claim_outbox(self, limit: int = 100) -> list[Conversation]:
        """Every pending conversation: MongoDB's relay takes no claims (FerretDB's conditional
        updates are not atomic, so a lease would not hold); the published marks keep it short."""
        return await self.pending_outbox(limit)

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
