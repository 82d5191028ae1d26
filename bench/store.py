"""Routing's state updates against sequential single-document writes, on the store ``make infra-up`` runs.

The same messages are applied twice to fresh databases:

* **sequential**: the conversation state each message leads to is computed in memory first (not
  timed); then, timed, one ``replace_one`` of the conversation document per message, each
  awaited before the next: the simplest correct way to keep the state.
* **routing**: ``ConversationService.on_messages`` in batches of 200, as the consumer calls it:
  one read of the batch's conversations, the domain, one bulk version claim and one bulk
  document write, the history, and the published marks (publishing itself is a no-op here).

Two mixes: messages spread over many conversations (about one per conversation per batch) and
a busier one (several messages per conversation in each batch).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from parley_routing.adapters.stores import MongoConversationRepository
from parley_routing.domain.model import Conversation
from parley_routing.service import ConversationService
from parley_shared.mongo import open_client

from bench.common import MONGO, say
from bench.consumers import backlog

BATCH = 200


async def sequential(db: Any, messages: list[Any]) -> float:
    states: dict[str, Conversation] = {}
    documents = []
    for message in messages:
        conversation = states.get(message.conversation_id) or Conversation.open(message)
        conversation.receive(message)
        conversation.version += 1
        states[message.conversation_id] = conversation
        documents.append(conversation.to_document())
    collection = db["conversations"]
    started = time.perf_counter()
    for document in documents:
        await collection.replace_one({"_id": document["_id"]}, document, upsert=True)
    return time.perf_counter() - started


async def batched(db: Any, messages: list[Any]) -> float:
    repository = MongoConversationRepository(db["conversations"], db["conversation_history"])
    await repository.ensure_indexes()

    async def publish(_: Any) -> None:
        return None

    service = ConversationService(repository, publish)
    started = time.perf_counter()
    for start in range(0, len(messages), BATCH):
        await service.on_messages(messages[start : start + BATCH])
    return time.perf_counter() - started


async def measure(messages: list[Any]) -> dict[str, float]:
    client = open_client(MONGO)  # tz-aware, as every Parley process reads the store
    out = {}
    try:
        for name, work in (("sequential", sequential), ("routing", batched)):
            database = f"benchstore{uuid.uuid4().hex[:8]}"
            try:
                seconds = await work(client[database], messages)
            finally:
                await client.drop_database(database)
            out[f"{name}_per_s"] = round(len(messages) / seconds, 1)
    finally:
        await client.close()
    out["ratio"] = round(out["routing_per_s"] / out["sequential_per_s"], 3)
    return out


def run(messages: int = 2000) -> dict[str, Any]:
    mixes = {
        "spread": {"conversations": 1000, "per_conversation_per_batch": "about 1"},
        "busy": {"conversations": 50, "per_conversation_per_batch": "about 4"},
    }
    results: dict[str, Any] = {}
    for name, mix in mixes.items():
        measured = asyncio.run(measure(backlog(messages, mix["conversations"])))
        say(f"  {name}: {measured}")
        results[name] = {**mix, "messages": messages, **measured}
    return {
        "setup": {
            "batch": BATCH,
            "store": "the FerretDB that make infra-up runs; one process, nothing pinned",
            "sequential": "one replace_one per message, awaited in turn (states precomputed)",
            "routing": "ConversationService.on_messages per batch, publish a no-op",
        },
        "mixes": results,
    }
