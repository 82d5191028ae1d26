"""Backlogs of normalized messages for the consumer benchmarks, and producing them to Kafka."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from parley_events import Author, Content, Direction, MessageReceived, Provider, qualify, topics
from parley_shared.kafka import encode_event, event_headers

from bench.common import KAFKA

MESSAGES = 2000
CONVERSATIONS = 300


def backlog(messages: int = MESSAGES, conversations: int = CONVERSATIONS) -> list[MessageReceived]:
    """Messages to new conversations (``conv-bench-*``), several each, round after round."""
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
    """The messages on the namespace's inbound topic, as the normalizer publishes them."""
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
