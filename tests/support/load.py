"""An open-loop load of signed X Activity API deliveries, run as its own process (so the load's
own CPU does not stall the test's event loop): ``python -m tests.support.load URL SECRET RATE
SECONDS`` posts RATE deliveries a second for SECONDS to URL and prints what was answered as JSON.

Each delivery is due at its own time (start + n / RATE); a sender that falls behind sends at once,
so the offered rate does not drop because the server is slow (up to the senders' concurrency).
Deliveries not sent when SECONDS are up are not sent: the load lasts SECONDS (plus the answers
still awaited), whatever the server manages; ``per_s`` is the rate answered.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

import httpx
from parley_providers.x.webhook import SIGNATURE_HEADER, x_signature

SENDERS = 64
DISTINCT = 500


def delivery(n: int) -> bytes:
    """A dm.received delivery of the X Activity API (docs.x.com/x-api/activity/event-payloads)."""
    handle, customer = "3000000000000000001", "3000000000000000777"
    event = {
        "type": "message_create",
        "id": str(1900000000000000000 + n),
        "created_timestamp": str(int(time.time() * 1000)),
        "message_create": {
            "target": {"recipient_id": handle},
            "sender_id": customer,
            "message_data": {"text": f"load {n}"},
        },
    }
    body = {
        "data": {
            "event_uuid": str(-(10**17) - n),
            "filter": {"user_id": handle},
            "event_type": "dm.received",
            "tag": "parley",
            "payload": {"direct_message_events": [event]},
        }
    }
    return json.dumps(body).encode()


async def run(url: str, secret: str, rate: float, seconds: float) -> dict[str, object]:
    bodies = [(b, x_signature(b, secret)) for b in (delivery(n) for n in range(DISTINCT))]
    total = int(rate * seconds)
    statuses: Counter[str] = Counter()
    start = time.monotonic()
    limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
    async with httpx.AsyncClient(limits=limits, timeout=10) as http:

        async def sender(first: int) -> None:
            for n in range(first, total, SENDERS):
                if time.monotonic() - start >= seconds:
                    return
                wait = start + n / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                body, signature = bodies[n % DISTINCT]
                headers = {"content-type": "application/json", SIGNATURE_HEADER: signature}
                try:
                    response = await http.post(url, content=body, headers=headers)
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1

        await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    elapsed = time.monotonic() - start
    answered = sum(statuses.values())
    return {
        "offered_per_s": rate,
        "sent": answered,
        "seconds": round(elapsed, 3),
        "per_s": round(answered / elapsed, 1),
        "statuses": dict(statuses),
    }


if __name__ == "__main__":
    target, key, per_s, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(run(target, key, per_s, duration))), flush=True)
