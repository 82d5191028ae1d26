"""The data store-bound benchmarks start from (issue #18): conversations with their history.

By default 50,000 conversations across 20 channels, each with 10 events in its history (500,000
history entries): created, customer and agent messages, and for three in four an agent's command
(assigned to one of 40 agents; assigned and moved to pending; resolved), so the agent inbox has
queues and owners to filter on. Each conversation is built by routing's domain
(:class:`Conversation`), as routing would build it, and saved as routing's adapters save a
conversation committed once and published: the rows (PostgreSQL) and documents (MongoDB) come
from the adapters' own encoders (``_encoded``, ``_rows``, ``_history_rows``, ``_seen_rows``;
``_checked`` and ``_commit_of``), only the statements differ. Deterministic: the same arguments
give the same ids, texts and times.

Fast: the rows are generated once per run into files (COPY text for PostgreSQL, BSON for MongoDB),
then each load streams them in bulk: ``COPY ... FROM STDIN`` into the tables routing's migrations
made (then ``ANALYZE``), or ``insert_many`` of ready BSON, :data:`INSERT_CHUNK` documents per
command and at most ``WRITE_COMMANDS_IN_FLIGHT`` commands at once, with routing's indexes made
after (``ensure_indexes``). FerretDB's limit of 20 statements per write command
(``MAX_WRITE_STATEMENTS``, docs/storage.md) is about statements that match existing documents
(updates); inserts of 1,000 documents per command were answered here, three times faster than
chunks of 20.
:class:`Preloaded` keeps one loaded copy per store for a run and loads it again only after a
benchmark changed it.

    python -m bench.dataset --store-url postgresql://... [--conversations 50000] [--events 10]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import bson
import psycopg
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from parley_events import Author, Content, Direction, MessageReceived, Provider, Queue
from parley_routing.adapters.postgres import (
    PostgresConversationRepository,
    _encoded,
    _history_rows,
    _rows,
    _seen_rows,
)
from parley_routing.adapters.stores import DEFAULT_SEEN_RETENTION, MongoConversationRepository, _checked
from parley_routing.domain.model import Conversation, command_cause, key_of
from parley_shared.mongo import WRITE_COMMANDS_IN_FLIGHT, _commit_of
from parley_shared.store import Store, open_store
from psycopg import sql
from pymongo import MongoClient
from pymongo.asynchronous.collection import AsyncCollection

from bench.common import MONGO, POSTGRES, SCALE, STORE_URL, STORES, mongo_database_url, say, scaled
from tests.support.postgres import in_schema

CONVERSATIONS = 50_000
EVENTS_PER_CONVERSATION = 10
CHANNELS = 20
AGENTS = 40
TENANT = "tenant-bench"
SUPERVISOR = "supervisor-bench"
START = datetime(2026, 1, 1, tzinfo=UTC)

POSTGRES_TABLES = {
    "conversations": "id, tenant_id, channel_id, queue, owner_id, last_activity_at, version, sequence,"
    " published_sequence, doc",
    "conversation_history": "event_id, conversation_id, sequence, type, data",
    "conversation_seen_messages": "conversation_id, provider_message_id, expires_at",
}
"""What a load COPYs, in this order: the tables routing's commit writes (its outbox stays empty:
everything was published; no notes in the data set)."""
INSERT_CHUNK = 1000
"""Documents per ``insert_many`` when loading MongoDB (inserts of new ids only, see above)."""
MONGO_COLLECTIONS = (
    "conversations",
    "conversations_commits",
    "conversation_history",
    "conversation_seen_messages",
)


def channel_id(n: int) -> str:
    return f"channel-bench-{n % CHANNELS}"


def owner_of(n: int) -> str:
    return f"agent-bench-{(n // 4) % AGENTS}"


def shape_of(n: int) -> tuple[Queue, bool]:
    """Conversation ``n``'s queue and whether it has an owner: one in four of each of new,
    new with an owner, pending with an owner, resolved."""
    return [(Queue.NEW, False), (Queue.NEW, True), (Queue.PENDING, True), (Queue.RESOLVED, False)][n % 4]


def _commands(n: int, events: int) -> int:
    queue, owned = shape_of(n)
    wanted = int(owned) + int(queue is not Queue.NEW)
    return max(0, min(wanted, events - 2))  # at least the creation and one message


def conversation_messages(n: int, count: int) -> list[MessageReceived]:
    """The ``count`` messages of conversation ``n``, one minute apart."""
    channel = channel_id(n)
    opened = START + timedelta(seconds=37 * n)
    return [
        MessageReceived(
            event_id=f"msg_d{n}_{turn}",
            tenant_id=TENANT,
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
        for turn in range(count)
    ]


def conversation(n: int, events: int) -> Conversation:
    """Conversation ``n`` with ``events`` events, built by the domain, not yet saved."""
    commands = _commands(n, events)
    messages = conversation_messages(n, events - 1 - commands)
    built = Conversation.open(messages[0])
    for message in messages:
        built.receive(message)
    queue, owned = shape_of(n)
    at = messages[-1].provider_timestamp + timedelta(minutes=5)
    if owned and commands:
        built.assign(owner_of(n), SUPERVISOR, command_cause(SUPERVISOR, f"assign-{n}"), at)
        commands -= 1
    if queue is not Queue.NEW and commands:
        built.move(queue, SUPERVISOR, command_cause(SUPERVISOR, f"move-{n}"), at + timedelta(minutes=1))
    return built


def conversations(count: int, events: int) -> Iterator[Conversation]:
    for n in range(count):
        yield conversation(n, events)


# --- files: rows as routing's adapters write them --------------------------------------------------


def _copy_field(value: Any) -> bytes:
    """One field of COPY's text format."""
    if value is None:
        return b"\\N"
    if isinstance(value, datetime):
        return value.isoformat().encode()
    raw = value if isinstance(value, bytes) else str(value).encode()
    return raw.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def copy_line(values: Sequence[Any]) -> bytes:
    return b"\t".join(_copy_field(v) for v in values) + b"\n"


@dataclass
class Files:
    """The data set's rows, generated once: ``<table>.copy`` and ``<collection>.bson``."""

    directory: Path
    count: int
    events: int
    kinds: tuple[str, ...]
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)

    def path(self, name: str, kind: str) -> Path:
        return self.directory / f"{name}.{'copy' if kind == 'postgresql' else 'bson'}"


def generate(
    directory: Path,
    count: int = CONVERSATIONS,
    events: int = EVENTS_PER_CONVERSATION,
    kinds: Sequence[str] = tuple(STORES),
    now: datetime | None = None,
) -> Files:
    """Write the data set's rows for each store kind into ``directory`` (one pass of the domain)."""
    files = Files(directory, count, events, tuple(kinds))
    directory.mkdir(parents=True, exist_ok=True)
    expires_at = (now or datetime.now(UTC)) + DEFAULT_SEEN_RETENTION
    started = time.perf_counter()
    outs: dict[tuple[str, str], BinaryIO] = {}
    try:
        for kind in kinds:
            names = POSTGRES_TABLES if kind == "postgresql" else MONGO_COLLECTIONS
            for name in names:
                outs[(kind, name)] = files.path(name, kind).open("wb")
                files.rows[f"{kind}.{name}"] = 0

        def out(kind: str, name: str, data: bytes) -> None:
            outs[(kind, name)].write(data)
            files.rows[f"{kind}.{name}"] += 1

        for built in conversations(count, events):
            built.version = 1  # committed once (the commit raises it from 0), then published
            events_of = built.unpublished()
            if "postgresql" in kinds:
                encoded = _encoded(built)
                columns = _rows([(built, encoded)], handed_over=True)
                out("postgresql", "conversations", copy_line([c[0] for c in columns[:-1]] + [encoded]))
                ids, conversation_ids, sequences, types, data = _history_rows(events_of)
                for row in zip(ids, conversation_ids, sequences, types, data, strict=True):
                    out("postgresql", "conversation_history", copy_line([*row[:4], row[4].obj]))
                for seen in zip(*_seen_rows(events_of), strict=True):
                    out("postgresql", "conversation_seen_messages", copy_line([*seen, expires_at]))
            if "mongodb" in kinds:
                saved = _checked(built)
                out("mongodb", "conversations_commits", bson.encode(_commit_of(saved)))
                published = {**saved, "published_sequence": built.sequence, "outbox_pending": False}
                out("mongodb", "conversations", bson.encode(published))
                for e in events_of:
                    history = {
                        "_id": e.event_id,
                        "conversation_id": e.conversation_id,
                        "sequence": e.sequence,
                        "type": e.event_type,
                        "data": e.model_dump(mode="json"),
                    }
                    out("mongodb", "conversation_history", bson.encode(history))
                for conversation_id, message_id in zip(*_seen_rows(events_of), strict=True):
                    seen_doc = {
                        "_id": key_of(conversation_id, message_id),
                        "conversation_id": conversation_id,
                        "expires_at": expires_at,
                    }
                    out("mongodb", "conversation_seen_messages", bson.encode(seen_doc))
    finally:
        for handle in outs.values():
            handle.close()
    files.seconds = round(time.perf_counter() - started, 1)
    return files


# --- loading ------------------------------------------------------------------------------------------


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


async def _insert_file(collection: AsyncCollection[dict[str, Any]], path: Path) -> None:
    """Insert a file of BSON documents as they are, :data:`INSERT_CHUNK` per command, at most the
    MongoDB adapter's number of commands in flight (FerretDB's connection pool, docs/storage.md)."""
    options: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
    raw: Any = collection.with_options(codec_options=options)
    gate = asyncio.Semaphore(WRITE_COMMANDS_IN_FLIGHT)
    running: set[asyncio.Task[Any]] = set()

    async def insert(chunk: list[RawBSONDocument]) -> None:
        try:
            await raw.insert_many(chunk, ordered=False)
        finally:
            gate.release()

    async def send(chunk: list[RawBSONDocument]) -> None:
        await gate.acquire()
        for done in [t for t in running if t.done()]:
            running.discard(done)
            done.result()  # a failed insert stops the load
        running.add(asyncio.create_task(insert(chunk)))

    with path.open("rb") as source:
        chunk: list[RawBSONDocument] = []
        for doc in bson.decode_file_iter(source, options):
            chunk.append(doc)
            if len(chunk) == INSERT_CHUNK:
                await send(chunk)
                chunk = []
        if chunk:
            await send(chunk)
    await asyncio.gather(*running)


async def load_files(store: Store, files: Files) -> None:
    """Load generated rows into an empty store: on PostgreSQL routing's tables and indexes first
    (its migrations), then the rows; on MongoDB the documents, then routing's indexes
    (``ensure_indexes``: building them once is cheaper on FerretDB than with every insert)."""
    if store.kind == "postgresql":
        await repository_of(store).ensure_indexes()
        async with store.postgres.connection() as conn:
            for table, columns in POSTGRES_TABLES.items():
                async with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    with files.path(table, store.kind).open("rb") as source:
                        while block := source.read(1 << 20):
                            await copy.write(block)
            # the planner's statistics, as a server that has been running would have them
            await conn.execute("ANALYZE " + ", ".join(POSTGRES_TABLES))
        return
    for name in MONGO_COLLECTIONS:
        await _insert_file(store.db[name], files.path(name, store.kind))
    await repository_of(store).ensure_indexes()


async def load(store: Store, count: int = CONVERSATIONS, events: int = EVENTS_PER_CONVERSATION) -> int:
    """Generate the data set and load it into ``store`` (empty); returns the history entries."""
    directory = Path(tempfile.mkdtemp(prefix="parley-bench-data-"))
    try:
        files = generate(directory, count, events, (store.kind,))
        await load_files(store, files)
        return files.rows[f"{store.kind}.conversation_history"]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- one copy per store for a run ------------------------------------------------------------------


@dataclass
class Place:
    """Where one store's copy of the data set lives: a PostgreSQL schema or a MongoDB database."""

    kind: str
    name: str
    url: str
    writers: int = 0
    """Benchmarks that wrote to it so far."""


RELOADED = {"postgresql": True, "mongodb": False}
"""Whether a store's copy is loaded again after a benchmark wrote to it. PostgreSQL loads the data
set in about a minute; FerretDB took 33-51 s for 2,500 conversations here (about 15 minutes at
50,000), so on it the writers share one copy, each on conversations no earlier writer touched
(:meth:`Preloaded.slice_of`)."""


class Preloaded:
    """The data set on each store of :data:`STORES` for one run of ``make bench``.

    :meth:`url` hands a benchmark the URL of a copy: loaded on first use and reused by the next
    benchmark if the previous one only read it. After a benchmark that wrote to it, PostgreSQL's
    copy is loaded again (into a new schema, the old one dropped); FerretDB's is kept
    (:data:`RELOADED`), and the next writer takes the next slice of conversations
    (:meth:`slice_of`), so no benchmark reads what another changed; the collections have grown
    by the earlier writers' rows (a few thousand beside a million). :meth:`close` drops them.
    """

    def __init__(self, count: int | None = None, events: int = EVENTS_PER_CONVERSATION) -> None:
        self.count = count if count is not None else scaled(CONVERSATIONS, 500)
        self.events = events
        self.files: Files | None = None
        self.places: dict[str, Place] = {}
        self.loads: list[dict[str, Any]] = []

    def describe(self) -> dict[str, Any]:
        return {
            "conversations": self.count,
            "history_entries": self.count * self.events,
            "channels": CHANNELS,
            "agents": AGENTS,
            "scale": SCALE,
            "generated_s": self.files.seconds if self.files else None,
            "loads": list(self.loads),
            "reloaded_after_writes": {kind: RELOADED[kind] for kind in STORES},
        }

    def url(self, kind: str, *, changes: bool) -> str:
        """The URL of a copy on the ``kind`` store no earlier benchmark changed where this one
        works; ``changes``: the caller writes to it (on its :meth:`slice_of` conversations)."""
        place = self.places.get(kind)
        if place is None or (place.writers and RELOADED[kind]):
            if place is not None:
                del self.places[kind]
                _drop(place)
            place = self._load(kind)
        if changes:
            place.writers += 1
        return place.url

    def slice_of(self, kind: str) -> int:
        """Which slice of the conversations the last writer handed :meth:`url` works on: 0 on a
        fresh copy, 1 for the second writer on a copy kept, and so on."""
        return max(0, self.places[kind].writers - 1)

    def _load(self, kind: str) -> Place:
        """A new place for ``kind``'s copy, registered before it is filled (so :meth:`close`
        drops it even if the load is interrupted), then loaded."""
        if self.files is None:
            directory = Path(tempfile.mkdtemp(prefix="parley-bench-data-"))
            entries = self.count * self.events
            say(f"data set: generating {self.count} conversations, {entries} history entries")
            self.files = generate(directory, self.count, self.events, tuple(STORES))
            say(f"data set: generated in {self.files.seconds} s")
        name = f"benchdata{uuid.uuid4().hex[:10]}"
        if kind == "postgresql":
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            place = Place(kind, name, in_schema(POSTGRES, name))
        else:
            place = Place(kind, name, mongo_database_url(name))
        self.places[kind] = place
        started = time.perf_counter()
        files = self.files

        async def work() -> None:
            store = await open_store(place.url)
            try:
                await load_files(store, files)
            finally:
                await store.close()

        asyncio.run(work())
        seconds = round(time.perf_counter() - started, 1)
        self.loads.append({"store": kind, "seconds": seconds})
        say(f"data set: loaded into {kind} in {seconds} s")
        return place

    def close(self) -> None:
        for place in self.places.values():
            _drop(place)
        self.places.clear()
        if self.files is not None:
            shutil.rmtree(self.files.directory, ignore_errors=True)
            self.files = None


def _drop(place: Place) -> None:
    if place.kind == "postgresql":
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(place.name)))
    else:
        client: MongoClient[dict[str, Any]] = MongoClient(MONGO)
        try:
            client.drop_database(place.name)
        finally:
            client.close()


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
