"""Routing on the bus: normalized messages and sent replies in, conversation events out."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream.kafka import KafkaRouter
from parley_events import (
    ConversationAwayMessageDue,
    ConversationCreated,
    ConversationLabelsChanged,
    ConversationMessageAdded,
    ConversationMessageDeleted,
    ConversationMessageEdited,
    ConversationNoteAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationReadRequested,
    ConversationStatusChanged,
    ConversationThreadControlChanged,
    HandoverReceived,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    ReplySent,
    ThreadControlReleased,
    ThreadControlTaken,
    topics,
)
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import (
    BATCH_WAIT_MS,
    CONSUMER_ACK_POLICY,
    FETCH_WAIT_MS,
    KafkaMessage,
    RetryThenDeadLetter,
    acknowledge_other_types,
    decode_event,
    is_transient,
    leave_uncommitted,
    of_type,
    publishes,
    service_router,
    undecoded,
)
from parley_shared.tracing import record_traces
from pydantic import SkipValidation

from parley_routing.adapters.stores import Fenced
from parley_routing.cache import ConversationCache
from parley_routing.ownership import PartitionEpochs
from parley_routing.service import ConversationService, Inbound
from parley_routing.settings import RoutingSettings


class DropOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """How routing learns of its inbound partitions: a revoked partition's conversations leave
    the cache (its next owner may change them), as do those of any partition not assigned, and
    its epoch is given up; each assigned partition gets a new epoch (ownership.py)."""

    def __init__(self, cache: ConversationCache, ownership: PartitionEpochs) -> None:
        self.cache = cache
        self.ownership = ownership

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.cache.drop_partitions(tp.partition for tp in revoked)
        await self.ownership.revoked((tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.cache.keep_only(tp.partition for tp in assigned)
        await self.ownership.assigned({(tp.topic, tp.partition) for tp in assigned})


def routing_router(
    settings: RoutingSettings,
    service: ConversationService,
    channels: KafkaChannelDirectory,
    retry: RetryThenDeadLetter,
) -> KafkaRouter:
    """Routing's subscribers and publications."""
    router = service_router(settings.topic_namespace)
    publishes(
        router,
        ConversationCreated,
        ConversationMessageAdded,
        ConversationMessageEdited,
        ConversationMessageDeleted,
        ConversationStatusChanged,
        ConversationOwnerAssigned,
        ConversationOwnerCleared,
        ConversationLabelsChanged,
        ConversationNoteAdded,
        ConversationThreadControlChanged,
        ConversationAwayMessageDue,
        title="conversation-events",
        description="Every change of a conversation, in order per conversation (its sequence).",
    )
    publishes(
        router,
        ConversationReadRequested,
        title="read-requests",
        description="An agent who may reply opened a conversation on a channel that marks messages "
        "read on open: policy marks its last customer message read (not in the sequence).",
    )

    @router.subscriber(
        topics.MESSAGES_INBOUND.name,
        group_id=settings.group_id("routing"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        batch=True,
        batch_timeout_ms=BATCH_WAIT_MS,
        max_records=settings.batch_max_records,
        title="route-messages",
        description="Normalized messages, handovers, edits and removals in, in batches; conversation "
        "events out. "
        "Receipts and template reviews on the same topic are skipped.",
        decoder=undecoded,
        listener=DropOnRevoke(service.cache, service.ownership),
    )
    async def route_messages(
        # what the AsyncAPI document shows: the batch's message.received data. The records
        # themselves are selected and decoded one by one below (a type filter chooses whole
        # batches, not records, and one bad record must not fail the batch's validation)
        batch: SkipValidation[list[MessageReceived]],
        message: KafkaMessage,
    ) -> None:
        records = message.raw_message  # a tuple from the broker (a list from the test broker)
        batch_records = records if isinstance(records, tuple | list) else (records,)
        if not await on_inbound_batch(service, retry, batch_records):
            await leave_uncommitted(message)  # fenced: the partitions' new owner applies them

    replies = router.subscriber(
        topics.REPLIES.name,
        group_id=settings.group_id("routing-replies"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        title="apply-sent-replies",
        description="Sent replies in: outbound messages and auto-ownership; agents' thread-control "
        "calls. Requested, approved, rejected and failed replies change no conversation.",
    )

    @replies(filter=of_type(ReplySent))
    async def apply_sent_reply(reply: ReplySent) -> None:
        """A reply the provider accepted joins its conversation."""
        with structlog.contextvars.bound_contextvars(
            tenant_id=reply.tenant_id, channel_id=reply.channel_id, conversation_id=reply.conversation_id
        ):
            await service.on_reply_sent(reply, channels.by_id.get(reply.channel_id))

    @replies(filter=of_type(ThreadControlTaken))
    async def apply_thread_taken(taken: ThreadControlTaken) -> None:
        """An agent took the thread: Parley answers it now."""
        await service.on_thread_control_call(taken, parley_active=True)

    @replies(filter=of_type(ThreadControlReleased))
    async def apply_thread_released(released: ThreadControlReleased) -> None:
        """An agent released the thread: another app (or the next message's routing) answers."""
        await service.on_thread_control_call(released, parley_active=False)

    acknowledge_other_types(replies)
    return router


def _event_type(record: Any) -> str | None:
    for key, value in record.headers or ():
        if key == "ce_type":
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


async def on_inbound_batch(
    service: ConversationService, retry: RetryThenDeadLetter, records: Sequence[Any]
) -> bool:
    """A batch of normalized messages and handovers, applied together; bad records are taken out
    one by one. False when the batch was fenced (a newer owner took one of its partitions):
    nothing of it was written, and it must not be committed.

    A record that does not decode is dead-lettered on its own (the rest of the batch goes on).
    If the batch as a whole fails for a reason other than an outage, each record is retried
    alone, so a poison record ends in the DLQ exactly as with a per-record consumer. Outages
    propagate: the whole batch is retried, uncommitted (applying a message is idempotent).
    """
    # receipts and template updates are not conversation changes (yet)
    wanted = [r for r in records if _event_type(r) in _ROUTED]
    decoded: list[tuple[Any, Inbound]] = []
    for record in wanted:
        try:
            decoded.append((record, _decode(record)))
        except Exception:  # the retry policy decides: a record that does not decode is permanent
            await retry.run(partial(on_inbound_record, service, record), record)
    try:
        sources = {event.conversation_id: (record.topic, record.partition) for record, event in decoded}
        with record_traces(record for record, _ in decoded):
            await service.on_owned_batch([event for _, event in decoded], sources)
    except Fenced:
        return False
    except Exception as exc:
        if is_transient(exc):
            raise
        fenced = False

        async def alone(record: Any) -> None:
            nonlocal fenced
            try:
                await on_inbound_record(service, record)
            except Fenced:  # not a failure of the record: the rest of the batch is not ours either
                fenced = True

        for record, _ in decoded:
            await retry.run(partial(alone, record), record)
            if fenced:
                return False
    return True


_ROUTED: dict[str, type[Inbound]] = {
    MessageReceived.event_type: MessageReceived,
    HandoverReceived.event_type: HandoverReceived,
    MessageEdited.event_type: MessageEdited,
    MessageDeleted.event_type: MessageDeleted,
}


def _decode(record: Any) -> Inbound:
    model = _ROUTED[_event_type(record) or ""]
    return decode_event(model, record.value)


async def on_inbound_record(service: ConversationService, record: Any) -> None:
    """One record alone (a batch taken apart), fenced like a batch."""
    event = _decode(record)
    with structlog.contextvars.bound_contextvars(
        tenant_id=event.tenant_id, channel_id=event.channel_id, conversation_id=event.conversation_id
    ):
        await service.on_owned_batch([event], {event.conversation_id: (record.topic, record.partition)})
