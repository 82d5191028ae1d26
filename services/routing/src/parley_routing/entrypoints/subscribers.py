"""Routing's subscribers: thin adapters from Kafka records to the service layer."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog
from faststream.kafka.annotations import KafkaMessage
from parley_events import MessageReceived, ReplySent
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import RetryThenDeadLetter, decode_event, is_transient
from parley_shared.tracing import record_traces

from parley_routing.service import ConversationService


def _event_type(record: Any) -> str | None:
    for key, value in record.headers or ():
        if key == "ce_type":
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


class RoutingSubscribers:
    """parley.messages.inbound.v1 and parley.replies.v1 -> conversations -> parley.conversations.v1."""

    def __init__(
        self, service: ConversationService, channels: KafkaChannelDirectory, retry: RetryThenDeadLetter
    ) -> None:
        self.service = service
        self.channels = channels
        self.retry = retry

    async def on_inbound_batch(self, records: Sequence[Any]) -> None:
        """A batch of normalized messages, applied together; bad records are taken out one by one.

        A record that does not decode is dead-lettered on its own (the rest of the batch goes on).
        If the batch as a whole fails for a reason other than an outage, each record is retried
        alone, so a poison record ends in the DLQ exactly as with a per-record consumer. Outages
        propagate: the whole batch is retried, uncommitted (applying a message is idempotent).
        """
        # receipts and template updates are not conversation changes (yet)
        wanted = [r for r in records if _event_type(r) == MessageReceived.event_type]
        decoded: list[tuple[Any, MessageReceived]] = []
        for record in wanted:
            try:
                decoded.append((record, decode_event(MessageReceived, record.value)))
            except Exception:  # the retry policy decides: a record that does not decode is permanent
                await self.retry.run(partial(self.on_inbound_record, record), record)
        try:
            with record_traces(record for record, _ in decoded):
                await self.service.on_messages([event for _, event in decoded])
        except Exception as exc:
            if is_transient(exc):
                raise
            for record, _ in decoded:
                await self.retry.run(partial(self.on_inbound_record, record), record)

    async def on_inbound_record(self, record: Any) -> None:
        event = decode_event(MessageReceived, record.value)
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
