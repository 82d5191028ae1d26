"""An outside service consuming Parley's conversation events with the `parley-events` models.

    pip install parley-events aiokafka    # or, in this repo: uv run python examples/consume_conversations.py

Reads parley.conversations.v1 in its own consumer group, picks the model from the CloudEvents
`ce_type` header, skips types it does not know (forward compatibility), and deduplicates on
`ce_id` (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import os

from aiokafka import AIOKafkaConsumer
from parley_events import ConversationEvent, model_for, topics


async def main() -> None:
    bootstrap = os.environ.get("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")  # noqa: TID251
    consumer = AIOKafkaConsumer(
        topics.CONVERSATIONS.name,
        bootstrap_servers=bootstrap,
        group_id="example-conversation-printer",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: set[str] = set()
    try:
        async for record in consumer:
            headers = {k: v.decode() for k, v in record.headers}
            try:
                model = model_for(headers.get("ce_type", ""))
            except KeyError:
                continue  # a newer type than this consumer knows
            if headers["ce_id"] in seen:
                continue
            seen.add(headers["ce_id"])
            event = model.model_validate_json(record.value)
            if isinstance(event, ConversationEvent):
                print(f"{event.event_type} #{event.sequence} conversation={event.conversation_id}")
            await consumer.commit()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())
