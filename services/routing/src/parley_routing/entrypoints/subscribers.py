"""Routing's subscribers: thin adapters from Kafka records to the service layer."""

from __future__ import annotations

import structlog
from faststream.kafka.annotations import KafkaMessage
from parley_events import MessageReceived
from parley_shared.kafka import EventPublisher, decode_event

from parley_routing.adapters.repository import ConversationRepository
from parley_routing.handlers import record_message


class OnMessageReceived:
    """parley.messages.inbound.v1 -> conversation stored -> parley.conversations.v1."""

    def __init__(self, repository: ConversationRepository, publisher: EventPublisher) -> None:
        self.repository = repository
        self.publisher = publisher

    async def __call__(self, message: KafkaMessage) -> None:
        event = decode_event(MessageReceived, message.body)
        with structlog.contextvars.bound_contextvars(
            tenant_id=event.tenant_id, channel_id=event.channel_id, conversation_id=event.conversation_id
        ):
            for out in await record_message(event, self.repository):
                await self.publisher.publish(out, event_id=out.event_id, time=out.occurred_at)
