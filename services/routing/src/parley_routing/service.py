"""Service layer: load the aggregate, apply a change, save it, publish what it caused.

Every change goes through :meth:`ConversationService.apply`: optimistic concurrency with retries,
events recorded in the document with the change (so nothing is lost if the publish fails), then
published, appended to the history and marked published.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from parley_events import (
    ChannelRole,
    ChannelSnapshot,
    ConversationEvent,
    ConversationReadRequested,
    HandoverReceived,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    Queue,
    ReplySent,
    ThreadControlReleased,
    ThreadControlTaken,
)

from parley_routing import metrics
from parley_routing.adapters.stores import (
    ConcurrentUpdate,
    ConversationRepository,
    Epochs,
    Fenced,
)
from parley_routing.cache import ConversationCache
from parley_routing.domain.access import (
    Actor,
    acting_role,
    check_assign,
    check_unassign,
    marks_read_on_open,
)
from parley_routing.domain.model import (
    AwayMessage,
    Conversation,
    Note,
    away_message_for,
    command_cause,
    shown_history,
)
from parley_routing.ownership import PartitionEpochs

log = structlog.get_logger(__name__)

MAX_CONFLICT_RETRIES = 10
READ_REQUESTS_REMEMBERED = 10_000
"""Read requests one replica remembers having published, so that an agent tool opening the same
conversation again and again does not publish again (policy still sends each message's receipt
once whatever arrives)."""

Inbound = MessageReceived | HandoverReceived | MessageEdited | MessageDeleted
"""What routing takes from the inbound topic."""

Publish = Callable[[ConversationEvent], Awaitable[None]]
PublishTogether = Callable[[Sequence[ConversationEvent]], Awaitable[Sequence[BaseException | None]]]
"""Publish events of different conversations at once; each one's outcome, in order (None: acknowledged)."""
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


def _count_unknown_changes(items: Sequence[Inbound]) -> None:
    for item in items:
        if isinstance(item, MessageEdited | MessageDeleted):
            action = "edited" if isinstance(item, MessageEdited) else "deleted"
            metrics.CHANGES_OF_UNKNOWN_MESSAGES.labels(provider=item.provider.value, action=action).inc()


class ConversationService:
    """Applies changes to conversations and publishes the events they cause."""

    def __init__(
        self,
        repository: ConversationRepository,
        publish: Publish,
        clock: Clock = utcnow,
        cache: ConversationCache | None = None,
        channel_of: Callable[[str], ChannelSnapshot | None] = lambda _: None,
        ownership: PartitionEpochs | None = None,
        publish_together: PublishTogether | None = None,
    ) -> None:
        self.repository = repository
        self.publish = publish
        self.publish_together = publish_together or self._one_task_each
        """How a batch's conversations publish their next events at once (by default one
        :attr:`publish` each, concurrently; the process hands them all to the producer and then
        waits for their acknowledgements)."""
        self.clock = clock
        self.cache = cache if cache is not None else ConversationCache()
        """The conversations of the assigned partitions, kept between batches (cache.py)."""
        self.channel_of = channel_of
        """The channel read model (its snapshot carries the business hours and away message)."""
        self.ownership = ownership if ownership is not None else PartitionEpochs(repository)
        """The epochs of the inbound partitions this replica owns (ownership.py)."""

    async def _one_task_each(self, events: Sequence[ConversationEvent]) -> list[BaseException | None]:
        if len(events) == 1:  # no task for a lone event
            try:
                await self.publish(events[0])
            except Exception as exc:
                return [exc]
            return [None]
        answers = await asyncio.gather(*(self.publish(e) for e in events), return_exceptions=True)
        return [a if isinstance(a, BaseException) else None for a in answers]

    def _away(self, message: MessageReceived) -> AwayMessage | None:
        return away_message_for(self.channel_of(message.channel_id), message.provider_timestamp)

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
            committed: list[Conversation] = []
            if conversation.sequence != before or set(conversation.recent) - causes_before:
                # whatever the outcome, the batch's copy (if it keeps one) is stale now
                self.cache.discard(conversation_id)
                if await self.repository.commit([conversation], self.clock()):
                    continue
                committed.append(conversation)
            await self._publish_many([conversation], committed)
            return conversation, events
        raise ConcurrentUpdate(conversation_id)

    async def _publish_many(
        self, conversations: Sequence[Conversation], committed: Sequence[Conversation] = ()
    ) -> None:
        """Publish every event not yet known to be published, then tell the store what went out.

        ``committed`` were just written by :meth:`ConversationRepository.commit`, which wrote what
        their events add outside the document (notes, seen message ids) with them; for the others
        (an earlier change whose publish failed, the relay) it is written again first (idempotent),
        so a crash in between leaves the events unpublished and the relay writes it again.
        """
        # in order: an earlier change whose publish failed goes out before this one, and is never
        # marked published without being sent. Conversations are independent (each is its own
        # Kafka key), so they go out together, in rounds: each round hands the producer the next
        # event of every conversation not yet done and waits for all their acknowledgements
        # (one round trip to the brokers for the batch, not one per conversation). Within one
        # conversation an event goes out only once the one before it was acknowledged, so a
        # failed event is never overtaken by a later one of its conversation.
        pending = [(c, fresh) for c in conversations if (fresh := c.unpublished())]
        if not pending:
            return
        written = {c.id for c in committed}
        earlier = [e for c, fresh in pending if c.id not in written for e in fresh]
        if earlier:
            await self.repository.record_projections(earlier, self.clock())

        outcomes: list[BaseException | None] = [None] * len(pending)
        done = [0] * len(pending)
        while due := [i for i, (_, f) in enumerate(pending) if outcomes[i] is None and done[i] < len(f)]:
            answers = await self.publish_together([pending[i][1][done[i]] for i in due])
            for i, answer in zip(due, answers, strict=True):
                if answer is None:
                    done[i] += 1
                else:
                    outcomes[i] = answer
        # record what did reach Kafka even if another conversation's publish failed, so the relay
        # re-sends only what is really missing
        sent = [(c, fresh) for (c, fresh), outcome in zip(pending, outcomes, strict=True) if outcome is None]
        await self.repository.published(sent)
        for conversation, fresh in sent:
            conversation.published_sequence = max(conversation.published_sequence, fresh[-1].sequence)
        for outcome in outcomes:
            if outcome is not None:
                raise outcome

    # --- from the streams -----------------------------------------------------------------------

    async def on_message(self, message: MessageReceived) -> list[ConversationEvent]:
        stored = await self.repository.get(message.conversation_id)
        seen = set() if stored is None else await self._seen_before(stored, [message])
        _, events = await self.apply(
            message.conversation_id,
            lambda c: c.receive(
                message, seen_before=message.provider_message_id in seen, away=self._away(message)
            ),
            opening=message,
        )
        return events

    async def on_change(self, change: MessageEdited | MessageDeleted) -> list[ConversationEvent]:
        """An edit or removal of a message (ignored and counted for a message never received)."""
        await self.on_messages([change])
        return []

    async def _known(
        self, conversation: Conversation, changes: Sequence[MessageEdited | MessageDeleted]
    ) -> set[str]:
        """Provider message ids of the changed messages this conversation received: the ids it
        remembers, or the store's (for messages older than the document remembers)."""
        ids = {c.provider_message_id for c in changes if not conversation.has_applied(c.event_id)}
        known = {i for i in ids if i in conversation.seen_messages}
        rest = sorted(ids - known)
        if rest and conversation.sequence > 0:
            known |= await self.repository.seen_before(conversation.id, rest)
        return known

    @staticmethod
    def _may_be_forgotten(conversation: Conversation, messages: Sequence[MessageReceived]) -> list[str]:
        """Provider message ids of ``messages`` only the store can say whether this conversation
        received: a message older than its last activity, and not among the ids the document
        itself remembers, can be a late redelivery the document has forgotten. The store is asked
        about those alone, so the usual message costs no extra read."""
        return [
            m.provider_message_id
            for m in messages
            if conversation.sequence > 0
            and not conversation.has_applied(m.event_id)
            and m.provider_message_id not in conversation.seen_messages
            and m.provider_timestamp <= conversation.last_activity_at
        ]

    async def _seen_before(self, conversation: Conversation, messages: Sequence[MessageReceived]) -> set[str]:
        """Provider message ids of ``messages`` the store remembers for this conversation."""
        candidates = self._may_be_forgotten(conversation, messages)
        if not candidates:
            return set()
        return await self.repository.seen_before(conversation.id, candidates)

    async def on_messages(
        self,
        messages: Sequence[Inbound],
        partitions: Mapping[str, int] | None = None,
        epochs: Epochs | None = None,
    ) -> None:
        """Apply a batch of messages (and handovers) with a few store round trips for the batch.

        Items are grouped by conversation (keeping their order); every conversation is read
        in one query, changed in memory, saved with one bulk version claim and one bulk write,
        and its events published concurrently with the others. A conversation someone else
        changed meanwhile is reloaded and retried on its own; the rest stay saved. Same result,
        event for event, as calling :meth:`on_message` (or :meth:`on_handover`) for each in order.
        A handover for a conversation routing has not seen is left out (its model says why), as is
        an edit or removal of a message it never received (counted).

        ``partitions`` (conversation id -> the inbound partition its messages came from): the
        conversations committed are kept in memory under it, and the next batch reads from the
        store only those not kept (:class:`ConversationCache`); a kept one that someone else
        changed meanwhile loses its version check and is read again like any other conflict.

        ``epochs``: the ownership epochs of the partitions the messages came from
        (:mod:`parley_routing.ownership`). If a newer owner took one of them the store writes
        nothing and :class:`Fenced` is raised: the records are the new owner's to apply.
        """
        pending: dict[str, list[Inbound]] = {}
        for message in messages:
            pending.setdefault(message.conversation_id, []).append(message)
        generation = self.cache.generation
        for attempt in range(MAX_CONFLICT_RETRIES):
            if attempt == 0:
                # taken out while the batch changes them: kept again only once committed
                stored = self.cache.take(pending)
                if missing := [i for i in pending if i not in stored]:
                    stored |= await self.repository.get_many(missing)
            else:  # one at a time, rolling forward any claim a crashed writer left behind
                found = {i: await self.repository.get(i) for i in pending}
                stored = {i: c for i, c in found.items() if c is not None}
            touched: list[Conversation] = []
            changed: list[Conversation] = []
            work: list[tuple[Conversation, list[Inbound], list[MessageReceived]]] = []
            for conversation_id, batch in pending.items():
                conversation = stored.get(conversation_id)
                if conversation is None:
                    # handovers, edits and removals before the thread's first message change nothing
                    opening = next((m for m in batch if isinstance(m, MessageReceived)), None)
                    if opening is None:
                        if attempt == 0:
                            _count_unknown_changes(batch)
                        continue
                    if attempt == 0:
                        _count_unknown_changes(batch[: batch.index(opening)])
                    batch = batch[batch.index(opening) :]
                    conversation = Conversation.open(opening)
                work.append((conversation, batch, [m for m in batch if isinstance(m, MessageReceived)]))
            # the store is asked once for the batch about messages only it remembers (a burst of
            # late redeliveries after an outage would otherwise cost a round trip per conversation)
            asked = {c.id: ids for c, _, received in work if (ids := self._may_be_forgotten(c, received))}
            seen_by_conversation = await self.repository.seen_before_many(asked) if asked else {}
            for conversation, batch, _ in work:
                seen = seen_by_conversation.get(conversation.id, set())
                changes = [m for m in batch if isinstance(m, MessageEdited | MessageDeleted)]
                known = await self._known(conversation, changes) if changes else set()
                before, causes_before = conversation.sequence, set(conversation.recent)
                for item in batch:
                    if isinstance(item, HandoverReceived):
                        conversation.handover(item)
                    elif isinstance(item, MessageEdited | MessageDeleted):
                        # a message received earlier in this batch counts as received
                        received_now = item.provider_message_id in conversation.seen_messages
                        is_known = item.provider_message_id in known or received_now
                        if not is_known and not conversation.has_applied(item.event_id) and attempt == 0:
                            _count_unknown_changes([item])
                        conversation.change_message(item, is_known)
                    else:
                        conversation.receive(
                            item, seen_before=item.provider_message_id in seen, away=self._away(item)
                        )
                if conversation.sequence != before or set(conversation.recent) - causes_before:
                    changed.append(conversation)
                touched.append(conversation)
            lost = await self.repository.commit(changed, self.clock(), epochs)
            saved = [c for c in touched if c.id not in lost]
            await self._publish_many(saved, [c for c in changed if c.id not in lost])
            if partitions is not None:
                self.cache.keep(partitions, saved, generation)
            if not lost:
                return
            pending = {i: pending[i] for i in pending if i in lost}
        raise ConcurrentUpdate(", ".join(pending))

    async def on_owned_batch(
        self, messages: Sequence[Inbound], sources: Mapping[str, tuple[str, int]]
    ) -> None:
        """A batch from the inbound partitions this replica was assigned: :meth:`on_messages` with
        the epochs of its partitions (``sources``: conversation id -> its records' topic and
        partition). :class:`Fenced` (counted, logged) when a newer owner took one of them, here
        or in the store: nothing was written, and the caller must not commit the records."""
        try:
            epochs = await self.ownership.of(set(sources.values()))
            await self.on_messages(messages, {c: p for c, (_, p) in sources.items()}, epochs)
        except Fenced as fenced:
            metrics.FENCED_BATCHES.labels(by=fenced.by).inc()
            log.warning(
                "batch fenced: a newer owner took its partitions, nothing written",
                partitions=[f"{topic}[{partition}]" for topic, partition in fenced.partitions],
                by=fenced.by,
                records=len(messages),
            )
            raise

    async def on_thread_control_call(
        self, call: ThreadControlTaken | ThreadControlReleased, parley_active: bool
    ) -> list[ConversationEvent]:
        """An agent's take or release through policy's API, after the provider accepted it."""
        try:
            _, events = await self.apply(
                call.conversation_id,
                lambda c: c.change_thread_control(
                    parley_active, call.actor_id, f"thread_control:{call.event_id}", call.occurred_at
                ),
            )
        except ConversationNotFound:
            return []
        return events

    async def on_handover(self, handover: HandoverReceived) -> list[ConversationEvent]:
        """A provider's handover: who answers the thread now (ignored for an unknown thread)."""
        try:
            _, events = await self.apply(handover.conversation_id, lambda c: c.handover(handover))
        except ConversationNotFound:
            return []
        return events

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
        # only what no other process holds (PostgreSQL: what another replica committed is its to
        # publish while its lease runs, and of two relays one takes each conversation); each
        # candidate as its newest claim says (rolling forward a claim whose writer died before
        # writing the document), so the relay also publishes that claim's events and a flag
        # reopened because of it settles once they are out
        candidates = await self.repository.claim_outbox()
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
                    self.cache.discard(candidate.id)
                    if await self.repository.commit([candidate], now):
                        continue  # changed or resolved elsewhere since it was read
                    await self._publish_many([candidate], [candidate])
                    resolved += 1
        return resolved


# --- the agents' side: what a caller may see and do ------------------------------------------------


class ChannelRoles(Protocol):
    """Who has which role on which channel (the channel and team read models)."""

    def role_of(self, tenant_id: str, user_id: str, channel_id: str) -> ChannelRole | None:
        """The user's own role on a channel of their tenant; None: no access or not their tenant's."""
        ...

    def channel_ids_of(self, tenant_id: str) -> list[str]:
        """Every channel of the tenant."""
        ...

    def has_channel(self, tenant_id: str, channel_id: str) -> bool:
        """Whether the channel exists and is the tenant's."""
        ...


@dataclass(frozen=True, slots=True)
class Visible:
    """A conversation as one caller may see it, with the role the caller acts with."""

    conversation: Conversation
    role: ChannelRole


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """A command's result: the conversation after it, the caller's role and what it caused."""

    conversation: Conversation
    role: ChannelRole
    events: list[ConversationEvent]


@dataclass(frozen=True, slots=True)
class VisiblePage:
    """One page of the conversations a caller may see, each with the caller's role."""

    items: list[Visible]
    next_cursor: tuple[datetime, str] | None


class AgentService:
    """The agent API's use cases: every read and command scoped to what the caller may see and do.

    A conversation of another tenant, or on a channel where the caller has no role, is answered
    exactly like a missing one (:class:`ConversationNotFound`); the role rules themselves are
    :mod:`parley_shared.access` (shared with policy).
    """

    def __init__(
        self,
        conversations: ConversationService,
        roles: ChannelRoles,
        channels: Callable[[str], ChannelSnapshot | None] | None = None,
        request_read: Callable[[ConversationReadRequested], Awaitable[None]] | None = None,
    ) -> None:
        self.conversations = conversations
        self.repository = conversations.repository
        self.roles = roles
        # the channel directory's lookup, and the publisher of read requests (none: opening reads nothing)
        self.channels = channels or (lambda channel_id: None)
        self.request_read = request_read
        self._read_requested: OrderedDict[str, None] = OrderedDict()  # this replica's, newest last

    @property
    def clock(self) -> Clock:
        return self.conversations.clock

    def role_on(self, actor: Actor, channel_id: str) -> ChannelRole | None:
        """The role ``actor`` acts with on a channel (administrators as Supervisors on their own)."""
        if not self.roles.has_channel(actor.tenant_id, channel_id):
            return None
        return acting_role(actor, self.roles.role_of(actor.tenant_id, actor.user_id, channel_id))

    async def visible(self, actor: Actor, conversation_id: str) -> Visible:
        conversation = await self.repository.get(conversation_id)
        if conversation is None or conversation.tenant_id != actor.tenant_id:
            raise ConversationNotFound(conversation_id)
        role = self.role_on(actor, conversation.channel_id)
        if role is None:
            raise ConversationNotFound(conversation_id)
        return Visible(conversation, role)

    async def list_visible(
        self,
        actor: Actor,
        *,
        queue: Queue | None = None,
        channel_id: str | None = None,
        owner_id: str | None = None,
        limit: int = 50,
        after: tuple[datetime, str] | None = None,
    ) -> VisiblePage:
        """The caller's conversations, newest activity first (only channels they have a role on)."""
        roles = {cid: self.role_on(actor, cid) for cid in self.roles.channel_ids_of(actor.tenant_id)}
        seen = {cid: role for cid, role in roles.items() if role is not None}
        wanted = [cid for cid in seen if channel_id is None or cid == channel_id]
        page = await self.repository.list_visible(
            actor.tenant_id, wanted, queue=queue, owner_id=owner_id, limit=limit, after=after
        )
        return VisiblePage([Visible(c, seen[c.channel_id]) for c in page.items], page.next_cursor)

    async def detail(
        self, actor: Actor, conversation_id: str
    ) -> tuple[Visible, list[dict[str, Any]], list[Note]]:
        """A conversation with its history and its notes."""
        found = await self.visible(actor, conversation_id)
        # the history as far as the state read: a change committed between the two reads (its row
        # and its history entries commit together) shows in the next read, never half in this one
        seen = found.conversation.sequence
        written = await self.repository.history_of(conversation_id)
        history = shown_history([entry for entry in written if entry.get("sequence", 0) <= seen])
        return found, history, await self.repository.notes_of(found.conversation)

    async def open(
        self, actor: Actor, conversation_id: str
    ) -> tuple[Visible, list[dict[str, Any]], list[Note]]:
        """An agent opens a conversation in their tool: what :meth:`detail` gives, and, on a channel
        that marks messages read on open, a request to mark the customer's last message read when
        the agent may reply (policy sends it, once per message). Opening the same state again from
        this replica asks nothing more."""
        found, history, notes = await self.detail(actor, conversation_id)
        conversation = found.conversation
        if self.request_read is not None and marks_read_on_open(
            found.role, self.channels(conversation.channel_id)
        ):
            event_id = f"rdq_{conversation.id}_{conversation.sequence}"
            if event_id not in self._read_requested:
                await self.request_read(
                    ConversationReadRequested(
                        event_id=event_id,
                        conversation_id=conversation.id,
                        tenant_id=conversation.tenant_id,
                        channel_id=conversation.channel_id,
                        provider=conversation.provider,
                        requested_by=actor.user_id,
                        occurred_at=self.clock(),
                    )
                )
                self._read_requested[event_id] = None
                while len(self._read_requested) > READ_REQUESTS_REMEMBERED:
                    self._read_requested.popitem(last=False)
        return found, history, notes

    async def notes(self, actor: Actor, conversation_id: str) -> tuple[Visible, list[Note]]:
        found = await self.visible(actor, conversation_id)
        return found, await self.repository.notes_of(found.conversation)

    async def _command(
        self,
        actor: Actor,
        conversation_id: str,
        key: str,
        change: Callable[[Conversation, str, datetime], list[ConversationEvent]],
        check: Callable[[Visible], None] = lambda _found: None,
    ) -> CommandOutcome:
        found = await self.visible(actor, conversation_id)
        check(found)
        cause = command_cause(actor.user_id, key)
        updated, events = await self.conversations.apply(
            conversation_id, lambda c: change(c, cause, self.clock())
        )
        return CommandOutcome(updated, found.role, events)

    async def move(self, actor: Actor, conversation_id: str, to: Queue, key: str) -> CommandOutcome:
        """Move to Pending or Resolved (any role); resolving clears the owner."""
        return await self._command(
            actor, conversation_id, key, lambda c, cause, now: c.move(to, actor.user_id, cause, now)
        )

    async def assign(self, actor: Actor, conversation_id: str, owner_id: str, key: str) -> CommandOutcome:
        """Make someone the owner: themselves as a Contributor, anyone who can reply as a Supervisor."""

        def check(found: Visible) -> None:
            channel_id = found.conversation.channel_id
            check_assign(
                actor, found.role, owner_id, self.roles.role_of(actor.tenant_id, owner_id, channel_id)
            )

        return await self._command(
            actor,
            conversation_id,
            key,
            lambda c, cause, now: c.assign(owner_id, actor.user_id, cause, now),
            check,
        )

    async def unassign(self, actor: Actor, conversation_id: str, key: str) -> CommandOutcome:
        """Clear the owner: one's own ownership as a Contributor, anyone's as a Supervisor."""
        return await self._command(
            actor,
            conversation_id,
            key,
            lambda c, cause, now: c.unassign(actor.user_id, cause, now),
            lambda found: check_unassign(actor, found.role, found.conversation.owner_id),
        )

    async def change_labels(
        self, actor: Actor, conversation_id: str, kind: str, add: list[str], remove: list[str], key: str
    ) -> CommandOutcome:
        """Add and remove tags or topics (any role)."""
        return await self._command(
            actor,
            conversation_id,
            key,
            lambda c, cause, now: c.change_labels(kind, add, remove, actor.user_id, cause, now),
        )

    async def add_note(self, actor: Actor, conversation_id: str, text: str, key: str) -> CommandOutcome:
        """Add an internal note (any role)."""
        return await self._command(
            actor, conversation_id, key, lambda c, cause, now: c.add_note(text, actor.user_id, cause, now)
        )
