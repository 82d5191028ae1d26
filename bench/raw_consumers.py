"""Hand-written baselines for the consumer benchmarks: a bare aiokafka ``getmany`` loop.

Each does the same store writes and produces the same number of events as the Parley consumer
it stands beside, with none of Parley's framework: no FastStream, no pydantic models, no domain
objects, no retry/DLQ middleware, no metrics or tracing. Offsets are committed once per batch.

    python -m bench.raw_consumers routing|policy <namespace> <database>
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from parley_events import qualify, topics
from parley_shared.mongo import MAX_WRITE_STATEMENTS as CHUNK
from parley_shared.mongo import bulk_write_chunked
from pymongo import AsyncMongoClient, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError

from bench.common import KAFKA, MONGO

BATCH = 200


async def routing_batch(db: Any, producer: AIOKafkaProducer, out: str, batch: list[dict[str, Any]]) -> None:
    """Routing's writes for a batch: read, claim, project, publish, history, mark published."""
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    for message in batch:
        by_conversation.setdefault(message["conversation_id"], []).append(message)
    ids = list(by_conversation)
    stored = {d["_id"]: d async for d in db.conversations.find({"_id": {"$in": ids}})}
    next_claims = [f"{i}:{int(stored.get(i, {}).get('version', 0)) + 1}" for i in ids]
    _ = [c async for c in db.conversations_commits.find({"_id": {"$in": next_claims}}, {"_id": 1})]
    docs, events = [], []
    for conversation_id, messages in by_conversation.items():
        doc = stored.get(conversation_id) or {
            "_id": conversation_id,
            "tenant_id": messages[0]["tenant_id"],
            "channel_id": messages[0]["channel_id"],
            "queue": "new",
            "sequence": 0,
            "version": 0,
            "published_sequence": 0,
            "recent": {},
        }
        for message in messages:
            if message["event_id"] in doc["recent"]:
                continue
            emitted = []
            if doc["sequence"] == 0:
                doc["sequence"] += 1
                emitted.append({"type": "created", "sequence": doc["sequence"]})
            doc["sequence"] += 1
            emitted.append(
                {"type": "message_added", "sequence": doc["sequence"], "content": message["content"]}
            )
            for event in emitted:
                event.update(
                    conversation_id=conversation_id, event_id=f"{conversation_id}:{event['sequence']}"
                )
            doc["recent"][message["event_id"]] = emitted
            doc["recent"] = dict(list(doc["recent"].items())[-20:])
            events.extend(emitted)
        doc["version"] += 1
        doc["outbox_pending"] = True
        docs.append(doc)
    claims = [
        {"_id": f"{d['_id']}:{d['version']}", "doc_id": d["_id"], "version": d["version"], "doc": d}
        for d in docs
    ]
    for start in range(0, len(claims), CHUNK):
        with contextlib.suppress(BulkWriteError):  # the baseline runs alone: no competing writer
            await db.conversations_commits.insert_many(claims[start : start + CHUNK], ordered=False)
    replacements = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs]
    await bulk_write_chunked(db.conversations, replacements, ordered=False)
    futures = [
        await producer.send(
            out,
            orjson.dumps(e),
            key=e["conversation_id"].encode(),
            headers=[("ce_type", f"parley.conversation.{e['type']}.v1".encode())],
        )
        for e in events
    ]
    await asyncio.gather(*futures)
    history = [{"_id": e["event_id"], **e} for e in events]
    for start in range(0, len(history), CHUNK):
        await db.conversation_history.insert_many(history[start : start + CHUNK], ordered=False)
    marks = [
        UpdateOne(
            {"_id": d["_id"]},
            {"$max": {"published_sequence": d["sequence"]}, "$set": {"outbox_pending": False}},
        )
        for d in docs
    ]
    await bulk_write_chunked(db.conversations, marks, ordered=False)
    await asyncio.gather(
        *(
            db.conversations_commits.find_one({"_id": f"{d['_id']}:{d['version'] + 1}"}, {"_id": 1})
            for d in docs
        )
    )


async def policy_batch(db: Any, producer: AIOKafkaProducer, out: str, batch: list[dict[str, Any]]) -> None:
    """Policy's writes per message: read the conversation's facts, replace them, publish the window."""
    futures = []
    for message in batch:
        doc = await db.policy_conversations.find_one({"_id": message["conversation_id"]}) or {}
        at = datetime.fromisoformat(message["provider_timestamp"])
        last = doc.get("last_customer_message_at")
        newer = last is None or at > last.replace(tzinfo=UTC)
        await db.policy_conversations.replace_one(
            {"_id": message["conversation_id"]},
            {
                "_id": message["conversation_id"],
                "tenant_id": message["tenant_id"],
                "channel_id": message["channel_id"],
                "last_customer_message_at": at if newer else last,
                "comments": doc.get("comments", {}),
            },
            upsert=True,
        )
        if newer:
            opened = {
                "conversation_id": message["conversation_id"],
                "closes_at": (at + timedelta(hours=24)).isoformat(),
            }
            futures.append(
                await producer.send(
                    out,
                    orjson.dumps(opened),
                    key=message["conversation_id"].encode(),
                    headers=[("ce_type", b"parley.reply_window.opened.v1")],
                )
            )
    await asyncio.gather(*futures)


async def main(kind: str, namespace: str, database: str) -> None:
    consumer = AIOKafkaConsumer(
        qualify(topics.MESSAGES_INBOUND.name, namespace),
        bootstrap_servers=KAFKA,
        group_id=f"{namespace}.raw-{kind}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, max_batch_size=512 * 1024
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    db = client[database]
    if kind == "routing":
        out, work = qualify(topics.CONVERSATIONS.name, namespace), routing_batch
    else:
        out, work = qualify(topics.REPLY_WINDOWS.name, namespace), policy_batch
    await consumer.start()
    await producer.start()
    try:
        while True:
            records = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            batch = [orjson.loads(r.value) for rs in records.values() for r in rs]
            if batch:
                await work(db, producer, out, batch)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
