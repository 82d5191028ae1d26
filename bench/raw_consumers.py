"""The hand-written loops routing is measured against: the same store statements, nothing else.

Each loop applies batches of normalized messages (the JSON values of the inbound records, decoded
with orjson) to conversations already in the store, and issues per batch the statements routing's
adapter issues for the same batch, in the same order, with the same batching, but built by hand:
no Kafka, no FastStream, no domain objects, no pydantic, no retry middleware, no metrics. Like
routing, a loop keeps the conversations it has read in memory and reads only those it has not
seen. It publishes nothing (there is no Kafka here): its rate is what the store allows when the
statements are all there is.

* :class:`PostgresLoop`: the statements of ``PostgresConversationRepository`` (their very SQL, from
  the adapter): the batch's unknown conversations read by id; then one transaction that deletes
  the previous batch's outbox rows and settles its published marks, locks the rows in id order,
  updates them version-checked from arrays in binary format (taking the outbox lease), and inserts
  the seen message ids, the history and the outbox rows (pipelined).
* :class:`MongoLoop`: the statements of ``MongoConversationRepository`` (FerretDB-safe): one
  ``$in`` read of unknown conversations, version claims (``insert_many`` in chunks of 20), the
  documents (``ReplaceOne`` upserts in chunks of 20, two commands in flight), the seen message
  ids, then the history inserts, the published marks (``$max``/``$set`` by ``_id``) and one
  ``find_one`` per conversation for a newer claim.

The events a loop writes are those routing's domain writes for these messages: one
``message_added`` per message, and a ``status_changed`` back to new when a customer writes into a
pending or resolved conversation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from parley_routing.adapters.postgres import (
    _INSERT_HISTORY,
    _INSERT_OUTBOX,
    _INSERT_SEEN,
    _LOCK,
    _SELECT_PUBLISHED,
    _SETTLE_MARKS,
    _SETTLE_OUTBOX,
    _UPDATE,
    DEFAULT_OUTBOX_LEASE,
)
from parley_routing.adapters.stores import DEFAULT_SEEN_RETENTION
from parley_shared.mongo import MAX_WRITE_STATEMENTS, bulk_write_chunked
from parley_shared.postgres import Pool, jsonb
from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

RECENT = 50
SEEN = 200
ADDED = "parley.conversation.message_added.v1"
STATUS = "parley.conversation.status_changed.v1"


def _event_id(conversation_id: str, sequence: int) -> str:
    return "cev_" + hashlib.sha256(f"{conversation_id}\x1f{sequence}".encode()).hexdigest()[:32]


def _seen_key(conversation_id: str, message_id: str) -> str:
    return ":".join(p.replace("%", "%25").replace(":", "%3A") for p in (conversation_id, message_id))


def _at(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def apply(doc: dict[str, Any], message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message applied to a conversation's document by hand; the events it causes (JSON)."""
    if any(r["cause"] == message["event_id"] for r in doc["recent"]):
        return []
    at = _at(message["provider_timestamp"])
    conversation_id = doc["_id"]
    events: list[dict[str, Any]] = []

    def event(kind: str, **data: Any) -> None:
        doc["sequence"] += 1
        body = {
            "event_id": _event_id(conversation_id, doc["sequence"]),
            "conversation_id": conversation_id,
            "tenant_id": doc["tenant_id"],
            "channel_id": doc["channel_id"],
            "sequence": doc["sequence"],
            "occurred_at": message["provider_timestamp"],
            **data,
        }
        events.append({"type": kind, "data": body})

    event(
        ADDED,
        message_event_id=message["event_id"],
        direction=message["direction"],
        author=message["author"],
        content=message["content"],
        provider_message_id=message["provider_message_id"],
        provider_timestamp=message["provider_timestamp"],
        standby=False,
    )
    doc["seen_messages"] = [*doc["seen_messages"], message["provider_message_id"]][-SEEN:]
    if message["direction"] == "inbound" and doc["queue"] != "new":
        event(STATUS, from_queue=doc["queue"], to_queue="new", reason="reopened", actor_id=None)
        doc["queue"] = "new"
    if at > _at(doc["last_activity_at"]):
        doc["last_activity_at"] = at
    doc["recent"] = [*doc["recent"], {"cause": message["event_id"], "events": events}][-RECENT:]
    return events


def _grouped(messages: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        grouped.setdefault(message["conversation_id"], []).append(message)
    return grouped


class PostgresLoop:
    """Routing's statements on PostgreSQL, by hand."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.docs: dict[str, dict[str, Any]] = {}
        self.sent_events: list[str] = []
        self.sent_marks: dict[str, int] = {}

    async def batch(self, messages: Sequence[dict[str, Any]], now: datetime) -> int:
        """Apply one batch; returns the events written."""
        grouped = _grouped(messages)
        missing = [i for i in grouped if i not in self.docs]
        if missing:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    _SELECT_PUBLISHED + " WHERE c.id = ANY(%s)", (self.sent_events, missing)
                )
                for doc, _published in await cursor.fetchall():
                    self.docs[doc["_id"]] = doc
        changed: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for conversation_id, batch in grouped.items():
            doc = self.docs[conversation_id]  # the benchmark's messages are for stored conversations
            caused = [e for m in batch for e in apply(doc, m)]
            if caused:
                doc["version"] += 1
                changed.append(doc)
                events.extend(caused)
        changed.sort(key=lambda d: d["_id"])
        rows = (
            [d["_id"] for d in changed],
            [d["tenant_id"] for d in changed],
            [d["channel_id"] for d in changed],
            [d["queue"] for d in changed],
            [d.get("owner_id") for d in changed],
            [_at(d["last_activity_at"]) for d in changed],
            [d["version"] for d in changed],
            [d["sequence"] for d in changed],
            [d["sequence"] for d in changed],
            [jsonb(orjson.dumps(d)) for d in changed],
        )
        ordered = sorted(events, key=lambda e: e["data"]["event_id"])
        history = (
            [e["data"]["event_id"] for e in ordered],
            [e["data"]["conversation_id"] for e in ordered],
            [e["data"]["sequence"] for e in ordered],
            [e["type"] for e in ordered],
            [jsonb(orjson.dumps(e["data"])) for e in ordered],
        )
        seen = sorted(
            {
                (e["data"]["conversation_id"], e["data"]["provider_message_id"])
                for e in events
                if e["type"] == ADDED
            }
        )
        async with self.pool.connection() as conn, conn.transaction():
            if self.sent_events:
                await conn.execute(_SETTLE_OUTBOX, (self.sent_events,))
            if self.sent_marks:
                ids = sorted(self.sent_marks)
                await conn.execute(_SETTLE_MARKS, (ids, [self.sent_marks[i] for i in ids]))
            if len(changed) > 1:
                await conn.execute(_LOCK, (rows[0],))
            # the outbox lease first, as routing's commit holds it while it publishes
            cursor = await conn.execute(_UPDATE, (DEFAULT_OUTBOX_LEASE, *rows))
            if len(await cursor.fetchall()) != len(changed):
                raise RuntimeError("a conversation changed under the loop: it must run alone")
            async with conn.pipeline():
                await conn.execute(
                    _INSERT_SEEN, (now + DEFAULT_SEEN_RETENTION, [c for c, _ in seen], [m for _, m in seen])
                )
                await conn.execute(_INSERT_HISTORY, history)
                await conn.execute(_INSERT_OUTBOX, history[:3])
        # what routing does after publishing: settled by the next batch's transaction
        self.sent_events = history[0]
        self.sent_marks = {d["_id"]: d["sequence"] for d in changed}
        return len(events)


class MongoLoop:
    """Routing's statements on MongoDB (FerretDB-safe), by hand."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db
        self.docs: dict[str, dict[str, Any]] = {}

    async def _insert(self, name: str, docs: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(docs), MAX_WRITE_STATEMENTS):
            await self.db[name].insert_many(list(docs[start : start + MAX_WRITE_STATEMENTS]), ordered=False)

    async def batch(self, messages: Sequence[dict[str, Any]], now: datetime) -> int:
        grouped = _grouped(messages)
        missing = [i for i in grouped if i not in self.docs]
        if missing:
            async for doc in self.db.conversations.find({"_id": {"$in": missing}}):
                self.docs[doc["_id"]] = doc
        changed: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for conversation_id, batch in grouped.items():
            doc = self.docs[conversation_id]
            caused = [e for m in batch for e in apply(doc, m)]
            if caused:
                doc["version"] += 1
                doc["outbox_pending"] = True
                changed.append(doc)
                events.extend(caused)
        claims = [
            {"_id": f"{d['_id']}:{d['version']}", "doc_id": d["_id"], "version": d["version"], "doc": d}
            for d in changed
        ]
        await self._insert("conversations_commits", claims)
        replacements = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in changed]
        await bulk_write_chunked(self.db.conversations, replacements, ordered=False)
        copies = [
            {"doc_id": d["_id"], "version": {"$lt": d["version"]}, "doc": {"$exists": True}}
            for d in changed
            if d["version"] % 10 == 0
        ]
        if copies:
            await self.db.conversations_commits.update_many({"$or": copies}, {"$unset": {"doc": ""}})
        old = [
            {"doc_id": d["_id"], "version": {"$lt": d["version"] - 20}}
            for d in changed
            if d["version"] > 20 and d["version"] % 10 == 0
        ]
        if old:
            await self.db.conversations_commits.delete_many({"$or": old})
        expires_at = now + DEFAULT_SEEN_RETENTION
        seen = [
            {
                "_id": _seen_key(e["data"]["conversation_id"], e["data"]["provider_message_id"]),
                "conversation_id": e["data"]["conversation_id"],
                "expires_at": expires_at,
            }
            for e in events
            if e["type"] == ADDED
        ]
        await self._insert("conversation_seen_messages", seen)
        # what routing does after publishing: the history, then the published marks
        history = [
            {
                "_id": e["data"]["event_id"],
                "conversation_id": e["data"]["conversation_id"],
                "sequence": e["data"]["sequence"],
                "type": e["type"],
                "data": e["data"],
            }
            for e in events
        ]
        await self._insert("conversation_history", history)
        marks = [
            UpdateOne(
                {"_id": d["_id"]},
                {"$max": {"published_sequence": d["sequence"]}, "$set": {"outbox_pending": False}},
            )
            for d in changed
        ]
        await bulk_write_chunked(self.db.conversations, marks, ordered=False)
        for d in changed:
            await self.db.conversations_commits.find_one(
                {"_id": f"{d['_id']}:{d['version'] + 1}"}, {"_id": 1}
            )
            d["published_sequence"] = d["sequence"]
            d["outbox_pending"] = False
        return len(events)
