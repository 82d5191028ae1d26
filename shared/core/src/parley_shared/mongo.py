"""MongoDB plumbing: the async client (PyMongo's AsyncMongoClient) and the idempotency helper.

Parley uses only what MongoDB 7/8 and FerretDB 1.24 both support (see docs/storage.md):
single-document atomic updates, unique indexes, conditional updates; no multi-document
transactions and no change streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.uri_parser import parse_uri

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


class VersionConflict(Exception):
    """Another writer saved this version first: reload and try again."""


class MongoVersionedDocuments:
    """Documents saved by version claims (see docs/storage.md).

    ``save(doc, version)`` first inserts ``<id>:<version>`` into ``<collection>_commits`` with the
    full document; the unique ``_id`` lets exactly one writer win each version on MongoDB and
    FerretDB alike (whose conditional updates are not atomic). The winner then writes the
    document itself. ``get`` rolls forward over any commit whose document write was interrupted.
    """

    def __init__(self, collection: AsyncCollection[dict[str, Any]], keep: int = 20) -> None:
        self.collection = collection
        self.commits = collection.database[f"{collection.name}_commits"]
        self.keep = keep

    async def ensure_indexes(self) -> None:
        await self.commits.create_index([("doc_id", 1), ("version", 1)], name="commits_by_version")

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        doc = await self.collection.find_one({"_id": doc_id})
        version = 0 if doc is None else int(doc.get("version", 0))
        while (commit := await self.commits.find_one({"_id": f"{doc_id}:{version + 1}"})) is not None:
            doc = commit["doc"]
            version += 1
            await self.collection.replace_one({"_id": doc_id}, doc, upsert=True)
        return doc

    async def save(self, doc: dict[str, Any]) -> None:
        """Save ``doc`` (with ``_id`` and its new ``version``); VersionConflict if that version exists."""
        doc_id, version = doc["_id"], int(doc["version"])
        try:
            await self.commits.insert_one(
                {"_id": f"{doc_id}:{version}", "doc_id": doc_id, "version": version, "doc": doc}
            )
        except DuplicateKeyError as exc:
            raise VersionConflict(doc_id) from exc
        await self.collection.replace_one({"_id": doc_id}, doc, upsert=True)
        if version > self.keep:
            await self.commits.delete_many({"doc_id": doc_id, "version": {"$lt": version - self.keep}})

    async def find(self, query: dict[str, Any], limit: int = 500) -> list[dict[str, Any]]:
        return [d async for d in self.collection.find(query).limit(limit)]
