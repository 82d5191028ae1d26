"""The conversation aggregate (pure): queues, ownership, labels, notes and the events it causes.

Rules:
- A customer's first message opens the conversation in New.
- Every message (inbound, or the business's own outbound echo or sent reply) is added with the
  next sequence number; ``last_activity_at`` follows the newest message.
- Reopening: an inbound customer message (any kind but a reaction) on a Pending or Resolved
  conversation moves it back to New (reason ``reopened``). Echoes, replies and reactions do not,
  nor does a duplicate (a provider message id already seen), nor a message sent more than
  :data:`REOPEN_GRACE` before the conversation was resolved (a replayed old delivery): those are
  recorded, or ignored as duplicates, and the conversation stays resolved. A message sent shortly
  before the resolution but delivered after it (pipeline lag) does reopen: the customer wrote
  after the agent last looked.
- Agents move conversations to Pending or Resolved. Resolving clears the owner.
- Auto-ownership: when the channel has it on, the human agent whose reply was sent becomes the
  owner if there is none. An existing owner is kept (the reply does not take the conversation
  from a colleague). Automated senders never become owners. With it off, only assignment changes
  ownership.
- Auto-resolve: a New or Pending conversation idle for longer than its channel's threshold is
  resolved (reason ``auto_resolve``) and loses its owner.
- Thread control (Meta's Conversation Routing): a conversation remembers whether Parley's app is
  the thread's active responder (``parley_active``, true until a provider says otherwise) and
  announces each change (``thread_control_changed``). A message delivered on standby is added to
  the history, marked ``standby``, and means another app answers; a customer message the
  provider says it delivered to the active responder (``standby`` false) means Parley answers
  (one whose provider says nothing, ``standby`` null, decides nothing); a handover the provider
  reports (passed to Parley, taken from it) and an agent's take or release through Parley's API
  say so outright. A signal
  older than the last change applied (a late redelivery) changes nothing; a handover for a thread
  routing has never seen is ignored (its next message will say who answers).
- Edits and removals (Page feed comments): a message the customer edited keeps its id and shows
  the new text (``message_edited``); one removed stays in the history, marked deleted
  (``message_deleted``). A change of a message the conversation never received (before Parley
  connected, or a post, which is the thread rather than a message) changes nothing: it is
  acknowledged and counted by the service, not an error. The history is shown with the changes
  applied (:func:`shown_history`).
- Caps (security #13): at most :data:`MAX_TAGS` tags, :data:`MAX_TOPICS` topics, labels of at
  most :data:`MAX_LABEL_LENGTH` characters, :data:`MAX_NOTES` notes of at most
  :data:`MAX_NOTE_LENGTH` characters. Notes live outside the conversation document (the
  conversation counts them; the note itself travels in its ``note_added`` event).

Every change is recorded under a *cause* id (a message event id, a reply id, a command's
idempotency key, an auto-resolve run): applying the same cause again changes nothing and returns
the events it caused the first time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from parley_events import (
    Author,
    ChannelSnapshot,
    Content,
    ConversationAwayMessageDue,
    ConversationCreated,
    ConversationEvent,
    ConversationLabelsChanged,
    ConversationMessageAdded,
    ConversationMessageDeleted,
    ConversationMessageEdited,
    ConversationNoteAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationStatusChanged,
    ConversationThreadControlChanged,
    Direction,
    HandoverReceived,
    MessageDeleted,
    MessageEdited,
    MessageKind,
    MessageReceived,
    OwnerChangeReason,
    Provider,
    Queue,
    ReplySent,
    SenderType,
    StatusChangeReason,
    ThreadControlReason,
    model_for,
)
from parley_events.hours import current_period

RECENT_LIMIT = 50
"""How many causes a conversation remembers with the events they caused (published ones; causes
whose events are not yet published are kept until they are, within the document size bound)."""
SEEN_MESSAGES_LIMIT = 200
"""How many provider message ids a conversation remembers (echo of a sent reply = one message)."""
REOPEN_GRACE = timedelta(hours=1)
"""How long before a resolution a message may have been sent and still reopen the conversation:
longer than any pipeline lag (a message written just before an agent or auto-resolve closed the
conversation, delivered just after), far shorter than the providers' replay windows (Meta's
36 hours, WhatsApp's 7 days), whose redeliveries the seen message ids catch anyway."""
LABEL_KINDS = ("tags", "topics")
MAX_LABELS = {"tags": 50, "topics": 20}
"""Most tags and topics one conversation carries."""
MAX_TAGS = MAX_LABELS["tags"]
MAX_TOPICS = MAX_LABELS["topics"]
MAX_LABEL_LENGTH = 64
"""Most characters in one tag or topic (after trimming)."""
MAX_NOTES = 200
"""Most notes on one conversation."""
MAX_NOTE_LENGTH = 4000
"""Most characters in one note."""


def key_of(*parts: str) -> str:
    """Join ids into one key, injectively: ``%`` and ``:`` inside a part are percent-encoded, so
    ``("a:b", "c")`` and ``("a", "b:c")`` give different keys (ids may contain ``:``)."""
    return ":".join(p.replace("%", "%25").replace(":", "%3A") for p in parts)


def command_cause(user_id: str, idempotency_key: str) -> str:
    """The cause id of an agent's command: one per (user, idempotency key), never shared."""
    return "cmd:" + key_of(user_id, idempotency_key)


@dataclass(frozen=True, slots=True)
class AwayMessage:
    """The channel is out of business hours when a customer writes: what to answer, and which
    closed period it is (one away message per conversation per period)."""

    text: str
    period: str
    """The closed period's id: the instant it began (``never-open`` for a schedule with no hours)."""
    closed_since: datetime | None
    opens_at: datetime | None


def away_message_for(channel: ChannelSnapshot | None, at: datetime) -> AwayMessage | None:
    """The away message due for a customer message written at ``at`` on ``channel``: None when
    the channel has no away message or no schedule (always open), or is open at ``at``."""
    if channel is None or not channel.away_message or channel.business_hours is None:
        return None
    is_open, since, until = current_period(channel.business_hours, at)
    if is_open:
        return None
    period = since.isoformat() if since is not None else "never-open"
    return AwayMessage(channel.away_message, period, since, until)


class InvalidCommand(ValueError):
    """A command that cannot apply to this conversation; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def conversation_event_id(conversation_id: str, sequence: int) -> str:
    """Deterministic: one id per (conversation, sequence number)."""
    digest = hashlib.sha256(f"{conversation_id}\x1f{sequence}".encode()).hexdigest()[:32]
    return f"cev_{digest}"


@dataclass
class Note:
    """An internal note on a conversation."""

    note_id: str
    author_id: str
    text: str
    created_at: datetime


@dataclass
class Conversation:
    """A thread with one customer (or one post's comments) on one channel."""

    id: str
    tenant_id: str
    channel_id: str
    provider: Provider
    conversation_key: str
    queue: Queue
    created_at: datetime
    last_activity_at: datetime
    sequence: int = 0
    version: int = 0
    published_sequence: int = 0
    owner_id: str | None = None
    resolved_at: datetime | None = None
    """When the conversation was last resolved (None while it is open, or resolved before this
    was recorded)."""
    tags: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    note_count: int = 0
    legacy_notes: list[Note] = field(default_factory=list)
    """Notes an older version embedded in the document: the repository moves them to the notes
    collection when it next saves the conversation (they are no longer written here)."""
    seen_messages: list[str] = field(default_factory=list)
    parley_active: bool = True
    """Whether Parley's app is the thread's active responder (Conversation Routing)."""
    active_app_id: str | None = None
    """The provider's id of the app that answers the thread, when a handover named it."""
    thread_control_at: datetime | None = None
    """The provider time of the signal behind the last thread-control change."""
    away_sent_for: str | None = None
    """The closed period (:attr:`AwayMessage.period`) the conversation's away message was asked
    for: a second customer message in the same period asks for none."""
    recent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Cause id -> the events it caused (JSON), oldest cause first, bounded."""
    _recorded: dict[int, ConversationEvent] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """The events this copy recorded itself, by sequence (not stored): :meth:`unpublished` hands
    them out without parsing their JSON again."""

    # --- creation and idempotency ---------------------------------------------------------

    @classmethod
    def open(cls, message: MessageReceived) -> Conversation:
        """A conversation for a thread Parley has not seen before (no events yet)."""
        return cls(
            id=message.conversation_id,
            tenant_id=message.tenant_id,
            channel_id=message.channel_id,
            provider=message.provider,
            conversation_key=message.conversation_key,
            queue=Queue.NEW,
            created_at=message.provider_timestamp,
            last_activity_at=message.provider_timestamp,
        )

    def has_applied(self, cause_id: str) -> bool:
        return cause_id in self.recent

    def events_of(self, cause_id: str) -> list[ConversationEvent]:
        """The events a cause produced when it was first applied."""
        return [_event_from_json(data) for data in self.recent.get(cause_id, [])]

    def unpublished(self) -> list[ConversationEvent]:
        """Recorded events with a sequence above the last one known to be published."""
        # only the unpublished ones are parsed (validating every remembered event was most of the
        # domain's time per message)
        published, known = self.published_sequence, self._recorded
        for sequence in [s for s in known if s <= published]:
            del known[sequence]  # a cached copy lives long: keep only what may still go out
        events = [
            known.get(sequence) or _event_from_json(data)
            for recorded in self.recent.values()
            for data in recorded
            if (sequence := data["data"]["sequence"]) > published
        ]
        return sorted(events, key=lambda e: e.sequence)

    # --- messages ---------------------------------------------------------------------------

    def receive(
        self, message: MessageReceived, seen_before: bool = False, away: AwayMessage | None = None
    ) -> list[ConversationEvent]:
        """Apply a normalized message; idempotent on its event id.

        ``seen_before``: the store remembers this provider message id (a redelivery older than
        the ids the conversation itself remembers): it is a duplicate. ``away``: the channel was
        out of business hours when the message was written (:func:`away_message_for`): a direct
        customer message Parley answers asks for the away message, once per closed period.
        """
        if self.has_applied(message.event_id):
            return self.events_of(message.event_id)
        events: list[ConversationEvent] = []
        if self.sequence == 0:
            events.append(
                ConversationCreated(
                    **self._next(message.provider_timestamp),
                    provider=self.provider,
                    conversation_key=self.conversation_key,
                    queue=self.queue,
                )
            )
        duplicate = (seen_before or message.provider_message_id in self.seen_messages) and (
            not message.content.deleted
        )
        if not duplicate:
            events.append(
                ConversationMessageAdded(
                    **self._next(message.provider_timestamp),
                    message_event_id=message.event_id,
                    direction=message.direction,
                    author=message.author,
                    content=message.content,
                    provider_message_id=message.provider_message_id,
                    provider_timestamp=message.provider_timestamp,
                    standby=message.standby is True,
                )
            )
            self._saw(message.provider_message_id)
            if message.standby is True:
                events.extend(
                    self._thread_control(
                        False, ThreadControlReason.STANDBY_MESSAGE, message.provider_timestamp
                    )
                )
            elif message.standby is False and message.direction is Direction.INBOUND:
                # the provider delivered the customer's message to the active responder: Parley
                # (a provider that does not say, standby None, proves nothing: on WhatsApp a
                # message reaching an app no longer means it may answer)
                events.extend(
                    self._thread_control(True, ThreadControlReason.MESSAGE, message.provider_timestamp)
                )
        self.last_activity_at = max(self.last_activity_at, message.provider_timestamp)
        reopens = (
            message.direction is Direction.INBOUND
            and message.kind is not MessageKind.REACTION
            and not duplicate
            # a message sent well before the resolution (a replayed old delivery) does not reopen;
            # one sent just before it and delivered late (pipeline lag) does
            and (self.resolved_at is None or message.provider_timestamp >= self.resolved_at - REOPEN_GRACE)
        )
        if reopens and self.queue is not Queue.NEW:
            events.append(self._status(Queue.NEW, StatusChangeReason.REOPENED, message.provider_timestamp))
        if (
            away is not None
            and away.period != self.away_sent_for
            and message.direction is Direction.INBOUND
            and message.kind is MessageKind.DIRECT
            and not duplicate
            and not message.content.deleted
            and self.parley_active  # another app answers the thread (standby): not Parley's to answer
        ):
            self.away_sent_for = away.period
            events.append(
                ConversationAwayMessageDue(
                    **self._next(message.provider_timestamp),
                    message_event_id=message.event_id,
                    text=away.text,
                    closed_since=away.closed_since,
                    opens_at=away.opens_at,
                )
            )
        return self._remember(message.event_id, events)

    def change_message(self, change: MessageEdited | MessageDeleted, known: bool) -> list[ConversationEvent]:
        """An edit or removal of a message; ``known``: the conversation received that message (the
        service asks the store for one the document no longer remembers). Idempotent."""
        if self.has_applied(change.event_id):
            return self.events_of(change.event_id)
        if not known:
            return self._remember(change.event_id, [])
        event: ConversationEvent
        if isinstance(change, MessageEdited):
            event = ConversationMessageEdited(
                **self._next(change.provider_timestamp),
                message_event_id=change.message_event_id,
                provider_message_id=change.provider_message_id,
                text=change.text,
                provider_timestamp=change.provider_timestamp,
            )
        else:
            event = ConversationMessageDeleted(
                **self._next(change.provider_timestamp),
                message_event_id=change.message_event_id,
                provider_message_id=change.provider_message_id,
                provider_timestamp=change.provider_timestamp,
            )
        return self._remember(change.event_id, [event])

    def record_reply(self, reply: ReplySent, auto_ownership: bool) -> list[ConversationEvent]:
        """A reply was sent: add it as an outbound message and apply auto-ownership."""
        cause = f"reply:{reply.reply_id}"
        if self.has_applied(cause):
            return self.events_of(cause)
        events: list[ConversationEvent] = []
        if reply.provider_message_id not in self.seen_messages:
            events.append(
                ConversationMessageAdded(
                    **self._next(reply.sent_at),
                    message_event_id=cause,
                    direction=Direction.OUTBOUND,
                    author=Author(id=reply.agent_id or "automation"),
                    content=Content(text=reply.text),
                    provider_message_id=reply.provider_message_id,
                    provider_timestamp=reply.sent_at,
                )
            )
            self._saw(reply.provider_message_id)
            self.last_activity_at = max(self.last_activity_at, reply.sent_at)
        human = reply.sender_type is SenderType.HUMAN and reply.agent_id is not None
        if auto_ownership and human and self.owner_id is None and self.queue is not Queue.RESOLVED:
            assert reply.agent_id is not None
            events.append(self._assign(reply.agent_id, OwnerChangeReason.AUTO_OWNERSHIP, None, reply.sent_at))
        return self._remember(cause, events)

    def handover(self, handover: HandoverReceived) -> list[ConversationEvent]:
        """A provider's handover notification: who answers the thread now; idempotent."""
        if self.has_applied(handover.event_id):
            return self.events_of(handover.event_id)
        events: list[ConversationEvent] = []
        if handover.parley_active is not None:
            reason = ThreadControlReason.PASSED if handover.parley_active else ThreadControlReason.TAKEN
            events = self._thread_control(
                handover.parley_active, reason, handover.provider_timestamp, handover.new_owner_app_id
            )
        return self._remember(handover.event_id, events)

    def change_thread_control(
        self, parley_active: bool, actor_id: str, cause: str, at: datetime
    ) -> list[ConversationEvent]:
        """An agent took (``parley_active``) or released the thread through Parley's API."""
        if self.has_applied(cause):
            return self.events_of(cause)
        reason = ThreadControlReason.AGENT_TAKE if parley_active else ThreadControlReason.AGENT_RELEASE
        return self._remember(cause, self._thread_control(parley_active, reason, at, actor_id=actor_id))

    # --- agent commands -----------------------------------------------------------------

    def move(self, to: Queue, actor_id: str, cause: str, at: datetime) -> list[ConversationEvent]:
        """Move to Pending or Resolved; moving to the queue it is in changes nothing."""
        if self.has_applied(cause):
            return self.events_of(cause)
        if to is Queue.NEW:
            raise InvalidCommand("INVALID_TRANSITION", "agents move conversations to pending or resolved")
        events: list[ConversationEvent] = []
        if to is not self.queue:
            events.append(self._status(to, StatusChangeReason.AGENT, at, actor_id))
            if to is Queue.RESOLVED and self.owner_id is not None:
                events.append(self._clear_owner(OwnerChangeReason.RESOLVED, actor_id, at))
        return self._remember(cause, events)

    def assign(self, owner_id: str, actor_id: str, cause: str, at: datetime) -> list[ConversationEvent]:
        if self.has_applied(cause):
            return self.events_of(cause)
        events: list[ConversationEvent] = []
        if self.owner_id != owner_id:
            events.append(self._assign(owner_id, OwnerChangeReason.ASSIGNED, actor_id, at))
        return self._remember(cause, events)

    def unassign(self, actor_id: str, cause: str, at: datetime) -> list[ConversationEvent]:
        if self.has_applied(cause):
            return self.events_of(cause)
        events: list[ConversationEvent] = []
        if self.owner_id is not None:
            events.append(self._clear_owner(OwnerChangeReason.UNASSIGNED, actor_id, at))
        return self._remember(cause, events)

    def change_labels(
        self, kind: str, add: Iterable[str], remove: Iterable[str], actor_id: str, cause: str, at: datetime
    ) -> list[ConversationEvent]:
        """Add and remove tags or topics; labels are trimmed, deduplicated and kept in order."""
        if self.has_applied(cause):
            return self.events_of(cause)
        if kind not in LABEL_KINDS:
            raise InvalidCommand("INVALID_LABEL_KIND", f"labels are tags or topics, not {kind!r}")
        current: list[str] = getattr(self, kind)
        to_add = [x for x in dict.fromkeys(s.strip() for s in add) if x and x not in current]
        to_remove = [x for x in dict.fromkeys(s.strip() for s in remove) if x in current and x not in to_add]
        if too_long := [x for x in to_add if len(x) > MAX_LABEL_LENGTH]:
            raise InvalidCommand(
                "LABEL_TOO_LONG",
                f"a label has at most {MAX_LABEL_LENGTH} characters ({too_long[0][:20]!r}...)",
            )
        after = [x for x in current if x not in to_remove] + to_add
        if to_add and len(after) > MAX_LABELS[kind]:
            raise InvalidCommand(
                f"TOO_MANY_{kind.upper()}",
                f"a conversation has at most {MAX_LABELS[kind]} {kind} ({len(after)} after this change)",
            )
        events: list[ConversationEvent] = []
        if to_add or to_remove:
            current[:] = after
            events.append(
                ConversationLabelsChanged(
                    **self._next(at),
                    kind=kind,
                    added=tuple(to_add),
                    removed=tuple(to_remove),
                    current=tuple(current),
                    actor_id=actor_id,
                )
            )
        return self._remember(cause, events)

    def add_note(self, text: str, author_id: str, cause: str, at: datetime) -> list[ConversationEvent]:
        if self.has_applied(cause):
            return self.events_of(cause)
        if not text.strip():
            raise InvalidCommand("EMPTY_NOTE", "a note needs some text")
        if len(text) > MAX_NOTE_LENGTH:
            raise InvalidCommand("NOTE_TOO_LONG", f"a note has at most {MAX_NOTE_LENGTH} characters")
        if self.note_count >= MAX_NOTES:
            raise InvalidCommand("TOO_MANY_NOTES", f"a conversation has at most {MAX_NOTES} notes")
        note_id = "note_" + hashlib.sha256(f"{self.id}\x1f{cause}".encode()).hexdigest()[:24]
        # the note itself is kept in the notes collection (from this event), not in the document
        self.note_count += 1
        event = ConversationNoteAdded(**self._next(at), note_id=note_id, text=text, author_id=author_id)
        return self._remember(cause, [event])

    # --- auto-resolve ------------------------------------------------------------------------

    def is_idle(self, now: datetime, threshold: timedelta | None) -> bool:
        return (
            threshold is not None
            and self.queue in (Queue.NEW, Queue.PENDING)
            and self.last_activity_at <= now - threshold
        )

    def auto_resolve(self, now: datetime, threshold: timedelta | None) -> list[ConversationEvent]:
        """Resolve an idle New or Pending conversation and clear its owner."""
        if not self.is_idle(now, threshold):
            return []
        cause = f"auto_resolve:{self.sequence}"
        events: list[ConversationEvent] = [self._status(Queue.RESOLVED, StatusChangeReason.AUTO_RESOLVE, now)]
        if self.owner_id is not None:
            events.append(self._clear_owner(OwnerChangeReason.RESOLVED, None, now))
        return self._remember(cause, events)

    # --- internals ----------------------------------------------------------------------------

    def _thread_control(
        self,
        parley_active: bool,
        reason: ThreadControlReason,
        at: datetime,
        app_id: str | None = None,
        actor_id: str | None = None,
    ) -> list[ConversationEvent]:
        """Record who answers the thread; an event when that changes, none for an older signal."""
        if self.thread_control_at is not None and at < self.thread_control_at:
            return []  # a late redelivery: a newer signal already decided
        changed = parley_active != self.parley_active
        self.thread_control_at = at
        if app_id is not None or changed:
            self.active_app_id = app_id
        if not changed:
            return []
        self.parley_active = parley_active
        return [
            ConversationThreadControlChanged(
                **self._next(at),
                parley_active=parley_active,
                reason=reason,
                active_app_id=app_id,
                actor_id=actor_id,
            )
        ]

    def _status(
        self, to: Queue, reason: StatusChangeReason, at: datetime, actor_id: str | None = None
    ) -> ConversationStatusChanged:
        event = ConversationStatusChanged(
            **self._next(at), from_queue=self.queue, to_queue=to, reason=reason, actor_id=actor_id
        )
        self.queue = to
        self.resolved_at = at if to is Queue.RESOLVED else None
        return event

    def _assign(
        self, owner_id: str, reason: OwnerChangeReason, actor_id: str | None, at: datetime
    ) -> ConversationOwnerAssigned:
        event = ConversationOwnerAssigned(
            **self._next(at),
            owner_id=owner_id,
            previous_owner_id=self.owner_id,
            reason=reason,
            actor_id=actor_id,
        )
        self.owner_id = owner_id
        return event

    def _clear_owner(
        self, reason: OwnerChangeReason, actor_id: str | None, at: datetime
    ) -> ConversationOwnerCleared:
        assert self.owner_id is not None
        event = ConversationOwnerCleared(
            **self._next(at), previous_owner_id=self.owner_id, reason=reason, actor_id=actor_id
        )
        self.owner_id = None
        return event

    def _next(self, at: datetime) -> dict[str, Any]:
        self.sequence += 1
        return {
            "event_id": conversation_event_id(self.id, self.sequence),
            "conversation_id": self.id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "sequence": self.sequence,
            "occurred_at": at,
        }

    def _saw(self, provider_message_id: str) -> None:
        self.seen_messages.append(provider_message_id)
        del self.seen_messages[:-SEEN_MESSAGES_LIMIT]

    def _remember(self, cause: str, events: list[ConversationEvent]) -> list[ConversationEvent]:
        self.recent[cause] = [{"type": e.event_type, "data": e.model_dump(mode="json")} for e in events]
        self._recorded.update((e.sequence, e) for e in events)
        while len(self.recent) > RECENT_LIMIT:
            oldest = next(iter(self.recent))
            if any(d["data"]["sequence"] > self.published_sequence for d in self.recent[oldest]):
                break  # never forget events that may still need publishing
            del self.recent[oldest]
        return events

    def _forget_published(self, keep: int) -> bool:
        """Forget the oldest causes whose events are all published until ``keep`` remain (causes
        with unpublished events stay); whether any was forgotten. Agents' commands are forgotten
        last: a retried command whose cause is forgotten would apply again (a second note), while
        a forgotten message is still recognised by its provider message id. What makes documents
        large is customer messages; commands' events are small and capped (labels, notes)."""
        published = [
            cause
            for cause, events in self.recent.items()
            if all(d["data"]["sequence"] <= self.published_sequence for d in events)
        ]
        published.sort(key=lambda cause: cause.startswith("cmd:"))  # stable: oldest first in each
        drop = published[: max(0, len(self.recent) - keep)]
        for cause in drop:
            del self.recent[cause]
        return bool(drop)

    # --- persistence mapping -------------------------------------------------------------------

    def bounded_document(
        self, size_of: Callable[[dict[str, Any]], int], max_bytes: int
    ) -> tuple[dict[str, Any], int]:
        """The document and its size, remembering fewer published causes (halving them) while it
        would be larger than ``max_bytes``: long customer messages must not make a conversation
        unwritable. The size may still exceed ``max_bytes`` (the caller refuses the save)."""
        doc = self.to_document()
        size = size_of(doc)
        keep = len(self.recent)
        while size > max_bytes and keep > 0:
            keep //= 2
            if self._forget_published(keep):
                doc = self.to_document()
                size = size_of(doc)
        return doc, size

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "provider": self.provider.value,
            "conversation_key": self.conversation_key,
            "queue": self.queue.value,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
            "sequence": self.sequence,
            "version": self.version,
            "published_sequence": self.published_sequence,
            "outbox_pending": self.sequence > self.published_sequence,
            "owner_id": self.owner_id,
            "resolved_at": self.resolved_at,
            "tags": list(self.tags),
            "topics": list(self.topics),
            "note_count": self.note_count,
            "seen_messages": list(self.seen_messages),
            "parley_active": self.parley_active,
            "active_app_id": self.active_app_id,
            "thread_control_at": self.thread_control_at,
            "away_sent_for": self.away_sent_for,
            # a list keeps insertion order on every store
            "recent": [{"cause": k, "events": v} for k, v in self.recent.items()],
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Conversation:
        return cls(
            id=doc["_id"],
            tenant_id=doc["tenant_id"],
            channel_id=doc["channel_id"],
            provider=Provider(doc["provider"]),
            conversation_key=doc["conversation_key"],
            queue=Queue(doc["queue"]),
            created_at=doc["created_at"],
            last_activity_at=doc["last_activity_at"],
            sequence=doc["sequence"],
            version=doc["version"],
            published_sequence=doc.get("published_sequence", 0),
            owner_id=doc.get("owner_id"),
            resolved_at=doc.get("resolved_at"),
            tags=list(doc.get("tags", [])),
            topics=list(doc.get("topics", [])),
            note_count=doc.get("note_count", len(doc.get("notes", []))),
            legacy_notes=[Note(**n) for n in doc.get("notes", [])],
            seen_messages=list(doc.get("seen_messages", [])),
            parley_active=doc.get("parley_active", True),
            active_app_id=doc.get("active_app_id"),
            thread_control_at=doc.get("thread_control_at"),
            away_sent_for=doc.get("away_sent_for"),
            recent={r["cause"]: r["events"] for r in doc.get("recent", [])},
        )


def shown_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as agents see it: each edited message shows its newest text (``edited_at``
    says when), each removed one is marked ``content.deleted`` (``deleted_at``); the edit and
    removal events stay in the list after it (what happened, in order)."""
    edits: dict[str, dict[str, Any]] = {}
    removals: dict[str, dict[str, Any]] = {}
    for entry in history:
        if entry.get("type") == ConversationMessageEdited.event_type:
            edits[entry["message_event_id"]] = entry  # by sequence: the last edit wins
        elif entry.get("type") == ConversationMessageDeleted.event_type:
            removals.setdefault(entry["message_event_id"], entry)
    if not edits and not removals:
        return history
    shown: list[dict[str, Any]] = []
    for entry in history:
        message = entry.get("message_event_id")
        if entry.get("type") == ConversationMessageAdded.event_type and (
            message in edits or message in removals
        ):
            content = dict(entry.get("content") or {})
            entry = dict(entry)
            if message in edits:
                content["text"] = edits[message].get("text")
                entry["edited_at"] = edits[message].get("provider_timestamp")
            if message in removals:
                content["deleted"] = True
                entry["deleted_at"] = removals[message].get("provider_timestamp")
            entry["content"] = content
        shown.append(entry)
    return shown


def _event_from_json(data: Mapping[str, Any]) -> ConversationEvent:
    event = model_for(data["type"]).model_validate(data["data"])
    assert isinstance(event, ConversationEvent)
    return event
