"""Service layer: load the aggregate, apply a change, save it, publish what it caused.

Every change goes through :meth:`ConversationService.apply`: optimistic concurrency with retries,
events recorded in the document with the change (so nothing is lost if the publish fails), then
published, appended to the history and marked published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from parley_events import ChannelSnapshot, ConversationEvent, MessageReceived, Queue, ReplySent

from parley_routing.adapters.repository import (
    ConcurrentUpdate,
    ConversationRepository,
)
from parley_routing.domain.model import Conversation

MAX_CONFLICT_RETRIES = 10

Publish = Callable[[ConversationEvent], Awaitable[None]]
Clock = Callable[[], datetime]


class ConversationNotFound(LookupError):
    """No conversation with that id (or not visible to the caller)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


async def record_message(
    message: MessageReceived, repository: ConversationRepository
) -> list[ConversationEvent]:
    """Add a normalized message to its conversation (opening it if new); idempotent."""
    for _ in range(MAX_CONFLICT_RETRIES):
        conversation = await repository.get(message.conversation_id)
        if conversation is None:
            conversation = Conversation.open(message)
        elif conversation.has_applied(message.event_id):
            return conversation.events_of(message.event_id)
        events = conversation.receive(message)
        try:
            await repository.save(conversation)
        except ConcurrentUpdate:
            continue
        return events
    raise ConcurrentUpdate(message.conversation_id)


class ConversationService:
    """Applies changes to conversations and publishes the events they cause."""

    def __init__(self, repository: ConversationRepository, publish: Publish, clock: Clock = utcnow) -> None:
        self.repository = repository
        self.publish = publish
        self.clock = clock

    async def apply(
        self,
        conversation_id: str,
        change: Callable[[Conversation], list[ConversationEvent]],
        opening: MessageReceived | None = None,
    ) -> tuple[Conversation, list[ConversationEvent]]:
        """Apply ``change`` (which must be idempotent on its cause) and publish its events."""
        for _ in range(MAX_CONFLICT_RETRIES):
            conversation = await self.repository.get(conversation_id)
            if conversation is None:
                if opening is None:
                    raise ConversationNotFound(conversation_id)
                conversation = Conversation.open(opening)
            before, causes_before = conversation.sequence, set(conversation.recent)
            events = change(conversation)
            # save when something changed, or when a cause that changed nothing is new: a retry
            # of that command must keep changing nothing, whatever happened in between
            if conversation.sequence != before or set(conversation.recent) - causes_before:
                try:
                    await self.repository.save(conversation)
                except ConcurrentUpdate:
                    continue
            await self._publish_many([conversation])
            return conversation, events
        raise ConcurrentUpdate(conversation_id)

    async def _publish_many(self, conversations: Sequence[Conversation]) -> None:
        # everything not yet known to be published, in order: an earlier change whose publish
        # failed goes out before this one, and is never marked published without being sent.
        # Conversations are independent (each is its own Kafka key), so they go out concurrently
        # and the producer batches them; within one conversation, one event after the other.
        pending = [(c, fresh) for c in conversations if (fresh := c.unpublished())]
        if not pending:
            return
        # notes and seen provider message ids, before the events go out: a crash in between
        # leaves the events unpublished, and the relay writes these again (idempotent)
        await self.repository.record_projections([e for _, fresh in pending for e in fresh], self.clock())

        async def send_in_order(events: list[ConversationEvent]) -> None:
            for event in events:
                await self.publish(event)

        outcomes: list[BaseException | None]
        if len(pending) == 1:
            await send_in_order(pending[0][1])
            outcomes = [None]
        else:
            outcomes = await asyncio.gather(*(send_in_order(f) for _, f in pending), return_exceptions=True)
        # record what did reach Kafka even if another conversation's publish failed, so the relay
        # re-sends only what is really missing
        sent = [(c, fresh) for (c, fresh), outcome in zip(pending, outcomes, strict=True) if outcome is None]
        await self.repository.record_history([e for _, fresh in sent for e in fresh])
        await self.repository.mark_published_many(
            [(c.id, fresh[-1].sequence, c.version) for c, fresh in sent]
        )
        for outcome in outcomes:
            if outcome is not None:
                raise outcome

    # --- from the streams -----------------------------------------------------------------------

    async def on_message(self, message: MessageReceived) -> list[ConversationEvent]:
        stored = await self.repository.get(message.conversation_id)
        seen = set() if stored is None else await self._seen_before(stored, [message])
        _, events = await self.apply(
            message.conversation_id,
            lambda c: c.receive(message, seen_before=message.provider_message_id in seen),
            opening=message,
        )
        return events

    async def _seen_before(self, conversation: Conversation, messages: Sequence[MessageReceived]) -> set[str]:
        """Provider message ids of ``messages`` the store remembers for this conversation.

        Only a message older than the conversation's last activity, and not among the ids the
        conversation itself remembers, can be a late redelivery the document has forgotten; the
        store is asked about those alone, so the usual message costs no extra read.
        """
        candidates = [
            m.provider_message_id
            for m in messages
            if conversation.sequence > 0
            and not conversation.has_applied(m.event_id)
            and m.provider_message_id not in conversation.seen_messages
            and m.provider_timestamp <= conversation.last_activity_at
        ]
        if not candidates:
            return set()
        return await self.repository.seen_before(conversation.id, candidates)

    async def on_messages(self, messages: Sequence[MessageReceived]) -> None:
        """Apply a batch of messages with a few store round trips for the whole batch.

        Messages are grouped by conversation (keeping their order); every conversation is read
        in one query, changed in memory, saved with one bulk version claim and one bulk write,
        and its events published concurrently with the others. A conversation someone else
        changed meanwhile is reloaded and retried on its own; the rest stay saved. Same result,
        event for event, as calling :meth:`on_message` for each message in order.
        """
        pending: dict[str, list[MessageReceived]] = {}
        for message in messages:
            pending.setdefault(message.conversation_id, []).append(message)
        for attempt in range(MAX_CONFLICT_RETRIES):
            if attempt == 0:
                stored = await self.repository.get_many(list(pending))
            else:  # one at a time, rolling forward any claim a crashed writer left behind
                found = {i: await self.repository.get(i) for i in pending}
                stored = {i: c for i, c in found.items() if c is not None}
            touched: list[Conversation] = []
            changed: list[Conversation] = []
            for conversation_id, batch in pending.items():
                conversation = stored.get(conversation_id) or Conversation.open(batch[0])
                seen = await self._seen_before(conversation, batch)
                before, causes_before = conversation.sequence, set(conversation.recent)
                for message in batch:
                    conversation.receive(message, seen_before=message.provider_message_id in seen)
                if conversation.sequence != before or set(conversation.recent) - causes_before:
                    changed.append(conversation)
                touched.append(conversation)
            lost = await self.repository.save_many(changed)
            await self._publish_many([c for c in touched if c.id not in lost])
            if not lost:
                return
            pending = {i: pending[i] for i in pending if i in lost}
        raise ConcurrentUpdate(", ".join(pending))

    async def on_reply_sent(
        self, reply: ReplySent, channel: ChannelSnapshot | None
    ) -> list[ConversationEvent]:
        auto_ownership = channel.auto_ownership if channel is not None else False
        try:
            _, events = await self.apply(
                reply.conversation_id, lambda c: c.record_reply(reply, auto_ownership)
            )
        except ConversationNotFound:
            return []  # a reply to a conversation routing never saw (another deployment's data)
        return events

    # --- background work ---------------------------------------------------------------------------

    async def relay_outbox(self) -> int:
        """Publish events that were saved but may not have reached Kafka (after a crash)."""
        # each candidate as its newest claim says (rolling forward a claim whose writer died
        # before writing the document), so the relay also publishes that claim's events and a
        # flag reopened because of it settles once they are out
        candidates = await self.repository.pending_outbox()
        pending = [await self.repository.get(c.id) or c for c in candidates]
        count = sum(len(c.unpublished()) for c in pending)
        # a flag left open with nothing to publish (a late mark cannot tell whether a newer
        # change was published meanwhile) is settled here
        settled = [(c.id, c.sequence, c.version) for c in pending if not c.unpublished()]
        await self._publish_many(pending)
        await self.repository.mark_published_many(settled)
        return count

    async def prune_seen_messages(self) -> int:
        """Forget provider message ids older than the retention (no TTL indexes on FerretDB)."""
        return await self.repository.prune_seen(self.clock())

    async def auto_resolve(self, channels: list[ChannelSnapshot]) -> int:
        """Resolve idle New and Pending conversations, per channel and queue threshold.

        Safe with several replicas: each resolution is a conditional write on the version that
        was read, so only one replica wins it; the others see a conflict and move on.
        """
        now = self.clock()
        resolved = 0
        for channel in channels:
            for queue, seconds in (
                (Queue.NEW, channel.auto_resolve_new_s),
                (Queue.PENDING, channel.auto_resolve_pending_s),
            ):
                if seconds is None:
                    continue
                threshold = timedelta(seconds=seconds)
                for candidate in await self.repository.idle(channel.channel_id, queue, now - threshold):
                    events = candidate.auto_resolve(now, threshold)
                    if not events:
                        continue
                    try:
                        await self.repository.save(candidate)
                    except ConcurrentUpdate:
                        continue  # changed or resolved elsewhere since it was read
                    await self._publish_many([candidate])
                    resolved += 1
        return resolved
