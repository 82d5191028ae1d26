"""End to end: from the webhook POST to the conversation event a consumer sees, at fixed rates.

On each store (PostgreSQL, then the MongoDB adapter on FerretDB), on a fresh copy of the data set
(bench/dataset.py), ingest, the normalizer and routing run as processes on a namespace of their
own; a WhatsApp channel is registered. An open-loop sender (one task per delivery, started on a fixed schedule
whether or not earlier ones were answered) posts signed deliveries with distinct message ids
from core 1; a consumer of ``parley.conversations.v1`` in the same process notes when each
message's ``message_added`` arrives. Latency = arrival - send start.

Baseline, in the same run: a raw aiokafka produce-to-consume round trip at the same rate (one
producer with acks=all, one consumer), nothing else.

A rate whose events do not all arrive within the drain time has no p99 (``complete`` false: the
pipeline fell behind); its p50/p99 over what did arrive are kept as ``seen_*``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
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
    whatsapp_delivery,
)
from tests.support.kafka import publish_channel
from tests.support.processes import start_service

PHONE = "15550009999"
SECONDS = scaled(10, 2)
DRAIN_S = scaled(150, 30)
CUSTOMERS = 1000
RATES = (500, 1000)
TARGET_P99_MS = 100.0


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
    consumer: AIOKafkaConsumer, seen: dict[str, float], wanted: set[str] | None, key_of: Any, stop_at: float
) -> None:
    """Note when each key first arrives, until every ``wanted`` key has (None: until cancelled)."""
    while (wanted is None or not wanted <= seen.keys()) and time.monotonic() < stop_at:
        batch = await consumer.getmany(timeout_ms=200)
        now = time.monotonic()
        for records in batch.values():
            for record in records:
                key = key_of(record)
                if key is not None and key not in seen:
                    seen[key] = now


def _summary(sent: dict[str, float], seen: dict[str, float], rate: int) -> dict[str, Any]:
    latencies = [seen[k] - sent[k] for k in sent if k in seen]
    out: dict[str, Any] = {"rate": rate, "sent": len(sent), "seen": len(latencies)}
    out["complete"] = len(latencies) == len(sent)
    figures = summary_ms(latencies)
    if out["complete"]:
        return {**out, **figures}
    return {**out, "p50_ms": None, "p99_ms": None, **{f"seen_{k}": v for k, v in figures.items()}}


async def parley_at(ingest_url: str, namespace: str, rate: int) -> dict[str, Any]:
    consumer = await _assigned_consumer(qualify(topics.CONVERSATIONS.name, namespace))

    def key_of(record: Any) -> str | None:
        if dict(record.headers).get("ce_type") != b"parley.conversation.message_added.v1":
            return None
        return str(orjson.loads(record.value)["provider_message_id"])

    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    bodies = []
    for n in range(rate * SECONDS):
        message_id = f"wamid.bench{uuid.uuid4().hex}"
        body = whatsapp_delivery(PHONE, f"1555{n % CUSTOMERS:07d}", message_id=message_id)
        bodies.append((message_id, body, sign(body)))
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=ingest_url, limits=limits, timeout=30) as client:

        async def post(message_id: str, body: bytes, signature: str) -> None:
            sent[message_id] = time.monotonic()
            headers = {"content-type": "application/json", "x-hub-signature-256": signature}
            for _ in range(5):  # a provider retries what was not acknowledged
                response = await client.post("/webhooks/meta", content=body, headers=headers)
                if response.status_code == 200:
                    return
                await asyncio.sleep(0.5)

        reader = asyncio.create_task(
            _consume_until(consumer, seen, None, key_of, time.monotonic() + SECONDS + DRAIN_S)
        )
        start = time.monotonic()
        posts = []
        for n, (message_id, body, signature) in enumerate(bodies):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(message_id, body, signature)))
        await asyncio.gather(*posts)
        reader.cancel()
        await _consume_until(consumer, seen, set(sent), key_of, time.monotonic() + DRAIN_S)
    await consumer.stop()
    return _summary(sent, seen, rate)


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
                service.wait_ready(60)
            for rate in rates:
                results[str(rate)] = asyncio.run(parley_at(services[0].url, ns, rate))
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
