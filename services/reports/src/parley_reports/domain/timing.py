"""Each conversation's timing state, and what each public event adds to the report buckets (pure).

Measures are taken in **event time** (when a message was written, a reply sent, a conversation
resolved), never in the order events reach this process, so a rebuild that reads the topics in
another order yields the same report.

Conversation events come in order per conversation (one partition, a gapless ``sequence``); a
reply's outcome comes on another topic, so a ``reply.sent`` may be seen before the customer
message it answers. The rule (docs/reports.md): a reply is counted in the volume at once, but it
is measured (first response, reply time) only once the conversation's own events have reached
the reply's time, that is once an event at or after ``sent_at``, or routing's record of that very
message, has been applied. Until then it waits in the conversation's state (``parked``). When the
conversation events are ahead instead, a reply is measured at its own time against the messages
that were waiting then, and counted in the cycle (created or reopened) it was sent in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from parley_events import (
    BusinessHours,
    ConversationCreated,
    ConversationEvent,
    ConversationMessageAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationStatusChanged,
    Direction,
    MessageStatusChanged,
    Provider,
    Queue,
    ReplyFailed,
    ReplyRejected,
    ReplySent,
    SenderType,
    StatusChangeReason,
)
from parley_events.hours import AWAY_MESSAGE_REQUESTER, business_seconds

from parley_reports.domain import buckets as m
from parley_reports.domain.buckets import (
    Contribution,
    Count,
    Delta,
    Sample,
    contribution,
    contribution_document,
    contribution_from,
)

MAX_CYCLES = 20
"""Cycles (created, each reopening) kept per conversation: a late reply finds the one it belongs to."""
MAX_WAITING = 200
"""Unanswered customer messages kept per conversation (the oldest are measured, the rest counted)."""
MAX_OUTBOUND = 50
"""Recent outbound provider message ids kept, to match a reply to routing's record of it."""

ReportEvent = ConversationEvent | ReplySent | ReplyRejected | ReplyFailed | MessageStatusChanged


@dataclass
class Cycle:
    """From a conversation's creation or reopening to its resolution."""

    start: datetime
    first_human_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class ParkedReply:
    """A sent reply whose conversation's events have not reached its time yet."""

    reply_id: str
    sent_at: datetime
    human: bool
    agent_id: str | None
    provider_message_id: str


@dataclass
class ConversationTiming:
    """What reports remember about one conversation (its timing state and backlog facts)."""

    conversation_id: str
    tenant_id: str
    channel_id: str
    sequence: int = 0
    """The last conversation event applied (its per-conversation sequence)."""
    known_until: datetime | None = None
    """The time of the latest conversation event applied."""
    queue: Queue | None = None
    owner_id: str | None = None
    cycles: list[Cycle] = field(default_factory=list)
    waiting: list[datetime] = field(default_factory=list)
    """Customer messages with no reply yet, oldest first."""
    parked: list[ParkedReply] = field(default_factory=list)
    outbound: list[str] = field(default_factory=list)
    applied: set[str] = field(default_factory=set)
    """Ids of the reply-topic events and priced messages already counted."""
    pending: list[Contribution] = field(default_factory=list)
    """What applied events add to the buckets, saved with the state until the buckets have it."""
    version: int = 0
    hours: BusinessHours | None = field(default=None, compare=False, repr=False)
    """The channel's business hours while an event is applied (not stored: the caller passes the
    schedule the channel snapshot has when it applies the event; None: always open)."""

    @property
    def waiting_since(self) -> datetime | None:
        """The oldest customer message still waiting for an answer (None: nothing waits).

        A message the conversation was resolved after waits no more (it stays in ``waiting`` only
        for a reply sent before that resolution that has not arrived yet)."""
        return next((w for w in self.waiting if not self._resolved_between(w, None)), None)

    def _resolved_between(self, start: datetime, end: datetime | None) -> bool:
        """Whether the conversation was resolved after ``start`` (and at or before ``end``)."""
        return any(
            c.resolved_at is not None and start <= c.resolved_at and (end is None or c.resolved_at <= end)
            for c in self.cycles
        )

    @property
    def is_open(self) -> bool:
        return self.queue in (Queue.NEW, Queue.PENDING)

    def has_applied(self, event: ReportEvent) -> bool:
        if isinstance(event, ConversationEvent):
            return event.sequence <= self.sequence
        return _event_key(event) in self.applied

    # --- applying events ------------------------------------------------------------------------

    def apply(self, event: ReportEvent, hours: BusinessHours | None = None) -> list[Contribution]:
        """Apply one public event; what it adds to the buckets (nothing for a duplicate).

        Each duration is measured twice: in wall time and in the business time of ``hours`` (the
        channel's schedule; None: always open, so both are equal)."""
        self.hours = hours
        if self.has_applied(event):
            return []
        if isinstance(event, ConversationEvent):
            return self._on_conversation_event(event)
        self.applied.add(_event_key(event))
        if isinstance(event, ReplySent):
            return self._on_reply_sent(event)
        if isinstance(event, ReplyRejected):
            codes = sorted({r.code for r in event.reasons}) or ["UNKNOWN"]
            return [self._at(event.event_id, event.occurred_at, *(Count(m.REJECTED, c) for c in codes))]
        if isinstance(event, ReplyFailed):
            key = f"{event.error_kind}/{event.error.code if event.error.code is not None else '-'}"
            return [self._at(event.event_id, event.occurred_at, Count(m.FAILED, key))]
        return self._on_status(event)

    def _at(self, event_id: str, at: datetime, *deltas: Delta) -> Contribution:
        return contribution(event_id, self.tenant_id, self.channel_id, at, *deltas)

    def _on_conversation_event(self, event: ConversationEvent) -> list[Contribution]:
        out: list[Contribution] = []
        # replies sent before this event happened are measured first, in the order they were sent
        if isinstance(event, ConversationMessageAdded) and event.direction is Direction.OUTBOUND:
            out += self._release(lambda p: p.provider_message_id == event.provider_message_id)
        out += self._release(lambda p: p.sent_at <= event.occurred_at)
        self.sequence = event.sequence
        self.known_until = max(self.known_until or event.occurred_at, event.occurred_at)
        at, eid = event.occurred_at, event.event_id
        if isinstance(event, ConversationCreated):
            self.queue = event.queue
            self._start_cycle(at)
            out.append(self._at(eid, at, Count(m.CREATED)))
        elif isinstance(event, ConversationMessageAdded):
            out += self._on_message(event)
        elif isinstance(event, ConversationStatusChanged):
            out += self._on_status_changed(event)
        elif isinstance(event, ConversationOwnerAssigned):
            self.owner_id = event.owner_id
            out.append(self._at(eid, at, Count(m.AGENT_OWNED, event.owner_id)))
        elif isinstance(event, ConversationOwnerCleared):
            self.owner_id = None
        return out

    def _on_message(self, event: ConversationMessageAdded) -> list[Contribution]:
        if event.direction is Direction.OUTBOUND:
            self.outbound = [*self.outbound, event.provider_message_id][-MAX_OUTBOUND:]
            return []
        content = event.content
        if content.reaction is not None or content.deleted:
            return []  # a reaction or a deletion asks for no answer
        if not event.standby:  # another app answers standby messages: nobody here is waiting
            self.waiting = sorted([*self.waiting, event.provider_timestamp])[:MAX_WAITING]
        return [self._at(event.event_id, event.occurred_at, Count(m.INBOUND))]

    def _on_status_changed(self, event: ConversationStatusChanged) -> list[Contribution]:
        at, deltas = event.occurred_at, list[Delta]()
        self.queue = event.to_queue
        if event.to_queue is Queue.RESOLVED and event.from_queue is not Queue.RESOLVED:
            cycle = self._cycle_at(at)
            if cycle is not None and cycle.resolved_at is None:
                cycle.resolved_at = at
                deltas += self._durations(m.RESOLUTION, m.RESOLUTION_BUSINESS, cycle.start, at)
            if event.reason is StatusChangeReason.AUTO_RESOLVE:
                deltas.append(Count(m.RESOLVED_AUTO))
            else:
                deltas.append(Count(m.RESOLVED_AGENT))
                agent = event.actor_id or self.owner_id
                if agent:
                    deltas.append(Count(m.AGENT_RESOLVED, agent))
        elif event.reason is StatusChangeReason.REOPENED:
            self._start_cycle(at)
            deltas.append(Count(m.REOPENED))
        return [self._at(event.event_id, at, *deltas)] if deltas else []

    def _start_cycle(self, at: datetime) -> None:
        self.cycles = [*self.cycles, Cycle(at)][-MAX_CYCLES:]

    def _cycle_at(self, at: datetime) -> Cycle | None:
        """The cycle an instant falls in: the last one started at or before it."""
        started = [c for c in self.cycles if c.start <= at]
        return started[-1] if started else None

    def _on_reply_sent(self, reply: ReplySent) -> list[Contribution]:
        human = reply.sender_type is SenderType.HUMAN
        deltas: list[Delta] = [Count(m.REPLIES_HUMAN if human else m.REPLIES_AUTOMATED)]
        if human and reply.agent_id:
            deltas.append(Count(m.AGENT_REPLIES, reply.agent_id))
        out = [self._at(f"sent:{reply.reply_id}", reply.sent_at, *deltas)]
        if reply.requested_by == AWAY_MESSAGE_REQUESTER:
            return out  # an away message tells the customer when to expect an answer: it is not one
        parked = ParkedReply(reply.reply_id, reply.sent_at, human, reply.agent_id, reply.provider_message_id)
        reached = self.known_until is not None and self.known_until >= reply.sent_at
        if reached or reply.provider_message_id in self.outbound:
            out += self._measure(parked)
        else:
            self.parked = sorted([*self.parked, parked], key=lambda p: p.sent_at)
        return out

    def _release(self, due: Any) -> list[Contribution]:
        ready = [p for p in self.parked if due(p)]
        if not ready:
            return []
        self.parked = [p for p in self.parked if not due(p)]
        return [c for p in ready for c in self._measure(p)]

    def _measure(self, reply: ParkedReply) -> list[Contribution]:
        """A reply's timings at its own time: the messages it answers, a cycle's first response."""
        at, deltas = reply.sent_at, list[Delta]()
        # a message the conversation was resolved after, before this reply, was never answered;
        # either way it waits no more (replies come in the order they were sent)
        answered = [w for w in self.waiting if w <= at and not self._resolved_between(w, at)]
        self.waiting = [w for w in self.waiting if w > at]
        for w in answered:
            deltas += self._durations(m.REPLY_TIME, m.REPLY_TIME_BUSINESS, w, at)
        cycle = self._cycle_at(at)
        if reply.human and cycle is not None and cycle.first_human_at is None:
            cycle.first_human_at = at
            deltas += self._durations(m.FIRST_RESPONSE, m.FIRST_RESPONSE_BUSINESS, cycle.start, at)
            if reply.agent_id:
                deltas += self._durations(
                    m.AGENT_FIRST_RESPONSE, m.AGENT_FIRST_RESPONSE_BUSINESS, cycle.start, at, reply.agent_id
                )
        return [self._at(f"timing:{reply.reply_id}", at, *deltas)] if deltas else []

    def _durations(
        self, wall: str, business: str, start: datetime, end: datetime, key: str = ""
    ) -> list[Delta]:
        """One duration in wall time and in the channel's business time."""
        return [
            Sample(wall, (end - start).total_seconds(), key),
            Sample(business, business_seconds(self.hours, start, end), key),
        ]

    def _on_status(self, event: MessageStatusChanged) -> list[Contribution]:
        category = event.pricing.category if event.pricing is not None else None
        if event.provider is not Provider.WHATSAPP or not category:
            return []
        # a message's statuses (sent, delivered, read) each carry its pricing: count it once
        fresh = [i for i in event.provider_message_ids if f"priced:{i}" not in self.applied]
        self.applied.update(f"priced:{i}" for i in fresh)
        if not fresh:
            return []
        return [self._at(event.event_id, event.provider_timestamp, Count(m.PRICED, category, len(fresh)))]

    # --- stored form ----------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.conversation_id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "sequence": self.sequence,
            "known_until": self.known_until,
            "queue": self.queue.value if self.queue is not None else None,
            "owner_id": self.owner_id,
            "waiting_since": self.waiting_since,
            # lists of documents, not of lists: FerretDB stores no nested arrays
            "cycles": [
                {"start": c.start, "first_human_at": c.first_human_at, "resolved_at": c.resolved_at}
                for c in self.cycles
            ],
            "waiting": list(self.waiting),
            "parked": [
                {
                    "reply_id": p.reply_id,
                    "sent_at": p.sent_at,
                    "human": p.human,
                    "agent_id": p.agent_id,
                    "provider_message_id": p.provider_message_id,
                }
                for p in self.parked
            ],
            "outbound": list(self.outbound),
            "applied": sorted(self.applied),
            "pending": [contribution_document(c) for c in self.pending],
            "version": self.version,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ConversationTiming:
        return cls(
            conversation_id=doc["_id"],
            tenant_id=doc["tenant_id"],
            channel_id=doc["channel_id"],
            sequence=int(doc.get("sequence", 0)),
            known_until=_utc(doc.get("known_until")),
            queue=Queue(doc["queue"]) if doc.get("queue") else None,
            owner_id=doc.get("owner_id"),
            cycles=[
                Cycle(_instant(c["start"]), _utc(c.get("first_human_at")), _utc(c.get("resolved_at")))
                for c in doc.get("cycles", ())
            ],
            waiting=[_instant(t) for t in doc.get("waiting", ())],
            parked=[
                ParkedReply(
                    p["reply_id"],
                    _instant(p["sent_at"]),
                    bool(p["human"]),
                    p.get("agent_id"),
                    p["provider_message_id"],
                )
                for p in doc.get("parked", ())
            ],
            outbound=list(doc.get("outbound", ())),
            applied=set(doc.get("applied", ())),
            pending=[contribution_from(c) for c in doc.get("pending", ())],
            version=int(doc.get("version", 0)),
        )


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _instant(value: Any) -> datetime:
    found = _utc(value)
    assert found is not None
    return found


def _event_key(event: ReplySent | ReplyRejected | ReplyFailed | MessageStatusChanged) -> str:
    if isinstance(event, ReplySent):
        return f"sent:{event.reply_id}"  # reply.sent carries no event id: one per reply
    return event.event_id


def new_state(event: ReportEvent) -> ConversationTiming:
    """The empty state of the conversation an event belongs to."""
    return ConversationTiming(event.conversation_id, event.tenant_id, event.channel_id)
