"""Where conversations are kept, on PostgreSQL: the ``ConversationRepository`` port's second adapter.

One row per conversation: the document (``jsonb``, as :meth:`Conversation.to_document` gives it)
and, beside it, the columns queries filter and sort on (migrations/0001_conversations.sql).

Concurrency control is the version column itself: saving version N+1 is
``UPDATE ... WHERE id = ... AND version = N`` (or an insert that finds no row, for version 1).
PostgreSQL re-checks the condition on the newest row after waiting for a concurrent writer, so
exactly one writer wins each version, and the document and its version change in one write: no
version claims, no roll-forward (the MongoDB adapter needs both because FerretDB's conditional
updates are not atomic, docs/storage.md). A batch is one transaction of a few statements whatever
its size: the rows it updates are locked in id order first, so two batches sharing conversations
wait for each other instead of deadlocking.

Arrays of documents are sent in binary format (``%b``): in text format psycopg escapes
every quote of every JSON document with a regular expression, which was most of routing's Python
time per message.

A batch is saved by :meth:`PostgresConversationRepository.commit`: one transaction holding the new
versions, their events' notes, seen message ids, history and one ``conversation_outbox`` row per
event (migrations/0002_conversation_outbox.sql). The service publishes after the commit and
reports what went out to :meth:`~PostgresConversationRepository.published`, which writes nothing:
the next commit deletes those outbox rows in its own transaction. How far a conversation is
published is read with it (below the lowest sequence left in the outbox).

Partition ownership epochs (migrations/0004_partition_epochs.sql): :meth:`take_epochs` raises a
partition's epoch by one in a statement of its own; a batch's :meth:`commit` carries the epochs of
its partitions and, as the last statement before its commit, reads their rows ``FOR SHARE``. A
newer epoch rolls the whole transaction back (:class:`Fenced`); an equal one stays locked until the
commit, so a new owner's ``take_epochs`` waits for that batch and reads after its writes. Either
the old owner's write commits before the new owner's epoch exists, or it is refused.

Rows saved before the outbox existed keep the older scheme: the outbox flag is a generated column,
``sequence > published_sequence``; ``mark_published_many`` raises ``published_sequence`` (never
lowers it), so a late mark cannot close the outbox over a newer change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_events import ConversationEvent, ConversationMessageAdded, ConversationNoteAdded, Queue
from parley_shared.postgres import Pool, dumps, jsonb, migrate, migrations_in
from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow

from parley_routing.adapters.stores import (
    DEFAULT_SEEN_RETENTION,
    MAX_DOCUMENT_BYTES,
    ConcurrentUpdate,
    DocumentTooLarge,
    Epochs,
    Fenced,
    Page,
    newer_epochs,
)
from parley_routing.domain.model import Conversation, Note

MIGRATIONS = migrations_in("parley_routing.adapters", "routing")
DEFAULT_OUTBOX_LEASE = timedelta(seconds=60)
"""How long a process holds the outbox of the conversations it committed or claimed: it publishes
their events and settles them (its next commit, or its relay) well within that; after it, another
process's relay may take them (the holder died, or is stuck on a broker that does not answer)."""

_UNNEST = sql.SQL(
    "unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],"
    " %b::bigint[], %b::bigint[], %b::bigint[], %b::jsonb[])"
    " AS i(id, tenant_id, channel_id, queue, owner_id, last_activity_at, version, sequence,"
    " published_sequence, doc)"
)
# Both take the outbox lease first (an interval, or NULL for none): a commit holds its
# conversations' outbox while it publishes (migrations/0003_outbox_claims.sql); save_many gives
# no lease and keeps the one the row has.
_UPDATE = sql.SQL(
    "UPDATE conversations AS c SET"
    " outbox_claimed_until = COALESCE(now() + %s::interval, c.outbox_claimed_until),"
    " tenant_id = i.tenant_id, channel_id = i.channel_id, queue = i.queue,"
    " owner_id = i.owner_id, last_activity_at = i.last_activity_at, version = i.version,"
    " sequence = i.sequence, published_sequence = GREATEST(c.published_sequence, i.published_sequence),"
    " doc = i.doc FROM {unnest} WHERE c.id = i.id AND c.version = i.version - 1 RETURNING c.id"
).format(unnest=_UNNEST)
_INSERT = sql.SQL(
    "INSERT INTO conversations (outbox_claimed_until, id, tenant_id, channel_id, queue, owner_id,"
    " last_activity_at, version, sequence, published_sequence, doc)"
    " SELECT now() + %s::interval, i.* FROM {unnest}"
    # in id order: concurrent inserts of the same new ids wait for each other, never in a cycle
    " ORDER BY i.id ON CONFLICT (id) DO NOTHING RETURNING id"
).format(unnest=_UNNEST)
_LOCK = "SELECT id FROM conversations WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
_NEWEST_FIRST = sql.SQL("ORDER BY last_activity_at DESC, id DESC LIMIT %s")
_SELECT = "SELECT doc, published_sequence FROM conversations"
_SELECT_PUBLISHED = (
    # how far each conversation's events are published: below the lowest sequence still in the
    # outbox (leaving out events this process published and will delete with its next commit),
    # else the column (rows saved before the outbox existed keep their own mark there)
    "SELECT c.doc, LEAST(c.published_sequence, (SELECT min(o.sequence) - 1 FROM conversation_outbox AS o"
    " WHERE o.conversation_id = c.id AND o.event_id <> ALL(%s::text[]))) FROM conversations AS c"
)
_OUTBOX_IDS = (
    "(SELECT conversation_id FROM conversation_outbox"
    " UNION SELECT id FROM conversations WHERE outbox_pending)"
)
_CLAIM_OUTBOX = (
    # conversations with events to relay whose lease has run out (or was never taken), each moved
    # to this process's lease: the row lock and the re-checked condition let one relay win each,
    # and a row a commit or another relay holds locked right now is skipped, not waited for
    "WITH free AS (SELECT c.id FROM conversations AS c WHERE c.id IN "  # noqa: S608 (fixed text)
    + _OUTBOX_IDS
    + " AND (c.outbox_claimed_until IS NULL OR c.outbox_claimed_until <= now())"
    " ORDER BY c.id LIMIT %s FOR UPDATE OF c SKIP LOCKED)"
    " UPDATE conversations AS c SET outbox_claimed_until = now() + %s::interval"
    " FROM free WHERE c.id = free.id RETURNING c.id"
)
_SETTLE_OUTBOX = "DELETE FROM conversation_outbox WHERE event_id = ANY(%s::text[])"
_SETTLE_MARKS = (
    # rows saved before the outbox existed: their published mark is the column (a no-op elsewhere,
    # where the column already equals the sequence)
    "UPDATE conversations AS c SET published_sequence = i.sequence"
    " FROM unnest(%s::text[], %s::bigint[]) AS i(id, sequence)"
    " WHERE c.id = i.id AND c.published_sequence < i.sequence"
)
_TAKE_EPOCHS = (
    "INSERT INTO routing_partition_epochs AS e (topic, partition, epoch)"
    " SELECT %s, p, 1 FROM unnest(%s::int[]) AS p ORDER BY p"
    " ON CONFLICT (topic, partition) DO UPDATE SET epoch = e.epoch + 1 RETURNING e.partition, e.epoch"
)
_HELD_EPOCHS = (
    # locked FOR SHARE until the batch commits: taking a newer epoch (an update) waits for it
    "SELECT e.topic, e.partition, e.epoch FROM routing_partition_epochs AS e"
    " JOIN unnest(%s::text[], %s::int[]) AS i(topic, partition)"
    " ON e.topic = i.topic AND e.partition = i.partition ORDER BY e.topic, e.partition FOR SHARE OF e"
)
_INSERT_SEEN = (
    "INSERT INTO conversation_seen_messages (conversation_id, provider_message_id, expires_at)"
    " SELECT c, m, %s FROM unnest(%s::text[], %s::text[]) AS s(c, m) ON CONFLICT DO NOTHING"
)
_INSERT_HISTORY = (
    "INSERT INTO conversation_history (event_id, conversation_id, sequence, type, data)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::jsonb[])"
    " ON CONFLICT (event_id) DO NOTHING"
)
_INSERT_OUTBOX = (
    "INSERT INTO conversation_outbox (event_id, conversation_id, sequence)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) ON CONFLICT (event_id) DO NOTHING"
)


def _encoded(conversation: Conversation) -> bytes:
    """The conversation's document as JSON, within :data:`MAX_DOCUMENT_BYTES` (published causes
    forgotten if needed, as on MongoDB), or :class:`DocumentTooLarge`."""
    encoded = b""

    def size_of(doc: dict[str, Any]) -> int:
        nonlocal encoded
        encoded = dumps(doc)
        return len(encoded)

    _, size = conversation.bounded_document(size_of, MAX_DOCUMENT_BYTES)
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(conversation.id, size)
    return encoded


def _loaded(doc: dict[str, Any], published_sequence: int) -> Conversation:
    """A conversation from its row: the document's datetimes back from JSON, and how far its
    events were published from the column (a published mark does not rewrite the document)."""
    doc["created_at"] = datetime.fromisoformat(doc["created_at"])
    doc["last_activity_at"] = datetime.fromisoformat(doc["last_activity_at"])
    for moment in ("resolved_at", "thread_control_at"):
        if doc.get(moment) is not None:
            doc[moment] = datetime.fromisoformat(doc[moment])
    doc["published_sequence"] = published_sequence
    return Conversation.from_document(doc)


def _rows(rows: Sequence[tuple[Conversation, bytes]], handed_over: bool = False) -> tuple[list[Any], ...]:
    """The parameters of :data:`_UNNEST`: one array per column. ``handed_over``: the events go to
    the outbox in the same transaction, so the column's published mark is the sequence itself."""
    return (
        [c.id for c, _ in rows],
        [c.tenant_id for c, _ in rows],
        [c.channel_id for c, _ in rows],
        [c.queue.value for c, _ in rows],
        [c.owner_id for c, _ in rows],
        [c.last_activity_at for c, _ in rows],
        [c.version for c, _ in rows],
        [c.sequence for c, _ in rows],
        [c.sequence if handed_over else c.published_sequence for c, _ in rows],
        [jsonb(e) for _, e in rows],
    )


def _seen_rows(events: Sequence[ConversationEvent]) -> tuple[list[str], list[str]]:
    seen = sorted(
        {
            (e.conversation_id, e.provider_message_id)
            for e in events
            if isinstance(e, ConversationMessageAdded)
        }
    )
    return [c for c, _ in seen], [m for _, m in seen]


def _history_rows(events: Sequence[ConversationEvent]) -> tuple[list[Any], ...]:
    ordered = sorted({e.event_id: e for e in events}.values(), key=lambda e: e.event_id)
    return (
        [e.event_id for e in ordered],
        [e.conversation_id for e in ordered],
        [e.sequence for e in ordered],
        [e.event_type for e in ordered],
        [jsonb(dumps(e.model_dump(mode="json"))) for e in ordered],
    )


def _note_row(conversation_id: str, tenant_id: str, note: Note) -> tuple[str, str, str, str, str, datetime]:
    return (note.note_id, conversation_id, tenant_id, note.author_id, note.text, note.created_at)


async def _insert_notes(
    conn: AsyncConnection[TupleRow], notes: Sequence[tuple[str, str, str, str, str, datetime]]
) -> None:
    """Insert notes by id, keeping any already there (idempotent), in id order."""
    if not notes:
        return
    ordered = sorted(notes)
    await conn.execute(
        "INSERT INTO conversation_notes (note_id, conversation_id, tenant_id, author_id, text, created_at)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])"
        " ON CONFLICT (note_id) DO NOTHING",
        tuple(list(column) for column in zip(*ordered, strict=True)),
    )


class PostgresConversationRepository:
    """Conversations, their notes, seen message ids and event history in PostgreSQL."""

    def __init__(
        self,
        pool: Pool,
        seen_retention: timedelta = DEFAULT_SEEN_RETENTION,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        outbox_lease: timedelta = DEFAULT_OUTBOX_LEASE,
    ) -> None:
        self.pool = pool
        self.seen_retention = seen_retention
        self.outbox_lease = outbox_lease
        """How long this process holds the outbox of what it commits or claims (:meth:`claim_outbox`)."""
        self.before_commit = before_commit
        """Run inside :meth:`commit`'s transaction after its writes, before the epoch check (tests:
        a crash before commit, a batch outliving its partitions)."""
        # published, to be settled by the next commit (or pending_outbox): outbox rows to delete,
        # and each conversation's highest published sequence (for rows older than the outbox)
        self._sent_events: dict[str, None] = {}
        self._sent_marks: dict[str, int] = {}

    async def ensure_indexes(self) -> None:
        """Create the tables and indexes (the migrations not yet applied)."""
        await migrate(self.pool, MIGRATIONS)

    async def get(self, conversation_id: str) -> Conversation | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                _SELECT_PUBLISHED + " WHERE c.id = %s", (list(self._sent_events), conversation_id)
            )
            row = await cursor.fetchone()
        return None if row is None else _loaded(row[0], row[1])

    async def save(self, conversation: Conversation) -> None:
        if await self.save_many([conversation]):
            raise ConcurrentUpdate(conversation.id)

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, Conversation]:
        if not conversation_ids:
            return {}
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                _SELECT_PUBLISHED + " WHERE c.id = ANY(%s)", (list(self._sent_events), list(conversation_ids))
            )
            rows = await cursor.fetchall()
        conversations = [_loaded(doc, published) for doc, published in rows]
        return {c.id: c for c in conversations}

    async def save_many(self, conversations: Sequence[Conversation]) -> set[str]:
        """Save each at its next version in one transaction; returns the ids someone else changed
        first (nothing of theirs is written, and their version is left as it was)."""
        if not conversations:
            return set()
        for conversation in conversations:
            conversation.version += 1
        try:
            encoded = [(c, _encoded(c)) for c in conversations]
        except DocumentTooLarge:
            for conversation in conversations:
                conversation.version -= 1
            raise
        updated = [(c, e) for c, e in encoded if c.version > 1]
        created = [(c, e) for c, e in encoded if c.version == 1]
        notes = [_note_row(c.id, c.tenant_id, n) for c in conversations for n in c.legacy_notes]
        saved: set[str] = set()
        try:
            async with self.pool.connection() as conn, contextlib.AsyncExitStack() as atomic:
                if len(updated) + bool(created) + bool(notes) > 1:  # one statement is atomic alone
                    await atomic.enter_async_context(conn.transaction())
                # notes an older version embedded in the document move to their table with it
                await _insert_notes(conn, notes)
                if len(updated) > 1:
                    await conn.execute(_LOCK, (sorted(c.id for c, _ in updated),))
                if updated:
                    cursor = await conn.execute(_UPDATE, (None, *_rows(updated)))
                    saved |= {row[0] for row in await cursor.fetchall()}
                if created:
                    cursor = await conn.execute(_INSERT, (None, *_rows(created)))
                    saved |= {row[0] for row in await cursor.fetchall()}
        except BaseException:
            for conversation in conversations:
                conversation.version -= 1
            raise
        lost = {c.id for c in conversations} - saved
        for conversation in conversations:
            if conversation.id in lost:
                conversation.version -= 1
        return lost

    async def take_epochs(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The next epoch of each partition (1 for a partition never taken), in one statement."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        async with self.pool.connection() as conn:
            cursor = await conn.execute(_TAKE_EPOCHS, (topic, wanted))
            return {int(partition): int(epoch) for partition, epoch in await cursor.fetchall()}

    async def commit(
        self, conversations: Sequence[Conversation], now: datetime, epochs: Epochs | None = None
    ) -> set[str]:
        """One transaction: settle what was published since the last one (delete its outbox rows),
        save each conversation at its next version (version-checked, rows locked in id order),
        and for those saved write their unpublished events' notes, seen message ids, history and
        outbox rows. Returns the ids someone else changed first (nothing of theirs written).

        With ``epochs``, the partitions' epoch rows are read ``FOR SHARE`` last, before the
        commit: a newer epoch than held rolls everything back (:class:`Fenced`)."""
        sent_events, sent_marks = list(self._sent_events), dict(self._sent_marks)
        if not conversations and not sent_events:
            return set()
        for conversation in conversations:
            conversation.version += 1
        try:
            encoded = [(c, _encoded(c)) for c in conversations]
        except DocumentTooLarge:
            for conversation in conversations:
                conversation.version -= 1
            raise
        updated = [(c, e) for c, e in encoded if c.version > 1]
        created = [(c, e) for c, e in encoded if c.version == 1]
        legacy_notes = [_note_row(c.id, c.tenant_id, n) for c in conversations for n in c.legacy_notes]
        saved: set[str] = set()
        try:
            async with self.pool.connection() as conn, conn.transaction():
                if sent_events:
                    await conn.execute(_SETTLE_OUTBOX, (sent_events,))
                if sent_marks:
                    ids = sorted(sent_marks)
                    await conn.execute(_SETTLE_MARKS, (ids, [sent_marks[i] for i in ids]))
                await _insert_notes(conn, legacy_notes)
                if len(updated) > 1:
                    await conn.execute(_LOCK, (sorted(c.id for c, _ in updated),))
                # the lease: nobody else relays these events while this process publishes them
                lease = self.outbox_lease
                if updated:
                    cursor = await conn.execute(_UPDATE, (lease, *_rows(updated, handed_over=True)))
                    saved |= {row[0] for row in await cursor.fetchall()}
                if created:
                    cursor = await conn.execute(_INSERT, (lease, *_rows(created, handed_over=True)))
                    saved |= {row[0] for row in await cursor.fetchall()}
                events = [e for c in conversations if c.id in saved for e in c.unpublished()]
                if events:
                    await self._write_events(conn, events, now)
                if self.before_commit is not None:
                    await self.before_commit()
                if epochs and conversations:  # last: the newest epoch as of the commit
                    await self._check_epochs(conn, epochs)
        except BaseException:
            for conversation in conversations:
                conversation.version -= 1
            raise
        for event_id in sent_events:
            self._sent_events.pop(event_id, None)
        for conversation_id, sequence in sent_marks.items():
            if self._sent_marks.get(conversation_id) == sequence:
                del self._sent_marks[conversation_id]
        lost = {c.id for c in conversations} - saved
        for conversation in conversations:
            if conversation.id in lost:
                conversation.version -= 1
        return lost

    @staticmethod
    async def _check_epochs(conn: AsyncConnection[TupleRow], epochs: Epochs) -> None:
        held = sorted(epochs)
        cursor = await conn.execute(_HELD_EPOCHS, ([t for t, _ in held], [p for _, p in held]))
        stored = {(topic, int(partition)): int(epoch) for topic, partition, epoch in await cursor.fetchall()}
        if newer := newer_epochs(epochs, stored):
            raise Fenced(newer)

    async def _write_events(
        self, conn: AsyncConnection[TupleRow], events: Sequence[ConversationEvent], now: datetime
    ) -> None:
        """What committed events add outside the document, their history and their outbox rows
        (sent together: none of them needs another's answer)."""
        notes = [
            _note_row(e.conversation_id, e.tenant_id, Note(e.note_id, e.author_id, e.text, e.occurred_at))
            for e in events
            if isinstance(e, ConversationNoteAdded)
        ]
        seen_conversations, seen_messages = _seen_rows(events)
        history = _history_rows(events)
        async with conn.pipeline():
            await _insert_notes(conn, notes)
            if seen_conversations:
                await conn.execute(
                    _INSERT_SEEN, (now + self.seen_retention, seen_conversations, seen_messages)
                )
            await conn.execute(_INSERT_HISTORY, history)
            await conn.execute(_INSERT_OUTBOX, history[:3])

    async def published(self, sent: Sequence[tuple[Conversation, Sequence[ConversationEvent]]]) -> None:
        """Remember what reached Kafka; the next :meth:`commit` (or :meth:`pending_outbox`) deletes
        those outbox rows in its own transaction, so this writes nothing now."""
        for conversation, events in sent:
            for event in events:
                self._sent_events[event.event_id] = None
            if events:
                highest = max(events[-1].sequence, self._sent_marks.get(conversation.id, 0))
                self._sent_marks[conversation.id] = highest

    async def settle_published(self) -> None:
        """Apply what :meth:`published` remembered now, in a transaction of its own (the relay,
        when no batch came to do it)."""
        if self._sent_events or self._sent_marks:
            await self.commit([], datetime.now(UTC))

    async def record_projections(self, events: Sequence[ConversationEvent], now: datetime) -> None:
        """Write what the events add outside the document: notes, and the provider message ids of
        recorded messages (remembered for ``seen_retention``). Idempotent; the first expiry stays."""
        notes = [
            _note_row(e.conversation_id, e.tenant_id, Note(e.note_id, e.author_id, e.text, e.occurred_at))
            for e in events
            if isinstance(e, ConversationNoteAdded)
        ]
        seen_conversations, seen_messages = _seen_rows(events)
        if not notes and not seen_conversations:
            return
        async with self.pool.connection() as conn:
            await _insert_notes(conn, notes)
            if seen_conversations:
                await conn.execute(
                    _INSERT_SEEN, (now + self.seen_retention, seen_conversations, seen_messages)
                )

    async def seen_before(self, conversation_id: str, provider_message_ids: Sequence[str]) -> set[str]:
        """Which of these provider message ids were recorded on the conversation (one query)."""
        if not provider_message_ids:
            return set()
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT provider_message_id FROM conversation_seen_messages"
                " WHERE conversation_id = %s AND provider_message_id = ANY(%s)",
                (conversation_id, list(dict.fromkeys(provider_message_ids))),
            )
            return {row[0] for row in await cursor.fetchall()}

    async def seen_before_many(self, asked: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
        """:meth:`seen_before` for several conversations in one query (by the primary key)."""
        pairs = [(c, m) for c, ids in asked.items() for m in dict.fromkeys(ids)]
        found: dict[str, set[str]] = {c: set() for c in asked}
        if not pairs:
            return found
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT s.conversation_id, s.provider_message_id FROM conversation_seen_messages s"
                " JOIN unnest(%s::text[], %s::text[]) AS a(c, m)"
                " ON s.conversation_id = a.c AND s.provider_message_id = a.m",
                ([c for c, _ in pairs], [m for _, m in pairs]),
            )
            for conversation_id, provider_message_id in await cursor.fetchall():
                found[conversation_id].add(provider_message_id)
        return found

    async def prune_seen(self, now: datetime) -> int:
        """Forget provider message ids past their retention; returns how many."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM conversation_seen_messages WHERE expires_at < %s", (now,)
            )
            return cursor.rowcount

    async def notes_of(self, conversation: Conversation) -> list[Note]:
        """The conversation's notes, oldest first (including any still embedded in its document)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT note_id, author_id, text, created_at FROM conversation_notes"
                " WHERE conversation_id = %s ORDER BY created_at, note_id",
                (conversation.id,),
            )
            stored = {row[0]: Note(*row) for row in await cursor.fetchall()}
        for note in conversation.legacy_notes:
            stored.setdefault(note.note_id, note)
        return sorted(stored.values(), key=lambda n: (n.created_at, n.note_id))

    async def record_history(self, events: Sequence[ConversationEvent]) -> None:
        """Append published events to the queryable history (idempotent on event ids)."""
        if not events:
            return
        async with self.pool.connection() as conn:
            await conn.execute(_INSERT_HISTORY, _history_rows(events))

    async def history_of(self, conversation_id: str, limit: int = 500) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT type, data FROM conversation_history WHERE conversation_id = %s"
                " ORDER BY sequence LIMIT %s",
                (conversation_id, limit),
            )
            return [{"type": kind, **data} for kind, data in await cursor.fetchall()]

    async def mark_published_many(self, published: Sequence[tuple[str, int, int]]) -> None:
        """Record how far each conversation's events reached Kafka: ``(id, sequence, version)``.

        ``published_sequence`` only ever rises; the outbox flag follows from it (a generated
        column), so the version needs no check here.
        """
        if not published:
            return
        highest: dict[str, int] = {}
        for conversation_id, sequence, _ in published:
            highest[conversation_id] = max(sequence, highest.get(conversation_id, 0))
        ids = sorted(highest)
        async with self.pool.connection() as conn, contextlib.AsyncExitStack() as atomic:
            if len(ids) > 1:  # lock in id order first: a racing batch waits instead of deadlocking
                await atomic.enter_async_context(conn.transaction())
                await conn.execute(_LOCK, (ids,))
            await conn.execute(
                "UPDATE conversations AS c"
                " SET published_sequence = GREATEST(c.published_sequence, i.sequence)"
                " FROM unnest(%s::text[], %s::bigint[]) AS i(id, sequence) WHERE c.id = i.id",
                (ids, [highest[i] for i in ids]),
            )

    async def pending_outbox(self, limit: int = 100) -> list[Conversation]:
        """Conversations with events in the outbox (after settling what this process published),
        or flagged by the column (saved before the outbox existed)."""
        await self.settle_published()
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                _SELECT_PUBLISHED + " WHERE c.id IN " + _OUTBOX_IDS + " LIMIT %s", ([], limit)
            )
            return [_loaded(doc, published) for doc, published in await cursor.fetchall()]

    async def claim_outbox(self, limit: int = 100) -> list[Conversation]:
        """Like :meth:`pending_outbox`, but only the conversations no other process holds, each
        taken for :attr:`outbox_lease`: what another process committed is left to it while its
        lease runs (it is publishing those events, or has and will settle them), and of two relays
        claiming at once each conversation goes to one. A holder that dies loses nothing: when its
        lease has run out, the next relay claims and publishes (at least once)."""
        await self.settle_published()
        async with self.pool.connection() as conn:
            cursor = await conn.execute(_CLAIM_OUTBOX, (limit, self.outbox_lease))
            claimed = [row[0] for row in await cursor.fetchall()]
            if not claimed:
                return []
            cursor = await conn.execute(_SELECT_PUBLISHED + " WHERE c.id = ANY(%s)", ([], claimed))
            return [_loaded(doc, published) for doc, published in await cursor.fetchall()]

    async def idle(
        self, channel_id: str, queue: Queue, before: datetime, limit: int = 200
    ) -> list[Conversation]:
        """Conversations of a channel in a queue whose last activity is before ``before``."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                _SELECT_PUBLISHED + " WHERE c.channel_id = %s AND c.queue = %s AND c.last_activity_at <= %s"
                " ORDER BY c.last_activity_at, c.id LIMIT %s",
                (list(self._sent_events), channel_id, queue.value, before, limit),
            )
            return [_loaded(doc, published) for doc, published in await cursor.fetchall()]

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
        """Conversations on the given channels, newest activity first, keyset-paginated.

        Without an owner, each channel's newest ``limit + 1`` come from its own index range and
        are merged, so a page costs ``channels * (limit + 1)`` index entries at most whatever the
        number of conversations; with an owner, the owner's index is read in order.
        """
        channels = list(dict.fromkeys(channel_ids))
        if not channels:
            return Page(items=[], next_cursor=None)
        filters: list[sql.Composable] = []
        params: list[Any] = []
        if queue is not None:
            filters.append(sql.SQL("AND c.queue = %s"))
            params.append(queue.value)
        if after is not None:
            filters.append(sql.SQL("AND (c.last_activity_at, c.id) < (%s, %s)"))
            params.extend(after)
        conditions = sql.SQL(" ").join(filters)
        if owner_id is None:
            query = sql.SQL(
                "SELECT v.doc, v.published_sequence FROM unnest(%s::text[]) AS ch(channel_id)"
                " CROSS JOIN LATERAL (SELECT c.doc, c.published_sequence, c.last_activity_at, c.id"
                " FROM conversations AS c WHERE c.channel_id = ch.channel_id AND c.tenant_id = %s"
                " {conditions} {order}) AS v {order}"
            ).format(conditions=conditions, order=_NEWEST_FIRST)
            args = [channels, tenant_id, *params, limit + 1, limit + 1]
        else:
            query = sql.SQL(
                "SELECT c.doc, c.published_sequence FROM conversations AS c"
                " WHERE c.tenant_id = %s AND c.owner_id = %s AND c.channel_id = ANY(%s) {conditions} {order}"
            ).format(conditions=conditions, order=_NEWEST_FIRST)
            args = [tenant_id, owner_id, channels, *params, limit + 1]
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, args)
            items = [_loaded(doc, published) for doc, published in await cursor.fetchall()]
        more = len(items) > limit
        items = items[:limit]
        next_cursor = (items[-1].last_activity_at, items[-1].id) if more and items else None
        return Page(items=items, next_cursor=next_cursor)
