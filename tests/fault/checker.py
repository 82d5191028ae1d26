"""The reliability checker: drive signed webhooks through real processes while a fault happens.

A delivery answered 200 must have exactly one effect (one ``message_added`` in its conversation's
history), in the order the provider sent it; a delivery that got no 200 is retried, as providers
do. Run by ``make fault`` (tests/fault/test_faults.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pymongo import AsyncMongoClient

SECRET = "fault-app-secret"


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
    recovery_s: float = 0.0
    details: list[str] = field(default_factory=list)


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


async def drive(
    ingest_url: str,
    pages: list[str],
    customers_per_page: int,
    messages: int,
    rate_per_s: float,
    fault: Callable[[], Awaitable[None]],
    fault_after: int,
    report: Report,
) -> dict[str, list[str]]:
    """Send ``messages`` deliveries at a steady rate; retry until each gets a 200, like a provider."""
    sent_order: dict[str, list[str]] = {}
    threads = [(p, f"{p}-c{c}") for p in pages for c in range(customers_per_page)]
    async with httpx.AsyncClient(timeout=15) as client:
        fault_task: asyncio.Task[None] | None = None
        per_thread: dict[tuple[str, str], int] = {}
        for n in range(messages):
            page, customer = threads[n % len(threads)]
            index = per_thread.get((page, customer), 0)
            per_thread[(page, customer)] = index + 1
            mid = f"m.{uuid.uuid4().hex}"
            body = delivery(page, customer, mid, index)
            report.sent += 1
            if n == fault_after:
                fault_task = asyncio.create_task(fault())
            # a provider keeps a thread's messages in order: retry this one before the next
            while True:
                try:
                    response = await client.post(
                        f"{ingest_url}/webhooks/meta", content=body, headers=signed(body)
                    )
                    if response.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                report.retried += 1
                await asyncio.sleep(0.5)
            report.acknowledged += 1
            sent_order.setdefault(f"{page}|dm:{customer}", []).append(mid)
            await asyncio.sleep(1 / rate_per_s)
        if fault_task is not None:
            await fault_task
    return sent_order


async def verify(
    database_url: str, sent_order: dict[str, list[str]], report: Report, timeout_s: float
) -> None:
    """Every acknowledged delivery is in the store exactly once and in order (waiting up to ``timeout_s``)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(database_url, tz_aware=True)
    expected = sum(len(v) for v in sent_order.values())
    started = time.monotonic()
    try:
        db = client.get_default_database()
        while True:
            history = [
                d
                async for d in db["conversation_history"].find(
                    {"type": "parley.conversation.message_added.v1"}
                )
            ]
            seen = [h["data"]["provider_message_id"] for h in history]
            if len(set(seen)) >= expected or time.monotonic() - started > timeout_s:
                break
            await asyncio.sleep(1)
        report.recovery_s = round(time.monotonic() - started, 1)
        by_mid: dict[str, int] = {}
        for mid in seen:
            by_mid[mid] = by_mid.get(mid, 0) + 1
        all_sent = {mid for mids in sent_order.values() for mid in mids}
        report.lost = len(all_sent - set(by_mid))
        report.duplicated = sum(count - 1 for count in by_mid.values() if count > 1)
        # order: within each conversation, message_added sequence follows the send order
        sequence_of = {h["data"]["provider_message_id"]: h["sequence"] for h in history}
        for thread, mids in sent_order.items():
            sequences = [sequence_of[m] for m in mids if m in sequence_of]
            if sequences != sorted(sequences):
                report.out_of_order += 1
                report.details.append(f"{thread}: {sequences}")
    finally:
        await client.close()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
