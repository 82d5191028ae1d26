"""Consumer throughput: routing and policy against hand-written aiokafka loops (bench.raw_consumers).

For each consumer, the same backlog of normalized messages (many conversations, several messages
each) is produced first; then one process, pinned to core 0, consumes it from the start. Its
throughput is the number of output events over the span of their Kafka timestamps (process
start-up is not counted). The baseline loop runs the same way on a namespace of its own.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from parley_events import Author, Content, Direction, MessageReceived, Provider, qualify, topics
from parley_shared.kafka import encode_event, event_headers

from bench.common import KAFKA, ROOT, SERVER_CORE, namespace_of, pin, python, say, stack_env
from tests.support.processes import ServiceProcess, start_service

MESSAGES = 2000
CONVERSATIONS = 300
POLICY_ENV = {
    "PARLEY_ENCRYPTION_KEYS": "bench:" + base64.b64encode(b"b" * 32).decode(),
    "PARLEY_META_APP_ID": "bench-app",
    "PARLEY_META_APP_SECRET": "bench-app-secret-not-a-real-one",
    "PARLEY_GRAPH_BASE_URL": "http://127.0.0.1:9",
    "PARLEY_X_API_BASE_URL": "http://127.0.0.1:9",
}


def backlog(messages: int = MESSAGES, conversations: int = CONVERSATIONS) -> list[MessageReceived]:
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for n in range(messages):
        conversation, turn = n % conversations, n // conversations
        out.append(
            MessageReceived(
                event_id=f"msg_b{conversation}_{turn}",
                tenant_id="tenant-bench",
                channel_id="channel-bench",
                provider=Provider.MESSENGER,
                account_id="page-bench",
                conversation_id=f"conv-bench-{conversation}",
                conversation_key=f"dm:customer-{conversation}",
                direction=Direction.INBOUND,
                author=Author(id=f"customer-{conversation}"),
                content=Content(text=f"message {turn} of a customer who needs help with an order " * 3),
                provider_message_id=f"m_b{conversation}_{turn}",
                provider_timestamp=start + timedelta(seconds=turn),
                delivery_id=f"delivery-{n}",
            )
        )
    return out


async def produce(namespace: str, events: list[MessageReceived]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", max_batch_size=512 * 1024)
    await producer.start()
    try:
        topic = qualify(topics.MESSAGES_INBOUND.name, namespace)
        futures = []
        for event in events:
            headers = event_headers(event, event_id=event.event_id, source="/bench", time=datetime.now(UTC))
            futures.append(
                await producer.send(
                    topic,
                    encode_event(event),
                    key=event.key().encode(),
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def output_span(topic: str, event_type: str, expected: int, timeout_s: float = 120) -> dict[str, Any]:
    """Read ``topic`` until ``expected`` records of ``event_type``; their timestamps' span and rate."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    stamps: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while len(stamps) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for r in records:
                    if dict(r.headers).get("ce_type", b"").decode() == event_type:
                        stamps.append(r.timestamp)
    finally:
        await consumer.stop()
    if len(stamps) < expected:
        raise RuntimeError(f"only {len(stamps)} of {expected} {event_type} events on {topic} in {timeout_s}s")
    span = (max(stamps) - min(stamps)) / 1000
    return {
        "events": len(stamps),
        "span_s": round(span, 3),
        "per_s": round(len(stamps) / span, 1) if span else None,
    }


def run_one(kind: str, events: list[MessageReceived], work: Path) -> dict[str, Any]:
    consumer, _, raw = kind.partition("-raw")
    out_topic, out_type = {
        "routing": (topics.CONVERSATIONS.name, "parley.conversation.message_added.v1"),
        "policy": (topics.REPLY_WINDOWS.name, "parley.reply_window.opened.v1"),
    }[consumer]
    with namespace_of(kind.replace("-", "")) as ns:
        asyncio.run(produce(ns, events))
        if raw:
            log = work / f"{kind}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [python(), "-m", "bench.raw_consumers", consumer, ns, ns],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            server = ServiceProcess(kind, 0, log, process)
        else:
            server = start_service(f"parley-{consumer}", stack_env(ns, ns, **POLICY_ENV), work)
        pin(server.process.pid, SERVER_CORE)
        try:
            result = asyncio.run(output_span(qualify(out_topic, ns), out_type, len(events)))
        finally:
            server.terminate()
    say(f"  {kind}: {result['per_s']}/s")
    return result


def run(work: Path | None = None, rounds: int = 2) -> dict[str, Any]:
    work = work or Path(tempfile.mkdtemp(prefix="parley-bench-consumers-"))
    events = backlog()
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both sides alike
        for kind in ("routing", "routing-raw", "policy", "policy-raw"):
            runs.setdefault(kind, []).append(run_one(kind, events, work))

    def best(kind: str) -> float:
        return max(r["per_s"] for r in runs[kind])

    return {
        "setup": {
            "messages": len(events),
            "conversations": CONVERSATIONS,
            "measure": "output events / span of their Kafka timestamps, backlog read from the start",
            "rounds": rounds,
            "pinning": "consumer process on core 0; Kafka, the store and the bench reader unpinned",
        },
        "runs": runs,
        "routing_per_s": best("routing"),
        "routing_raw_per_s": best("routing-raw"),
        "policy_per_s": best("policy"),
        "policy_raw_per_s": best("policy-raw"),
        "routing_ratio": round(best("routing") / best("routing-raw"), 3),
        "policy_ratio": round(best("policy") / best("policy-raw"), 3),
    }
