"""End to end: from the webhook POST to the conversation event a consumer sees, at fixed rates.

On each store (PostgreSQL, then the MongoDB adapter on FerretDB), on a fresh copy of the data set
(bench/dataset.py), ingest, the normalizer and routing run as processes on a namespace of their
own; a WhatsApp channel is registered. An open-loop sender (one task per delivery, started on a fixed schedule
whether or not earlier ones were answered) posts signed deliveries with distinct message ids
from core 1; a consumer of ``parley.conversations.v1`` in the same process notes when each
message's ``message_added`` arrives. A warm-up opens the conversations of 1,000 returning
customers before the clock starts; in the measured run one delivery in five comes from a new
customer and opens a conversation, evenly spread (until 2026-12-01 the first 1,000 deliveries
of each run opened the conversations, all in its first seconds).

Latency = arrival - send start. Each rate's ``stages`` split that time by the records' own
timestamps: ingest (to the archived raw record), the normalizer (to the normalized event, its
wait on the raw topic included) and routing (to the conversation event, its wait included).

Baseline, in the same run: a raw aiokafka produce-to-consume round trip at the same rate (one
producer with acks=all, one consumer), nothing else.

A rate whose events do not all arrive within the drain time has no p99 (``complete`` false: the
pipeline fell behind); its p50/p99 over what did arrive are kept as ``seen_*``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from parley_events import Provider, qualify, topics

from bench import dataset
from bench.common import (
    CLIENT_CORE,
    KAFKA,
    STORES,
    namespace_of,
    say,
    scaled,
    sign,
    stack_env,
    summary_ms,
    unpin,
    whatsapp_delivery,
)
from bench.sender import Post, send_open_loop
from tests.support.kafka import publish_channel
from tests.support.processes import start_service

PHONE = "15550009999"
SECONDS = scaled(10, 2)
DRAIN_S = scaled(150, 30)
CUSTOMERS = 1000
"""Returning customers: each one's conversation is opened before the clock starts."""
NEW_EVERY = 5
"""One delivery in this many comes from a customer never seen before and opens a conversation
(spread evenly over the run, as in steady traffic; the others go round the returning customers)."""
RATES = (500, 1000)
TARGET_P99_MS = 100.0
WARM_UP_RATE = 200
"""Before the clock starts, one delivery from each returning customer, waited for: the services'
consumer groups have joined and the returning customers' conversations are open."""
_new_customers = itertools.count()


async def _assigned_consumer(topic: str) -> AIOKafkaConsumer:
    """A consumer already holding every partition of ``topic`` at its end (no group, no wait)."""
    probe = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await probe.start()
    try:
        partitions = await probe.partitions_for(topic)
    finally:
        await probe.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    await consumer.seek_to_end()
    return consumer


async def _consume_until(
    consumer: AIOKafkaConsumer,
    seen: dict[str, float],
    wanted: set[str] | None,
    key_of: Any,
    stop_at: float,
    written: dict[str, float] | None = None,
) -> None:
    """Note when each key first arrives, until every ``wanted`` key has (None: until cancelled);
    and in ``written``, when its record was produced (the record's timestamp, wall clock)."""
    while (wanted is None or not wanted <= seen.keys()) and time.monotonic() < stop_at:
        batch = await consumer.getmany(timeout_ms=200)
        now = time.monotonic()
        for records in batch.values():
            for record in records:
                key = key_of(record)
                if key is not None and key not in seen:
                    seen[key] = now
                    if written is not None:
                        written[key] = record.timestamp / 1000


async def _read_topic(topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end now."""
    consumer = await _assigned_consumer(topic)
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        await consumer.seek_to_beginning()
        out: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def stages(namespace: str, sent_wall: dict[str, float], added: dict[str, float]) -> dict[str, Any]:
    """Where the time went, per message (p50 and p99 in ms), from the records' own timestamps:
    ``ingest`` from the POST to the archived raw record, ``normalizer`` from there to the
    normalized event (the wait on the raw topic included), ``routing`` from there to the
    conversation event (its wait included)."""
    archived: dict[str, float] = {}
    for record in await _read_topic(qualify(topics.WEBHOOKS_RAW.name, namespace)):
        archived[str(orjson.loads(record.value)["delivery_id"])] = record.timestamp / 1000
    normalized: dict[str, tuple[float, str]] = {}
    for record in await _read_topic(qualify(topics.MESSAGES_INBOUND.name, namespace)):
        event = orjson.loads(record.value)
        if "provider_message_id" in event and "delivery_id" in event:
            normalized[str(event["provider_message_id"])] = (
                record.timestamp / 1000,
                str(event["delivery_id"]),
            )
    spans: dict[str, list[float]] = {"ingest": [], "normalizer": [], "routing": []}
    for message_id, posted in sent_wall.items():
        if message_id not in normalized or message_id not in added:
            continue
        at, delivery = normalized[message_id]
        if delivery not in archived:
            continue
        spans["ingest"].append(archived[delivery] - posted)
        spans["normalizer"].append(at - archived[delivery])
        spans["routing"].append(added[message_id] - at)
    return {
        name: {"count": len(values), **{k: v for k, v in summary_ms(values).items() if k != "p999_ms"}}
        for name, values in spans.items()
        if values
    }


def _summary(sent: dict[str, float], seen: dict[str, float], rate: int) -> dict[str, Any]:
    latencies = [seen[k] - sent[k] for k in sent if k in seen]
    out: dict[str, Any] = {"rate": rate, "sent": len(sent), "seen": len(latencies)}
    out["complete"] = len(latencies) == len(sent)
    figures = summary_ms(latencies)
    if out["complete"]:
        return {**out, **figures}
    return {**out, "p50_ms": None, "p99_ms": None, **{f"seen_{k}": v for k, v in figures.items()}}


def customers_of(deliveries: int) -> list[str]:
    """The sender (WhatsApp id) of each of ``deliveries``: every :data:`NEW_EVERY`-th one a new
    customer, the others the returning customers in turn."""
    out = []
    for n in range(deliveries):
        if n % NEW_EVERY == NEW_EVERY - 1:
            out.append(f"1556{next(_new_customers):07d}")
        else:
            out.append(f"1555{n % CUSTOMERS:07d}")
    return out


async def parley_at(ingest_url: str, namespace: str, rate: int, customers: list[str]) -> dict[str, Any]:
    """``customers[n]`` sends the n-th delivery, at ``rate`` a second."""
    consumer = await _assigned_consumer(qualify(topics.CONVERSATIONS.name, namespace))

    def key_of(record: Any) -> str | None:
        if dict(record.headers).get("ce_type") != b"parley.conversation.message_added.v1":
            return None
        return str(orjson.loads(record.value)["provider_message_id"])

    seen: dict[str, float] = {}
    added: dict[str, float] = {}
    posts = []
    start = time.time()
    for n, customer in enumerate(customers):
        message_id = f"wamid.bench{uuid.uuid4().hex}"
        # dated when it is due to be sent, as a provider dates a message when it is written: a
        # message dated before its conversation's last activity is looked up in the store as a
        # possible late redelivery (routing's _may_be_forgotten)
        body = whatsapp_delivery(PHONE, customer, message_id=message_id, timestamp=start + n / rate)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
        posts.append(Post(message_id, "/webhooks/meta", body, headers))
    reader = asyncio.create_task(
        _consume_until(
            consumer, seen, None, key_of, time.monotonic() + len(customers) / rate + DRAIN_S, added
        )
    )
    posted = await send_open_loop(ingest_url, posts, rate)
    reader.cancel()
    await _consume_until(consumer, seen, set(posted.due), key_of, time.monotonic() + DRAIN_S, added)
    await consumer.stop()
    answered = Counter(posted.status.values())
    return {
        **_summary(posted.due, seen, rate),
        "answers": {str(status): count for status, count in sorted(answered.items())},
        "sender_retries": posted.retries,
        "stages": await stages(namespace, posted.due_wall, added),
    }


async def raw_at(rate: int) -> dict[str, Any]:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 12, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    for n in range(12):  # the new topic's leaders are known before the clock starts
        await producer.send_and_wait(topic, b"warm-up", key=b"w", partition=n)
    consumer = await _assigned_consumer(topic)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    payload = whatsapp_delivery(PHONE, "15550000001")
    try:
        reader = asyncio.create_task(
            _consume_until(
                consumer, seen, None, lambda r: r.key.decode(), time.monotonic() + SECONDS + DRAIN_S
            )
        )
        start = time.monotonic()
        futures = []
        for n in range(rate * SECONDS):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"k{n}"
            sent[key] = time.monotonic()
            futures.append(await producer.send(topic, payload, key=key.encode()))
        await asyncio.gather(*futures)
        reader.cancel()
        await _consume_until(consumer, seen, set(sent), lambda r: r.key.decode(), time.monotonic() + 30)
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    return _summary(sent, seen, rate)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[int, int]:
    """The machine's CPU time so far, busy and in all (``/proc/stat``, in clock ticks)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def busy_since(before: tuple[int, int]) -> float:
    """The share of all cores busy since ``before`` (0 to 1): Kafka, the store and the sender too."""
    busy, total = machine_busy()
    return round((busy - before[0]) / max(1, total - before[1]), 3)


def stack_at(kind: str, url: str, rates: tuple[int, ...], work: Path) -> dict[str, Any]:
    """ingest, normalizer and routing on the store of ``url``, each rate in turn."""
    results: dict[str, Any] = {}
    with namespace_of("e2e") as ns:
        asyncio.run(
            publish_channel(
                KAFKA,
                ns,
                channel_id="channel-bench",
                tenant_id="tenant-bench",
                account_id=PHONE,
                provider=Provider.WHATSAPP,
            )
        )
        env = stack_env(ns, ns, store_url=url)
        services = [
            start_service(n, env, work) for n in ("parley-ingest", "parley-normalizer", "parley-routing")
        ]
        try:
            for service in services:
                unpin(service.process.pid)  # started from this process, pinned to the client core
                service.wait_ready(60)
            # ready is not yet consuming: the groups join and are assigned their partitions first
            returning = [f"1555{n:07d}" for n in range(CUSTOMERS)]
            warm = asyncio.run(parley_at(services[0].url, ns, WARM_UP_RATE, returning))
            say(f"  parley on {kind}, warm-up: {warm['seen']} of {warm['sent']} arrived")
            for rate in rates:
                before = {service.name: cpu_seconds(service.process.pid) for service in services}
                busy_before = machine_busy()
                deliveries = customers_of(rate * SECONDS)
                results[str(rate)] = asyncio.run(parley_at(services[0].url, ns, rate, deliveries))
                results[str(rate)]["machine_busy"] = busy_since(busy_before)
                sent = results[str(rate)]["sent"]
                results[str(rate)]["cpu_ms_per_message"] = {
                    service.name: round(
                        (cpu_seconds(service.process.pid) - before[service.name]) * 1000 / sent, 3
                    )
                    for service in services
                }
                say(f"  parley on {kind} {rate}/s: {results[str(rate)]}")
        finally:
            for service in services:
                service.terminate()
    return results


def run(data: dataset.Preloaded, work: Path | None = None, rates: tuple[int, ...] = RATES) -> dict[str, Any]:
    work = work or Path(tempfile.mkdtemp(prefix="parley-bench-e2e-"))
    os.sched_setaffinity(0, {CLIENT_CORE})  # the sender and the reader
    try:
        results: dict[str, Any] = {"raw": {}, "parley": {}}
        for rate in rates:
            results["raw"][str(rate)] = asyncio.run(raw_at(rate))
            say(f"  raw {rate}/s: {results['raw'][str(rate)]}")
        for kind in STORES:
            results["parley"][kind] = stack_at(kind, data.url(kind, changes=True), rates, work)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    at_500 = results["parley"].get("postgresql", {}).get("500", {})
    return {
        "setup": {
            "seconds_per_rate": SECONDS,
            "customers": CUSTOMERS,
            "customers_mix": f"every {NEW_EVERY}th delivery from a new customer (opens a conversation), "
            f"the others from {CUSTOMERS} returning customers whose conversations the warm-up opened",
            "sender": "open loop: one task per delivery on a fixed schedule, core 1",
            "processes": "parley-ingest, parley-normalizer, parley-routing, unpinned",
            "drain_s": DRAIN_S,
        },
        "data": data.describe(),
        **results,
        "targets": {
            "postgresql_p99_at_most_100ms_at_500_per_s": bool(at_500.get("complete"))
            and at_500["p99_ms"] <= TARGET_P99_MS
        },
    }
