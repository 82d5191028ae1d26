"""MongoDB plumbing: the async client (PyMongo's AsyncMongoClient) and the idempotency helper.

Parley uses only what MongoDB 7/8 and FerretDB 1.24 both support (see docs/storage.md):
single-document atomic updates, unique indexes, conditional updates; no multi-document
transactions and no change streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from pymongo import AsyncMongoClient, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.uri_parser import parse_uri

DUPLICATE_KEY = 11000
"""The server's error code for a unique-key violation (MongoDB and FerretDB alike)."""

MAX_WRITE_STATEMENTS = 20
"""Most statements sent in one write command. FerretDB 1.24 holds a connection of its pool for
every statement of a write command that matched a document until the whole command ends, and its
SQLite backend has 100 connections per database: a command of 100 matching statements is never
answered, and later writes to that database then hang too (docs/storage.md)."""

WRITE_COMMANDS_IN_FLIGHT = 2
"""Most bulk write commands one process (one event loop) has in flight on one database: with
:data:`MAX_WRITE_STATEMENTS` that is at most 2 x 21 of FerretDB's 100 connections, so two such
processes (routing replicas) and the other services' single-document writes fit beside them. Four
concurrent writers of 50-statement chunks hung FerretDB (tests/integration/test_store.py)."""

_write_gates: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = WeakKeyDictionary()
"""The bulk-write gate of each database, per event loop (a semaphore belongs to one loop, as a
client does); an entry goes with its loop."""


def _write_gate(collection: AsyncCollection[dict[str, Any]]) -> asyncio.Semaphore:
    gates = _write_gates.setdefault(asyncio.get_running_loop(), {})
    name = collection.database.name
    if name not in gates:
        gates[name] = asyncio.Semaphore(WRITE_COMMANDS_IN_FLIGHT)
    return gates[name]


async def bulk_write_chunked(
    collection: AsyncCollection[dict[str, Any]], operations: Sequence[Any], *, ordered: bool
) -> int:
    """``bulk_write`` in chunks of at most :data:`MAX_WRITE_STATEMENTS` (in order when ``ordered``),
    at most :data:`WRITE_COMMANDS_IN_FLIGHT` chunks of this process at once on the database.

    Returns how many documents the statements matched (upserts included).
    """
    matched = 0
    gate = _write_gate(collection)
    for start in range(0, len(operations), MAX_WRITE_STATEMENTS):
        async with gate:
            result = await collection.bulk_write(
                list(operations[start : start + MAX_WRITE_STATEMENTS]), ordered=ordered
            )
        matched += result.matched_count + result.upserted_count
    return matched


DEFAULT_DATABASE = "parley"


def open_client(url: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[dict[str, Any]]:
    """A client for the URL; call in the lifespan (it belongs to the running event loop)."""
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        retryWrites=False,  # FerretDB has no retryable writes; every write here is idempotent
        appname="parley",
    )


def database_name(url: str) -> str:
    """The database named in the URL path, or ``parley``."""
    return parse_uri(url).get("database") or DEFAULT_DATABASE


def database(client: AsyncMongoClient[dict[str, Any]], url: str) -> AsyncDatabase[dict[str, Any]]:
    return client[database_name(url)]


async def ping(client: AsyncMongoClient[dict[str, Any]]) -> None:
    """Raise unless the store answers."""
    await client.admin.command("ping")


class MongoIdempotencyStore:
    """Remembers which keys (event ids, command idempotency keys) were already applied.

    Use it as ``if await store.seen(key): return await store.result(key)``, do the effects
    (themselves idempotent), then ``await store.record(key, result)``. Recording *after* the
    effects means a crash in between repeats idempotent effects rather than losing them.
    """

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        # _id is the key and unique by construction; expire old keys if a TTL is wanted later.
        await self.collection.create_index("recorded_at")

    async def result(self, key: str) -> Mapping[str, Any] | None:
        """The recorded result of a key, or None if it was never recorded."""
        doc = await self.collection.find_one({"_id": key})
        return None if doc is None else doc.get("result", {})

    async def record(self, key: str, result: Mapping[str, Any] | None = None) -> bool:
        """Record a key; False if it was already recorded (the first result is kept)."""
        try:
            await self.collection.insert_one(
                {"_id": key, "result": dict(result or {}), "recorded_at": datetime.now(UTC)}
            )
        except DuplicateKeyError:
            return False
        return True


async def _replace_or_insert(collection: AsyncCollection[dict[str, Any]], doc: dict[str, Any]) -> None:
    """``replace_one`` by ``_id`` with upsert. Two concurrent upserts of the same new ``_id`` (a
    writer and a reader rolling its claim forward) may both try the insert: MongoDB retries the
    loser as an update, FerretDB reports a duplicate key. The document exists then: replace it."""
    try:
        await collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)
    except DuplicateKeyError:
        await collection.replace_one({"_id": doc["_id"]}, doc)


class VersionConflict(Exception):
    """Another writer saved this version first: reload and try again."""


def _commit_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The version claim of a document: unique ``<id>:<version>``, carrying the document."""
    version = int(doc["version"])
    return {"_id": f"{doc['_id']}:{version}", "doc_id": doc["_id"], "version": version, "doc": doc}


class MongoVersionedDocuments:
    """Documents saved by version claims (see docs/storage.md).

    ``save(doc, version)`` first inserts ``<id>:<version>`` into ``<collection>_commits`` with the
    full document; the unique ``_id`` lets exactly one writer win each version on MongoDB and
    FerretDB alike (whose conditional updates are not atomic). The winner then writes the
    document itself. ``get`` rolls forward over any commit whose document write was interrupted.

    Only the newest claims need their copy of the document (to roll forward); older claims need
    only their ``_id`` (to refuse a stale writer). So every ``keep // 2`` versions the copies in
    claims older than the version just written are dropped: a document has at most
    ``keep // 2 + 1`` full copies among its claims, not ``1.5 * keep``.
    """

    def __init__(self, collection: AsyncCollection[dict[str, Any]], keep: int = 20) -> None:
        self.collection = collection
        self.commits = collection.database[f"{collection.name}_commits"]
        self.keep = keep

    async def ensure_indexes(self) -> None:
        await self.commits.create_index([("doc_id", 1), ("version", 1)], name="commits_by_version")

    def _prunes(self, version: int) -> bool:
        """Old claims are deleted every ``keep // 2`` versions rather than on every save: each
        delete reads the claims collection on FerretDB. Between ``keep`` and ``1.5 * keep``
        claims are kept per document."""
        return version > self.keep and self._strips(version)

    def _strips(self, version: int) -> bool:
        """Copies of the document in older claims are dropped every ``keep // 2`` versions."""
        return version % max(1, self.keep // 2) == 0

    @staticmethod
    def _older_copies(doc_id: Any, version: int) -> dict[str, Any]:
        return {"doc_id": doc_id, "version": {"$lt": version}, "doc": {"$exists": True}}

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        doc = await self.collection.find_one({"_id": doc_id})
        version = 0 if doc is None else int(doc.get("version", 0))
        while (commit := await self.commits.find_one({"_id": f"{doc_id}:{version + 1}"})) is not None:
            version += 1
            if "doc" in commit:  # an older claim without its copy: a newer one has it
                doc = commit["doc"]
                await _replace_or_insert(self.collection, doc)
        return doc

    async def save(self, doc: dict[str, Any]) -> None:
        """Save ``doc`` (with ``_id`` and its new ``version``); VersionConflict if that version exists."""
        doc_id, version = doc["_id"], int(doc["version"])
        try:
            await self.commits.insert_one(_commit_of(doc))
        except DuplicateKeyError as exc:
            raise VersionConflict(doc_id) from exc
        await _replace_or_insert(self.collection, doc)
        if self._strips(version):
            await self.commits.update_many(self._older_copies(doc_id, version), {"$unset": {"doc": ""}})
        if self._prunes(version):
            await self.commits.delete_many({"doc_id": doc_id, "version": {"$lt": version - self.keep}})

    async def claimed(self, doc_id: str, version: int) -> bool:
        """Whether some writer has claimed ``version`` of the document (a lookup by ``_id``)."""
        return await self.commits.find_one({"_id": f"{doc_id}:{version}"}, {"_id": 1}) is not None

    async def get_many(self, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Several documents as their projections say, in one query (no roll-forward).

        A projection behind its newest claim (a writer died in between) shows up as a conflict
        when saving the next version; reload those documents with :meth:`get`, which rolls them
        forward. Checking every claim here would read the claims collection on every batch, and
        FerretDB reads all of it for an ``$in`` (docs/storage.md).
        """
        if not doc_ids:
            return {}
        return {d["_id"]: d async for d in self.collection.find({"_id": {"$in": list(doc_ids)}})}

    async def save_many(self, docs: Sequence[dict[str, Any]]) -> set[str]:
        """Save several documents (each with its new ``version``) in a few round trips.

        Returns the ids whose version was claimed by someone else (nothing of theirs is written;
        reload and retry them); every other document is saved, as by :meth:`save`.
        """
        if not docs:
            return set()
        commits = [_commit_of(d) for d in docs]
        lost: set[str] = set()
        for start in range(0, len(commits), MAX_WRITE_STATEMENTS):
            chunk = commits[start : start + MAX_WRITE_STATEMENTS]
            try:
                await self.commits.insert_many(chunk, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                lost |= {chunk[e["index"]]["doc_id"] for e in errors}
        won = [d for d in docs if d["_id"] not in lost]
        if won:
            replacements = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in won]
            try:
                await bulk_write_chunked(self.collection, replacements, ordered=False)
            except BulkWriteError as exc:  # see _replace_or_insert: those exist now
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                for d in won:  # replacements are idempotent: redo them one by one
                    await _replace_or_insert(self.collection, d)
        copies = [
            self._older_copies(d["_id"], int(d["version"])) for d in won if self._strips(int(d["version"]))
        ]
        if copies:
            await self.commits.update_many({"$or": copies}, {"$unset": {"doc": ""}})
        old = [
            {"doc_id": d["_id"], "version": {"$lt": int(d["version"]) - self.keep}}
            for d in won
            if self._prunes(int(d["version"]))
        ]
        if old:
            await self.commits.delete_many({"$or": old})
        return lost

    async def find(self, query: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
        """Every document the query matches (at most ``limit`` when given): no silent cap, as
        the PostgreSQL adapters have none (a tenant's 501st channel used to go missing here)."""
        cursor = self.collection.find(query)
        return [d async for d in (cursor.limit(limit) if limit is not None else cursor)]
