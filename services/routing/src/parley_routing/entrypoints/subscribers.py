"""Routing's subscribers: thin adapters from Kafka records to the service layer."""

from __future__ import annotations

import structlog
from faststream.kafka.annotations import KafkaMessage
from parley_events import MessageReceived, ReplySent
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import decode_event

from parley_routing.handlers import ConversationService


class RoutingSubscribers:
    """parley.messages.inbound.v1 and parley.replies.v1 -> conversations -> parley.conversations.v1."""

    def __init__(self, service: ConversationService, channels: KafkaChannelDirectory) -> None:
        self.service = service
        self.channels = channels

    async def on_inbound(self, message: KafkaMessage) -> None:
        if message.headers.get("ce_type") != MessageReceived.event_type:
            return  # receipts and template updates are not conversation changes (yet)
        event = decode_event(MessageReceived, message.body)
        with structlog.contextvars.bound_contextvars(
            tenant_id=event.tenant_id, channel_id=event.channel_id, conversation_id=event.conversation_id
        ):
            await self.service.on_message(event)

    async def on_reply(self, message: KafkaMessage) -> None:
        if message.headers.get("ce_type") != ReplySent.event_type:
            return  # requested, approved, rejected and failed replies change no conversation
        reply = decode_event(ReplySent, message.body)
        with structlog.contextvars.bound_contextvars(
            tenant_id=reply.tenant_id, channel_id=reply.channel_id, conversation_id=reply.conversation_id
        ):
            await self.service.on_reply_sent(reply, self.channels.by_id.get(reply.channel_id))
