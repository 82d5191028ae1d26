"""Routing, one process, on the preloaded store: messages per second, against a hand-written loop.

On each store (PostgreSQL, then the MongoDB adapter on FerretDB), each side on a fresh copy of the
data set (bench/dataset.py: 50,000 conversations, 500,000 history entries), the same messages:
:data:`MESSAGES` customer messages to :data:`ACTIVE` of the stored conversations spread over the
data set, round after round (so a batch of 200 holds 200 conversations, and later rounds find
them in routing's memory, as a partition's busy conversations would be).

* ``process``: the messages are produced to the inbound topic first; then one ``parley-routing``
  process, pinned to core 0, consumes them from the start. Rate = messages over the span of
  their ``message_added`` events' Kafka timestamps (start-up not counted). This is the target's
  figure: Kafka in and out, FastStream, the domain, the store.
* ``service``: the same records through routing's batch handler in this process
  (``on_inbound_batch``, batches of 200, core 0), publishing a no-op that builds each event's
  value and headers: routing without Kafka and FastStream.
* ``loop``: bench/raw_consumers.py, the statements routing's adapter issues for each batch, by
  hand (core 0, batches of 200): what the store allows when the statements are all there is.

The ratios process/loop (the target: at least 0.8) and service/loop say how much of the store's
rate routing keeps, and how much of what it loses is the consumer around the handler. A side that
does not finish within :data:`TIME_LIMIT_S` is reported with the rate of what it did (FerretDB).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer
from parley_events import Author, Content, Direction, MessageReceived, Provider, qualify, topics
from parley_routing.entrypoints.subscribers import on_inbound_batch
from parley_routing.service import ConversationService
from parley_shared.store import open_store

from bench import dataset
from bench.common import KAFKA, SERVER_CORE, STORES, namespace_of, pin, say, scaled, stack_env
from bench.consumers import produce
from bench.raw_consumers import MongoLoop, PostgresLoop
from bench.routing_cpu import NoRetry, Record, publish, records_of
from tests.support.processes import start_service

MESSAGES = scaled(6000, 400)
ACTIVE = scaled(2000, 100)
BATCH = 200
TIME_LIMIT_S = scaled(240, 30)
TARGET_PER_S = 500
TARGET_RATIO = 0.8
ADDED = "parley.conversation.message_added.v1"


SLICES = 3
"""Disjoint sets of conversations the data set offers writers (the three sides on a kept copy)."""


def messages_for(
    data_count: int, messages: int = MESSAGES, active: int = ACTIVE, slice_index: int = 0
) -> list[MessageReceived]:
    """Customer messages to ``active`` stored conversations spread over the data set, round after
    round, each newer than anything stored; ``slice_index`` (0 to :data:`SLICES` - 1) picks
    conversations no other slice has."""
    active = min(active, data_count // SLICES)
    step = max(SLICES, data_count // active // SLICES * SLICES)
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(messages):
        n, turn = (i % active) * step + slice_index % SLICES, i // active
        channel = dataset.channel_id(n)
        out.append(
            MessageReceived(
                event_id=f"msg_r{n}_{turn}",
                tenant_id=dataset.TENANT,
                channel_id=channel,
                provider=Provider.MESSENGER,
                account_id=f"page-{channel}",
                conversation_id=f"conv-data-{n}",
                conversation_key=f"dm:customer-{n}",
                direction=Direction.INBOUND,
                author=Author(id=f"customer-{n}"),
                content=Content(text=f"message {turn} again about order {n:06d}: still no parcel " * 2),
                provider_message_id=f"m_r{n}_{turn}",
                provider_timestamp=start + timedelta(seconds=turn),
                delivery_id=f"delivery-r{i}",
            )
        )
    return out


def _rate(done: int, seconds: float, expected: int) -> dict[str, Any]:
    return {
        "messages": done,
        "of": expected,
        "complete": done >= expected,
        "seconds": round(seconds, 3),
        "per_s": round(done / seconds, 1) if seconds > 0 else None,
    }


async def _drain(topic: str, expected: int, limit_s: float) -> dict[str, Any]:
    """Read ``topic`` from the start until ``expected`` message_added events or the time limit;
    their Kafka timestamps' span is the process's time."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    stamps: list[int] = []
    started = time.monotonic()
    deadline = started + limit_s
    try:
        while len(stamps) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                stamps += [r.timestamp for r in records if dict(r.headers).get("ce_type") == ADDED.encode()]
    finally:
        await consumer.stop()
    if len(stamps) < expected:  # fell short: what it did over the whole time it had
        return _rate(len(stamps), time.monotonic() - started, expected)
    return _rate(len(stamps), (max(stamps) - min(stamps)) / 1000, expected)


def process(url: str, messages: list[MessageReceived], work: Path) -> dict[str, Any]:
    with namespace_of("routing") as ns:
        asyncio.run(produce(ns, messages))
        service = start_service("parley-routing", stack_env(ns, ns, store_url=url), work)
        try:
            pin(service.process.pid, SERVER_CORE)
            service.wait_ready(60)  # a process that stops at start-up says why (its log)
            return asyncio.run(_drain(qualify(topics.CONVERSATIONS.name, ns), len(messages), TIME_LIMIT_S))
        finally:
            service.terminate()


async def _batches(
    apply_batch: Callable[[list[Record]], Awaitable[None]], records: list[Record]
) -> dict[str, Any]:
    """Apply the records in batches until done or :data:`TIME_LIMIT_S` (a batch still running
    then is cancelled and not counted)."""
    done = 0

    async def all_batches() -> None:
        nonlocal done
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            await apply_batch(batch)
            done += len(batch)

    started = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_batches(), TIME_LIMIT_S)
    return _rate(done, time.perf_counter() - started, len(records))


async def _service(url: str, records: list[Record]) -> dict[str, Any]:
    store = await open_store(url)
    try:
        handler = ConversationService(dataset.repository_of(store), publish)

        async def apply_batch(batch: list[Record]) -> None:
            await on_inbound_batch(handler, NoRetry(), batch)  # type: ignore[arg-type]

        return await _batches(apply_batch, records)
    finally:
        await store.close()


async def _loop(url: str, records: list[Record]) -> dict[str, Any]:
    store = await open_store(url)
    try:
        loop: Any = PostgresLoop(store.postgres) if store.kind == "postgresql" else MongoLoop(store.db)

        async def apply_batch(batch: list[Record]) -> None:
            await loop.batch([orjson.loads(r.value) for r in batch], datetime.now(UTC))

        return await _batches(apply_batch, records)
    finally:
        await store.close()


def in_process(work: Any, *args: Any) -> dict[str, Any]:
    """Run ``work`` in this process pinned to the server core and on uvloop, as the routing
    process runs."""
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        result: dict[str, Any] = uvloop.run(work(*args))
        return result
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def run(data: dataset.Preloaded, work: Path | None = None) -> dict[str, Any]:
    work = work or Path(tempfile.mkdtemp(prefix="parley-bench-routing-"))
    by_slice = [messages_for(data.count, slice_index=i) for i in range(SLICES)]
    records = [records_of(m) for m in by_slice]
    stores: dict[str, Any] = {}
    for kind in STORES:
        measured: dict[str, Any] = {}
        url = data.url(kind, changes=True)
        measured["process"] = process(url, by_slice[data.slice_of(kind)], work)
        say(f"  {kind} process: {measured['process']}")
        url = data.url(kind, changes=True)
        measured["service"] = in_process(_service, url, records[data.slice_of(kind)])
        say(f"  {kind} service: {measured['service']}")
        url = data.url(kind, changes=True)
        measured["loop"] = in_process(_loop, url, records[data.slice_of(kind)])
        say(f"  {kind} loop: {measured['loop']}")
        loop_rate = measured["loop"]["per_s"] or 0
        for side in ("process", "service"):
            rate = measured[side]["per_s"] or 0
            measured[f"{side}_to_loop"] = round(rate / loop_rate, 3) if loop_rate else None
        stores[kind] = measured
    postgres = stores.get("postgresql", {})
    return {
        "setup": {
            "messages": len(by_slice[0]),
            "conversations": len({m.conversation_id for m in by_slice[0]}),
            "batch": BATCH,
            "time_limit_s": TIME_LIMIT_S,
            "pinning": "the routing process, and this process for service and loop, on core 0",
        },
        "data": data.describe(),
        "stores": stores,
        "targets": {
            "postgresql_at_least_500_per_s": (postgres.get("process", {}).get("per_s") or 0) >= TARGET_PER_S,
            "postgresql_at_least_0.8_of_loop": (postgres.get("process_to_loop") or 0) >= TARGET_RATIO,
        },
    }
