"""Routing's Python CPU per message: the inbound handler over a backlog, on the real store.

Not part of ``make bench`` (it needs no machine of its own: it measures CPU time, not rates).
The records are what the broker hands the subscriber (JSON values, CloudEvents headers, a
partition); the handler is ``on_inbound_batch``, as the subscriber calls it, over
``ConversationService`` with the store of ``PARLEY_STORE_URL`` (a schema or database of its own,
dropped after) and a publish that builds what ``EventPublisher`` sends (value and headers) but
does not send it. Reported: process CPU seconds per message over the timed batches (after a
warm-up that creates the conversations), and cProfile's top functions by own time.

    python -m bench.routing_cpu [--messages 2000] [--conversations 300] [--profile out.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parley_events import ConversationEvent, MessageReceived, topics
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import MongoConversationRepository
from parley_routing.entrypoints.subscribers import on_inbound_batch
from parley_routing.service import ConversationService
from parley_shared.kafka import encode_event, event_headers
from parley_shared.store import open_store, store_kind

from bench.common import STORE_URL
from bench.consumers import backlog

STORE = STORE_URL
BATCH = 200
PARTITIONS = 16


@dataclass(slots=True)
class Record:
    """The fields of an aiokafka ConsumerRecord the handler reads."""

    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]
    partition: int
    topic: str = topics.MESSAGES_INBOUND.name
    offset: int = 0


def records_of(messages: list[MessageReceived]) -> list[Record]:
    out = []
    for m in messages:
        headers = event_headers(m, event_id=m.event_id, source="/bench", time=datetime.now(UTC))
        out.append(
            Record(
                value=encode_event(m),
                key=m.key().encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
                partition=hash(m.conversation_id) % PARTITIONS,
            )
        )
    return out


class NoRetry:
    async def run(self, work: Any, record: Any) -> None:
        await work()


async def publish(event: ConversationEvent) -> None:
    # what EventPublisher builds for each event, without the network
    event_headers(event, event_id=event.event_id, source="/routing", time=datetime.now(UTC))
    encode_event(event)


async def measure(messages: int, conversations: int, profile_to: str | None) -> dict[str, Any]:
    name = f"benchcpu{uuid.uuid4().hex[:8]}"
    url = STORE
    if store_kind(url) == "postgresql":
        from tests.support.postgres import schema_of_its_own

        schema = schema_of_its_own(url, name)
        url = await schema.__aenter__()
    else:
        schema = None
        url = f"{url.rstrip('/').rsplit('/', 1)[0]}/{name}"
    opened = await open_store(url)
    try:
        if opened.kind == "postgresql":
            repository: Any = PostgresConversationRepository(opened.postgres)
        else:
            repository = MongoConversationRepository(
                opened.db["conversations"], opened.db["conversation_history"]
            )
        await repository.ensure_indexes()
        service = ConversationService(repository, publish)
        records = records_of(backlog(messages + conversations, conversations))
        warm, timed = records[:conversations], records[conversations:]
        for start in range(0, len(warm), BATCH):
            await on_inbound_batch(service, NoRetry(), warm[start : start + BATCH])  # type: ignore[arg-type]
        profiler = cProfile.Profile() if profile_to else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for start in range(0, len(timed), BATCH):
            await on_inbound_batch(service, NoRetry(), timed[start : start + BATCH])  # type: ignore[arg-type]
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        report = io.StringIO()
        if profiler:
            pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(40)
            pstats.Stats(profiler, stream=report).sort_stats("cumulative").print_stats(60)
    finally:
        if opened.kind != "postgresql" and opened.mongo_client is not None:
            await opened.mongo_client.drop_database(name)
        await opened.close()
        if schema is not None:
            await schema.__aexit__(None, None, None)
    return {
        "store": opened.kind,
        "messages": len(timed),
        "conversations": conversations,
        "cpu_ms_per_message": round(1000 * cpu / len(timed), 3),
        "wall_ms_per_message": round(1000 * wall / len(timed), 3),
        "profile": report.getvalue(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--profile", help="write cProfile's top functions here (slows the run)")
    args = parser.parse_args()
    result = asyncio.run(measure(args.messages, args.conversations, args.profile))
    profile = result.pop("profile")
    if args.profile:
        Path(args.profile).write_text(profile)
    print(result)


if __name__ == "__main__":
    main()
