"""The reliability checker: drive requests through real processes while a fault happens.

A request that was acknowledged must have exactly one effect, in the order its thread sent it;
a request that was not acknowledged is retried, as its real sender would; nothing may take
effect that was never acknowledged. Two kinds of stream use it:

- signed webhooks to ingest (acknowledged: 200), whose effect is one ``message_added`` in the
  conversation's history;
- replies to policy's API (acknowledged: 202), whose effect is one send the provider (the
  sandbox) accepted, with policy's ``reply.sent`` naming that send.

Run by ``make fault`` (tests/fault/test_faults.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

SECRET = "fault-app-secret"
RETRY_S = 0.5  # a sender's pause before retrying a request that got no acknowledgement
GRACE_S = 3.0  # after the last effect arrived, how long to keep looking for late duplicates
FRESH_BOUND_S = 15.0  # after recovery, a fresh request must take effect within this
SETTLE_S = 60.0  # after recovery, every consumer group must have committed to the end within this
SENT = "parley.reply.sent.v1"
FAILED = "parley.reply.failed.v1"

Attempt = Callable[[httpx.AsyncClient], Awaitable[float | None]]
"""One try at one request: None when acknowledged, else the seconds to wait before trying again."""

Requests = Callable[[str, int], tuple[str, Attempt]]
"""The ``index``-th request of a thread: its item id (what its effect names) and how to try it."""


@dataclass
class Report:
    """What one fault run saw."""

    fault: str
    sent: int = 0
    acknowledged: int = 0
    retried: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0  # effects of requests that were never acknowledged
    unannounced: int = 0  # replies sent that policy did not announce as that send
    announced_failed: int = 0  # acknowledged replies policy announced as failed (so not sent)
    known_gap: int = 0  # of the duplicates, sends again after a crash lost the first send's id
    longest_wait_s: float = 0.0  # the longest a sender waited for one acknowledgement
    recovery_s: float = 0.0
    fresh_s: float | None = None  # after recovery: a fresh request's time to its effect
    lag_left: int = 0  # records no consumer group had committed past, SETTLE_S after recovery
    dead_lettered: int = 0  # records in the run's DLQs (a fault is not a reason to dead-letter)
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Effect:
    """One effect of one request: which item caused it, where it stands, and its own id."""

    item: str
    position: int  # orders the effects of one thread (history sequence, arrival at the provider)
    ref: str | None = None  # the effect's id where it has one (the provider's message id)


async def drive(
    threads: Sequence[str],
    messages: int,
    rate_per_s: float,
    request: Requests,
    fault: Callable[[], Coroutine[Any, Any, None]],
    fault_after: int,
    report: Report,
) -> dict[str, list[str]]:
    """Send ``messages`` requests round-robin over ``threads`` at a steady rate.

    Each is retried until acknowledged, before the thread's next one (as a provider or an agent
    tool keeps a thread's order). The fault starts as request ``fault_after`` goes out. Returns
    each thread's acknowledged item ids in send order.
    """
    sent_order: dict[str, list[str]] = {}
    per_thread: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=15) as client:
        fault_task: asyncio.Task[None] | None = None
        for n in range(messages):
            thread = threads[n % len(threads)]
            index = per_thread.get(thread, 0)
            per_thread[thread] = index + 1
            item, attempt = request(thread, index)
            report.sent += 1
            if n == fault_after:
                fault_task = asyncio.create_task(fault())
            first_try = time.monotonic()
            while (wait := await attempt(client)) is not None:
                report.retried += 1
                await asyncio.sleep(wait)
            waited = round(time.monotonic() - first_try, 1)
            report.longest_wait_s = max(report.longest_wait_s, waited)
            report.acknowledged += 1
            sent_order.setdefault(thread, []).append(item)
            await asyncio.sleep(1 / rate_per_s)
        if fault_task is not None:
            await fault_task
    return sent_order


async def drive_threads(
    threads: Sequence[str],
    rate_per_s: float,
    seconds: float,
    request: Requests,
    report: Report,
    fault: Callable[[], Coroutine[Any, Any, None]] | None = None,
    fault_after_s: float = 0.0,
) -> dict[str, list[str]]:
    """Send requests over ``threads`` concurrently at ``rate_per_s`` in all, for ``seconds``.

    Each thread is its own sender and keeps its order (its next request goes out once the last
    one is acknowledged, as a provider or an agent tool does), so the rate is reached only with
    enough threads: each thread's requests are due every ``len(threads) / rate_per_s`` seconds,
    staggered, and a thread that fell behind sends at once. The fault starts ``fault_after_s``
    into the run. Returns each thread's acknowledged item ids in send order.
    """
    sent_order: dict[str, list[str]] = {thread: [] for thread in threads}
    period = len(threads) / rate_per_s
    limits = httpx.Limits(max_connections=min(len(threads), 256), max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=15, limits=limits) as client:
        start = time.monotonic()

        async def sender(offset: int, thread: str) -> None:
            index = 0
            while (due := start + offset / rate_per_s + index * period) < start + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                item, attempt = request(thread, index)
                index += 1
                report.sent += 1
                first_try = time.monotonic()
                while (wait := await attempt(client)) is not None:
                    report.retried += 1
                    await asyncio.sleep(wait)
                report.longest_wait_s = max(report.longest_wait_s, round(time.monotonic() - first_try, 1))
                report.acknowledged += 1
                sent_order[thread].append(item)

        async def injected() -> None:
            if fault is not None:
                await asyncio.sleep(fault_after_s)
                await fault()

        await asyncio.gather(injected(), *(sender(i, t) for i, t in enumerate(threads)))
    return {thread: items for thread, items in sent_order.items() if items}


async def verify(
    effects: Callable[[], Awaitable[list[Effect]]],
    sent_order: dict[str, list[str]],
    report: Report,
    timeout_s: float,
    settled: Callable[[], Awaitable[set[str]]] | None = None,
    fresh: Requests | None = None,
) -> list[Effect]:
    """Every acknowledged item has exactly one effect, in its thread's order, and nothing else has.

    Waits up to ``timeout_s`` for the last effect (or for ``settled`` to name the items known never
    to get one); *recovery* is that wait. Then looks ``GRACE_S`` longer for late duplicates.
    """
    acknowledged = {item for items in sent_order.values() for item in items}
    started = time.monotonic()
    while True:
        seen = await effects()
        done = {e.item for e in seen} | (await settled() if settled else set())
        if acknowledged <= done or time.monotonic() - started > timeout_s:
            break
        await asyncio.sleep(1)
    report.recovery_s = round(time.monotonic() - started, 1)
    await asyncio.sleep(GRACE_S)
    seen = await effects()
    count: dict[str, int] = {}
    first: dict[str, int] = {}
    for effect in seen:
        count[effect.item] = count.get(effect.item, 0) + 1
        first[effect.item] = min(first.get(effect.item, effect.position), effect.position)
    report.lost = len(acknowledged - set(count))
    report.duplicated = sum(n - 1 for n in count.values() if n > 1)
    report.unexpected = len(set(count) - acknowledged)
    if report.lost:
        report.details.append(f"lost: {sorted(acknowledged - set(count))[:10]}")
    if report.unexpected:
        report.details.append(
            f"never acknowledged, yet took effect: {sorted(set(count) - acknowledged)[:10]}"
        )
    for thread, items in sent_order.items():
        positions = [first[item] for item in items if item in first]
        if positions != sorted(positions):
            report.out_of_order += 1
            report.details.append(f"{thread} out of order: {positions}")
    if fresh is not None and sent_order:
        await fresh_effect(fresh, next(iter(sent_order)), effects, report)
    return seen


async def fresh_effect(
    request: Requests, thread: str, effects: Callable[[], Awaitable[list[Effect]]], report: Report
) -> None:
    """After recovery: one more request on a known thread, timed from sending to its effect."""
    item, attempt = request(thread, 10_000)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=15) as client:
        while True:
            wait = await attempt(client)
            if wait is None:
                break
            await asyncio.sleep(wait)
    while time.monotonic() - started < FRESH_BOUND_S * 4:
        if any(e.item == item for e in await effects()):
            report.fresh_s = round(time.monotonic() - started, 2)
            return
        await asyncio.sleep(0.1)
    report.details.append(f"a fresh request took no effect within {FRESH_BOUND_S * 4} s")


async def settle_consumers(bootstrap: str, namespace: str, report: Report) -> None:
    """Every record produced was processed or dead-lettered: each consumer group of the run
    commits to the end of its topics (lag zero) within ``SETTLE_S``, and nothing was
    dead-lettered (none of these faults makes a record bad, so a DLQ entry would be a record
    given up on)."""
    from parley_shared.ops import consumer_lag, dlq_sizes

    started = time.monotonic()
    left: dict[str, int] = {}
    while True:
        left = {f"{g.group} on {g.topic}": g.lag for g in await consumer_lag(bootstrap, namespace) if g.lag}
        if not left or time.monotonic() - started > SETTLE_S:
            break
        await asyncio.sleep(1)
    report.lag_left = sum(left.values())
    if left:
        report.details.append(f"lag left after {SETTLE_S:.0f} s: {left}")
    dead = {topic: n for topic, n in (await dlq_sizes(bootstrap, namespace)).items() if n}
    report.dead_lettered = sum(dead.values())
    if dead:
        report.details.append(f"dead-lettered: {dead}")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- webhooks to ingest


def signed(body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-hub-signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


def delivery(page: str, customer: str, mid: str, n: int) -> bytes:
    ts = int(time.time() * 1000)
    return json.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": page,
                    "time": ts,
                    "messaging": [
                        {
                            "sender": {"id": customer},
                            "recipient": {"id": page},
                            "timestamp": 1_700_000_000_000 + n,
                            "message": {"mid": mid, "text": f"message {n}"},
                        }
                    ],
                }
            ],
        }
    ).encode()


def webhook_threads(pages: Sequence[str], customers_per_page: int) -> list[str]:
    """One thread per Messenger conversation: ``<page>|dm:<customer>``."""
    return [f"{p}|dm:{p}-c{c}" for p in pages for c in range(customers_per_page)]


def webhooks(ingest_url: str) -> Requests:
    """Signed Messenger deliveries to ingest; a provider retries each until it gets a 200."""

    def request(thread: str, index: int) -> tuple[str, Attempt]:
        page, customer = thread.split("|dm:")
        mid = f"m.{uuid.uuid4().hex}"
        body = delivery(page, customer, mid, index)

        async def attempt(client: httpx.AsyncClient) -> float | None:
            try:
                response = await client.post(
                    f"{ingest_url}/webhooks/meta", content=body, headers=signed(body)
                )
            except httpx.HTTPError:
                return RETRY_S
            return None if response.status_code == 200 else RETRY_S

        return mid, attempt

    return request


async def verify_history(
    database_url: str,
    sent_order: dict[str, list[str]],
    report: Report,
    timeout_s: float,
    fresh: Requests | None = None,
) -> None:
    """The effect of a webhook: one ``message_added`` in routing's history, in sequence order."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(database_url, tz_aware=True)
    history = client.get_default_database()["conversation_history"]

    async def effects() -> list[Effect]:
        found = history.find({"type": "parley.conversation.message_added.v1"})
        return [Effect(h["data"]["provider_message_id"], h["sequence"]) async for h in found]

    try:
        await verify(effects, sent_order, report, timeout_s, fresh=fresh)
    finally:
        await client.close()


async def postgres_history_effects(store_url: str) -> list[Effect]:
    """Each customer message routing added to a conversation's history, on PostgreSQL (the
    migrations' ``conversation_history``): its provider message id and its sequence."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(store_url) as conn:
        cursor = await conn.execute(
            "SELECT data->>'provider_message_id', sequence FROM conversation_history"
            " WHERE type = 'parley.conversation.message_added.v1' AND data->>'direction' = 'inbound'"
        )
        return [Effect(mid, sequence) for mid, sequence in await cursor.fetchall()]


# --------------------------------------------------------------------------- replies through policy


def replies(policy_url: Callable[[], str], headers: dict[str, str], decisions: dict[str, str]) -> Requests:
    """Agent replies to policy's API, one Idempotency-Key each, retried as a client would.

    A thread is a conversation id. The reply's text ends with its item id, which is how a send
    the provider received is traced back to it; ``decisions`` collects each item's reply id.
    Connection errors and 5xx are retried after a pause, ``RATE_LIMITED`` after its
    ``Retry-After``; any other answer is a mistake of the run and fails it.
    """

    def request(conversation: str, index: int) -> tuple[str, Attempt]:
        item = f"r{uuid.uuid4().hex[:16]}"
        body = {"text": f"reply {index} to {conversation}: {item}"}
        request_headers = {**headers, "Idempotency-Key": item}

        async def attempt(client: httpx.AsyncClient) -> float | None:
            url = f"{policy_url()}/v1/conversations/{conversation}/replies"
            try:
                response = await client.post(url, json=body, headers=request_headers)
            except httpx.HTTPError:
                return RETRY_S
            if response.status_code == 202:
                decisions[item] = response.json()["decision_id"]
                return None
            if response.status_code >= 500:
                return RETRY_S
            if response.status_code == 422 and response.json().get("code") == "RATE_LIMITED":
                return float(response.headers.get("retry-after", RETRY_S))
            raise AssertionError(f"reply {item} refused: {response.status_code} {response.text}")

        return item, attempt

    return request


def sent_text(body: dict[str, Any]) -> str:
    """The text of a Send API (Messenger) or Cloud API (WhatsApp) call the sandbox recorded."""
    message = body.get("message")
    if isinstance(message, dict):
        return str(message.get("text", ""))
    text = body.get("text")
    return str(text.get("body", "")) if isinstance(text, dict) else ""


class TopicTail:
    """Everything on a topic from its beginning, read on as it grows."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        self.events: list[dict[str, Any]] = []

    async def __aenter__(self) -> TopicTail:
        await self.consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def read(self) -> list[dict[str, Any]]:
        while batch := await self.consumer.getmany(timeout_ms=200):
            for records in batch.values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    self.events.append({"type": headers.get("ce_type"), **json.loads(r.value)})
        return self.events


async def verify_replies(
    sandbox_url: str,
    replies_topic: TopicTail,
    decisions: dict[str, str],
    sent_order: dict[str, list[str]],
    report: Report,
    timeout_s: float,
    fresh: Requests | None = None,
) -> None:
    """The effect of a reply: one send the provider accepted, and policy announcing that send.

    Effects come from the sandbox's record of send calls (accepted ones, in arrival order). A
    reply policy announced as failed is settled without an effect (and so counts as lost).
    Policy's ``reply.sent`` must name the provider's id of one of the reply's sends; a reply
    the provider accepted twice is traced to the documented gap (the first send's id was never
    recorded) when policy announced only the second.
    """
    item_of = {reply_id: item for item, reply_id in decisions.items()}
    async with httpx.AsyncClient(timeout=15) as client:

        async def effects() -> list[Effect]:
            response = await client.get(f"{sandbox_url}/_sandbox/sent", params={"path_contains": "/messages"})
            response.raise_for_status()
            return [
                Effect(sent_text(s["body"]).rsplit(" ", 1)[-1], position, s["result_id"])
                for position, s in enumerate(response.json()["data"])
                if s["status"] == 200
            ]

        async def failed() -> set[str]:
            events = await replies_topic.read()
            return {item_of.get(e["reply_id"], e["reply_id"]) for e in events if e["type"] == FAILED}

        seen = await verify(effects, sent_order, report, timeout_s, settled=failed, fresh=fresh)
    events = await replies_topic.read()
    for e in events:
        if e["type"] == FAILED:
            report.announced_failed += e["reply_id"] in item_of
            error = e["error"]
            report.details.append(
                f"policy announced {item_of.get(e['reply_id'])} failed after {e['attempts']} attempts "
                f"({e['error_kind']}, code {error['code']}: {error['message']})"
            )
    announced: dict[str, set[str]] = {}
    for e in events:
        if e["type"] == SENT and e["reply_id"] in item_of:
            announced.setdefault(item_of[e["reply_id"]], set()).add(e["provider_message_id"])
    sends: dict[str, list[str | None]] = {}
    for effect in seen:
        sends.setdefault(effect.item, []).append(effect.ref)
    for item, refs in sends.items():
        named = announced.get(item, set())
        if not named & set(refs):
            report.unannounced += 1
            report.details.append(f"{item}: sent as {refs} but policy announced {sorted(named) or 'nothing'}")
        elif len(refs) > 1:
            gap = refs[0] not in named and len(refs) == 2
            report.known_gap += gap
            why = (
                "the documented gap: the provider accepted the first send, policy never recorded its id"
                if gap
                else "not explained by the documented gap"
            )
            report.details.append(f"{item} sent {len(refs)} times ({why})")
