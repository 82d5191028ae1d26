"""`make demo`: send sample signed webhooks to a running stack and print the resulting events.

The demo registers its sample Facebook Page itself by publishing a channel snapshot on
parley.channels.v1 exactly as onboarding does: the catalog's topic and key, the same JSON data
and the CloudEvents headers every Parley record carries (a consumer built on a CloudEvents SDK
would refuse a record without them).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from devenv import dev_env
from parley_events import ChannelSnapshot, ChannelStatus, Provider, qualify, topics
from parley_shared.kafka import encode_event, event_headers

INGEST = "http://127.0.0.1:8080"
PAGE_ID = "104500000000001"
CHANNEL_ID = "ch_demo_page"
TENANT_ID = "tenant-demo"


async def main() -> int:
    env = dev_env()
    kafka = env.get("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    namespace = env.get("PARLEY_TOPIC_NAMESPACE", "")
    secret = env["PARLEY_META_APP_SECRETS"].split(",")[0]
    http = httpx.AsyncClient(timeout=10)
    try:
        (await http.get(f"{INGEST}/readyz", timeout=3)).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"ingest is not ready at {INGEST} ({exc}); start the stack with `make run` first")
        return 1

    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        snapshot = ChannelSnapshot(
            channel_id=CHANNEL_ID,
            tenant_id=TENANT_ID,
            provider=Provider.MESSENGER,
            account_id=PAGE_ID,
            status=ChannelStatus.ACTIVE,
            display_name="Demo Page",
            revision=1,
        )
        headers = event_headers(
            snapshot, event_id=f"{CHANNEL_ID}:1", source="/parley/demo", time=datetime.now(UTC)
        )
        await producer.send_and_wait(
            qualify(snapshot.topic.name, namespace),
            encode_event(snapshot),
            key=snapshot.key().encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()

    conversations = qualify(topics.CONVERSATIONS.name, namespace)
    consumer = AIOKafkaConsumer(
        conversations, bootstrap_servers=kafka, group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    await consumer.seek_to_end()
    customer = f"demo-customer-{uuid.uuid4().hex[:6]}"
    texts = ["Hi! My order #1042 has not arrived.", "It was due on Monday."]
    now = int(time.time() * 1000)
    for i, text in enumerate(texts):
        payload = {
            "object": "page",
            "entry": [
                {
                    "id": PAGE_ID,
                    "time": now + i,
                    "messaging": [
                        {
                            "sender": {"id": customer},
                            "recipient": {"id": PAGE_ID},
                            "timestamp": now + i,
                            "message": {"mid": f"m_demo_{uuid.uuid4().hex}", "text": text},
                        }
                    ],
                }
            ],
        }
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        response = await http.post(
            f"{INGEST}/webhooks/meta",
            content=body,
            headers={"content-type": "application/json", "x-hub-signature-256": signature},
        )
        print(f"POST /webhooks/meta ({text!r}) -> {response.status_code}")
    print(f"\nevents on {conversations}:")
    seen = 0
    deadline = time.monotonic() + 30
    try:
        while seen < len(texts) + 1 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    data = json.loads(record.value)
                    if (
                        customer not in data.get("conversation_key", "")
                        and data.get("author", {}).get("id") != customer
                    ):
                        continue
                    seen += 1
                    print(f"\n{headers['ce_type']}  (ce_id {headers['ce_id']})")
                    print(json.dumps(data, indent=2))
    finally:
        await consumer.stop()
        await http.aclose()
    if seen < len(texts) + 1:
        print(f"only {seen} event(s) arrived within 30s; check the `make run` output")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
