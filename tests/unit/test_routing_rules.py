"""The conversation aggregate's rules, table by table (see the docstring of domain/model.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

import bson
import pytest
from parley_events import (
    ConversationCreated,
    ConversationEvent,
    ConversationLabelsChanged,
    ConversationMessageAdded,
    ConversationNoteAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationStatusChanged,
    Direction,
    MessageKind,
    MessageReceived,
    OwnerChangeReason,
    Queue,
    ReplySent,
    SenderType,
    StatusChangeReason,
)
from parley_routing.domain.model import (
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    MAX_NOTE_LENGTH,
    MAX_NOTES,
    MAX_TAGS,
    MAX_TOPICS,
    RECENT_LIMIT,
    REOPEN_GRACE,
    Conversation,
    InvalidCommand,
    command_cause,
    conversation_event_id,
)

from tests.unit.factories import T0, message

pytestmark = pytest.mark.unit

AGENT = "agent_a"
OTHER = "agent_b"
AT = T0 + timedelta(hours=1)
E = TypeVar("E", bound=ConversationEvent)


# --- builders ------------------------------------------------------------------------------


def kind_message(
    n: int,
    kind: MessageKind = MessageKind.DIRECT,
    direction: Direction = Direction.INBOUND,
    *,
    at: datetime | None = None,
) -> MessageReceived:
    """The n-th message of conv_1, of the given kind and direction."""
    return message(n, direction=direction, at=at).model_copy(update={"kind": kind})


def reply(
    n: int,
    *,
    agent_id: str | None = AGENT,
    sender_type: SenderType = SenderType.HUMAN,
    provider_message_id: str | None = None,
    at: datetime | None = None,
) -> ReplySent:
    return ReplySent(
        reply_id=f"rpl_{n}",
        conversation_id="conv_1",
        tenant_id="ten_acme",
        channel_id="chn_1",
        sender_type=sender_type,
        agent_id=agent_id,
        provider_message_id=provider_message_id or f"m_reply_{n}",
        text=f"reply {n}",
        sent_at=at if at is not None else T0 + timedelta(minutes=n),
    )


def opened() -> Conversation:
    """conv_1 after its first message: New, sequences 1 and 2 used."""
    conversation = Conversation.open(message(1))
    conversation.receive(message(1))
    return conversation


def in_queue(queue: Queue, owner: str | None = None) -> Conversation:
    conversation = opened()
    if queue is not Queue.NEW:
        # moved when the first message arrived: every later message is newer than a resolution
        conversation.move(queue, AGENT, "setup:move", message(1).provider_timestamp)
    if owner is not None:
        conversation.assign(owner, AGENT, "setup:assign", AT)
    assert conversation.queue is queue
    assert conversation.owner_id == owner
    return conversation


def of_type(events: list[ConversationEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def sequences(events: list[ConversationEvent]) -> list[int]:
    return [e.sequence for e in events]


# --- 1. queues ------------------------------------------------------------------------------


def test_a_new_conversation_is_in_new() -> None:
    first = message(1)
    conversation = Conversation.open(first)
    created = conversation.receive(first)[0]

    assert conversation.queue is Queue.NEW
    assert isinstance(created, ConversationCreated)
    assert created.queue is Queue.NEW


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (Queue.NEW, Queue.PENDING),
        (Queue.NEW, Queue.RESOLVED),
        (Queue.PENDING, Queue.RESOLVED),
        (Queue.RESOLVED, Queue.PENDING),
    ],
)
def test_an_agent_moving_a_conversation_emits_status_changed(start: Queue, to: Queue) -> None:
    conversation = in_queue(start)
    before = conversation.sequence

    events = conversation.move(to, "agent_x", "cmd_1", AT)

    assert len(events) == 1
    [changed] = events
    assert isinstance(changed, ConversationStatusChanged)
    assert (changed.from_queue, changed.to_queue) == (start, to)
    assert changed.reason is StatusChangeReason.AGENT
    assert changed.actor_id == "agent_x"
    assert changed.sequence == before + 1
    assert changed.occurred_at == AT
    assert conversation.queue is to


@pytest.mark.parametrize("queue", [Queue.PENDING, Queue.RESOLVED])
def test_moving_to_the_queue_it_is_in_emits_nothing(queue: Queue) -> None:
    conversation = in_queue(queue)
    before = conversation.sequence

    assert conversation.move(queue, AGENT, "cmd_same", AT) == []
    assert conversation.queue is queue
    assert conversation.sequence == before


@pytest.mark.parametrize("start", list(Queue))
def test_agents_cannot_move_a_conversation_to_new(start: Queue) -> None:
    conversation = in_queue(start)
    before = conversation.sequence

    with pytest.raises(InvalidCommand) as caught:
        conversation.move(Queue.NEW, AGENT, "cmd_new", AT)

    assert caught.value.code == "INVALID_TRANSITION"
    assert conversation.queue is start
    assert conversation.sequence == before
    assert not conversation.has_applied("cmd_new")


REOPEN_TABLE = [
    # (start queue, kind, direction, reopens?)
    *[
        (q, k, Direction.INBOUND, True)
        for q in (Queue.PENDING, Queue.RESOLVED)
        for k in MessageKind
        if k is not MessageKind.REACTION
    ],
    (Queue.PENDING, MessageKind.REACTION, Direction.INBOUND, False),
    (Queue.RESOLVED, MessageKind.REACTION, Direction.INBOUND, False),
    (Queue.PENDING, MessageKind.DIRECT, Direction.OUTBOUND, False),
    (Queue.RESOLVED, MessageKind.DIRECT, Direction.OUTBOUND, False),
    (Queue.RESOLVED, MessageKind.COMMENT, Direction.OUTBOUND, False),
    *[(Queue.NEW, k, d, False) for k in MessageKind for d in Direction],
]


@pytest.mark.parametrize(("start", "kind", "direction", "reopens"), REOPEN_TABLE)
def test_which_messages_reopen_a_conversation(
    start: Queue, kind: MessageKind, direction: Direction, reopens: bool
) -> None:
    conversation = in_queue(start)
    before = conversation.sequence
    incoming = kind_message(5, kind, direction)

    events = conversation.receive(incoming)

    # the message is always added first
    assert isinstance(events[0], ConversationMessageAdded)
    assert events[0].direction is direction
    assert events[0].sequence == before + 1
    status = of_type(events, ConversationStatusChanged)
    if reopens:
        assert len(events) == 2
        assert len(status) == 1
        assert (status[0].from_queue, status[0].to_queue) == (start, Queue.NEW)
        assert status[0].reason is StatusChangeReason.REOPENED
        assert status[0].actor_id is None
        assert status[0].sequence == before + 2
        assert status[0].occurred_at == incoming.provider_timestamp
        assert conversation.queue is Queue.NEW
    else:
        assert status == []
        assert len(events) == 1
        assert conversation.queue is start


def test_a_reopened_conversation_keeps_its_owner() -> None:
    conversation = in_queue(Queue.PENDING, owner=OTHER)
    events = conversation.receive(message(5))
    assert of_type(events, ConversationOwnerCleared) == []
    assert conversation.owner_id == OTHER


# --- 2. ownership ----------------------------------------------------------------------------


@pytest.mark.parametrize("start", [Queue.NEW, Queue.PENDING])
def test_resolving_an_owned_conversation_clears_its_owner_after_the_status_change(start: Queue) -> None:
    conversation = in_queue(start, owner=OTHER)
    before = conversation.sequence

    events = conversation.move(Queue.RESOLVED, AGENT, "cmd_resolve", AT)

    assert [type(e) for e in events] == [ConversationStatusChanged, ConversationOwnerCleared]
    status, cleared = events
    assert isinstance(status, ConversationStatusChanged)
    assert isinstance(cleared, ConversationOwnerCleared)
    assert status.to_queue is Queue.RESOLVED
    assert cleared.reason is OwnerChangeReason.RESOLVED
    assert cleared.previous_owner_id == OTHER
    assert cleared.actor_id == AGENT
    assert sequences(events) == [before + 1, before + 2]
    assert conversation.owner_id is None


def test_resolving_an_unowned_conversation_emits_no_owner_event() -> None:
    conversation = in_queue(Queue.PENDING)
    events = conversation.move(Queue.RESOLVED, AGENT, "cmd_resolve", AT)
    assert [type(e) for e in events] == [ConversationStatusChanged]
    assert conversation.owner_id is None


def test_moving_to_pending_keeps_the_owner() -> None:
    conversation = in_queue(Queue.NEW, owner=OTHER)
    events = conversation.move(Queue.PENDING, AGENT, "cmd_pending", AT)
    assert [type(e) for e in events] == [ConversationStatusChanged]
    assert conversation.owner_id == OTHER


def test_assign_emits_owner_assigned_with_the_previous_owner() -> None:
    conversation = opened()

    [first] = conversation.assign(AGENT, "sup_1", "cmd_1", AT)
    [second] = conversation.assign(OTHER, "sup_1", "cmd_2", AT)

    assert isinstance(first, ConversationOwnerAssigned)
    assert isinstance(second, ConversationOwnerAssigned)
    assert (first.owner_id, first.previous_owner_id) == (AGENT, None)
    assert (second.owner_id, second.previous_owner_id) == (OTHER, AGENT)
    for event in (first, second):
        assert event.reason is OwnerChangeReason.ASSIGNED
        assert event.actor_id == "sup_1"
    assert sequences([first, second]) == [3, 4]
    assert conversation.owner_id == OTHER


def test_assigning_the_current_owner_emits_nothing() -> None:
    conversation = in_queue(Queue.NEW, owner=AGENT)
    before = conversation.sequence
    assert conversation.assign(AGENT, "sup_1", "cmd_again", AT) == []
    assert conversation.owner_id == AGENT
    assert conversation.sequence == before


def test_unassign_clears_the_owner_and_unassigning_nobody_emits_nothing() -> None:
    conversation = in_queue(Queue.NEW, owner=AGENT)

    [cleared] = conversation.unassign("sup_1", "cmd_1", AT)
    assert isinstance(cleared, ConversationOwnerCleared)
    assert cleared.previous_owner_id == AGENT
    assert cleared.reason is OwnerChangeReason.UNASSIGNED
    assert cleared.actor_id == "sup_1"
    assert conversation.owner_id is None
    before = conversation.sequence

    assert conversation.unassign("sup_1", "cmd_2", AT) == []
    assert conversation.sequence == before


def test_the_same_assign_cause_twice_returns_the_same_events_and_changes_nothing() -> None:
    conversation = opened()
    first_time = conversation.assign(AGENT, "sup_1", "cmd_1", AT)
    conversation.assign(OTHER, "sup_1", "cmd_2", AT)
    before = conversation.sequence

    again = conversation.assign(AGENT, "sup_1", "cmd_1", AT)

    assert again == first_time
    assert conversation.owner_id == OTHER  # not taken back by the replay
    assert conversation.sequence == before


def test_the_same_unassign_cause_twice_returns_the_same_events_and_changes_nothing() -> None:
    conversation = in_queue(Queue.NEW, owner=AGENT)
    first_time = conversation.unassign("sup_1", "cmd_1", AT)
    conversation.assign(OTHER, "sup_1", "cmd_2", AT)
    before = conversation.sequence

    again = conversation.unassign("sup_1", "cmd_1", AT)

    assert again == first_time
    assert len(again) == 1
    assert conversation.owner_id == OTHER
    assert conversation.sequence == before


def test_the_same_move_cause_twice_returns_the_same_events_and_changes_nothing() -> None:
    conversation = in_queue(Queue.NEW, owner=AGENT)
    first_time = conversation.move(Queue.RESOLVED, AGENT, "cmd_1", AT)
    conversation.receive(message(5, at=AT + timedelta(minutes=1)))  # reopens
    before = conversation.sequence

    again = conversation.move(Queue.RESOLVED, AGENT, "cmd_1", AT)

    assert again == first_time
    assert [type(e) for e in again] == [ConversationStatusChanged, ConversationOwnerCleared]
    assert conversation.queue is Queue.NEW
    assert conversation.sequence == before


# --- 3. auto-ownership -----------------------------------------------------------------------

AUTO_OWNERSHIP_TABLE = [
    # (auto_ownership, sender type, agent id, owner before, queue, owner after, assigned?)
    pytest.param(True, SenderType.HUMAN, AGENT, None, Queue.NEW, AGENT, True, id="on-human-unowned"),
    pytest.param(True, SenderType.HUMAN, AGENT, None, Queue.PENDING, AGENT, True, id="on-human-pending"),
    pytest.param(True, SenderType.HUMAN, AGENT, OTHER, Queue.NEW, OTHER, False, id="on-owner-kept"),
    pytest.param(True, SenderType.HUMAN, AGENT, AGENT, Queue.NEW, AGENT, False, id="on-already-owner"),
    pytest.param(False, SenderType.HUMAN, AGENT, None, Queue.NEW, None, False, id="off-unowned"),
    pytest.param(False, SenderType.HUMAN, AGENT, OTHER, Queue.NEW, OTHER, False, id="off-owned"),
    pytest.param(True, SenderType.AUTOMATED, None, None, Queue.NEW, None, False, id="on-automated"),
    pytest.param(True, SenderType.AUTOMATED, "bot_1", None, Queue.NEW, None, False, id="on-automated-id"),
    pytest.param(True, SenderType.HUMAN, None, None, Queue.NEW, None, False, id="on-human-no-agent"),
    pytest.param(True, SenderType.HUMAN, AGENT, None, Queue.RESOLVED, None, False, id="on-resolved"),
]


@pytest.mark.parametrize(
    ("auto_ownership", "sender_type", "agent_id", "owner_before", "queue", "owner_after", "assigned"),
    AUTO_OWNERSHIP_TABLE,
)
def test_auto_ownership(
    auto_ownership: bool,
    sender_type: SenderType,
    agent_id: str | None,
    owner_before: str | None,
    queue: Queue,
    owner_after: str | None,
    assigned: bool,
) -> None:
    conversation = in_queue(queue, owner=owner_before)
    before = conversation.sequence
    sent = reply(7, agent_id=agent_id, sender_type=sender_type)

    events = conversation.record_reply(sent, auto_ownership)

    added = events[0]
    assert isinstance(added, ConversationMessageAdded)
    assert added.direction is Direction.OUTBOUND
    assert added.provider_message_id == sent.provider_message_id
    assert added.message_event_id == f"reply:{sent.reply_id}"
    assert added.author.id == (agent_id or "automation")
    assert added.content.text == sent.text
    assert added.sequence == before + 1
    owner_events = of_type(events, ConversationOwnerAssigned)
    if assigned:
        assert len(owner_events) == 1
        assert owner_events[0].owner_id == agent_id
        assert owner_events[0].previous_owner_id is None
        assert owner_events[0].reason is OwnerChangeReason.AUTO_OWNERSHIP
        assert owner_events[0].actor_id is None
        assert owner_events[0].sequence == before + 2
    else:
        assert owner_events == []
    assert of_type(events, ConversationOwnerCleared) == []
    assert conversation.owner_id == owner_after
    assert conversation.queue is queue  # a reply never reopens nor moves
    assert conversation.last_activity_at == sent.sent_at


def test_a_reply_whose_echo_arrived_first_is_not_added_twice() -> None:
    conversation = opened()
    echo = message(7, direction=Direction.OUTBOUND)
    [echo_added] = conversation.receive(echo)
    assert isinstance(echo_added, ConversationMessageAdded)

    events = conversation.record_reply(reply(7, provider_message_id=echo.provider_message_id), True)

    assert of_type(events, ConversationMessageAdded) == []
    [owner] = events
    assert isinstance(owner, ConversationOwnerAssigned)
    assert owner.sequence == echo_added.sequence + 1
    assert conversation.owner_id == AGENT


def test_an_echo_arriving_after_its_reply_is_not_added_twice() -> None:
    conversation = opened()
    sent = reply(7, provider_message_id="m_7")
    reply_events = conversation.record_reply(sent, False)
    assert [type(e) for e in reply_events] == [ConversationMessageAdded]
    before = conversation.sequence

    echo_events = conversation.receive(message(7, direction=Direction.OUTBOUND))

    assert echo_events == []
    assert conversation.sequence == before
    assert conversation.has_applied(message(7).event_id)


def test_the_same_reply_twice_returns_the_same_events() -> None:
    conversation = opened()
    first_time = conversation.record_reply(reply(7), True)
    before = conversation.sequence

    again = conversation.record_reply(reply(7), True)

    assert again == first_time
    assert len(again) == 2
    assert conversation.sequence == before


# --- 4. labels and notes -----------------------------------------------------------------------

LABEL_TABLE = [
    # (labels before, add, remove, added, removed, after)
    pytest.param(
        [],
        ["  vip ", "vip", "billing", "", "   "],
        [],
        ["vip", "billing"],
        [],
        ["vip", "billing"],
        id="trim-dedupe",
    ),
    pytest.param(["a", "b", "c"], ["d"], [" b "], ["d"], ["b"], ["a", "c", "d"], id="order-kept-new-last"),
    pytest.param(
        ["a", "b"], ["c", "a", "d"], [], ["c", "d"], [], ["a", "b", "c", "d"], id="present-not-added"
    ),
    pytest.param(["a", "b"], [], ["a", "a", "a "], [], ["a"], ["b"], id="remove-deduped"),
    pytest.param(["a", "b"], [], ["b", "a"], [], ["b", "a"], [], id="remove-all"),
]


@pytest.mark.parametrize("kind", ["tags", "topics"])
@pytest.mark.parametrize(("start", "add", "remove", "added", "removed", "after"), LABEL_TABLE)
def test_labels_change(
    kind: str,
    start: list[str],
    add: list[str],
    remove: list[str],
    added: list[str],
    removed: list[str],
    after: list[str],
) -> None:
    other_kind = "topics" if kind == "tags" else "tags"
    conversation = opened()
    if start:
        conversation.change_labels(kind, start, [], AGENT, "setup:labels", AT)
    conversation.change_labels(other_kind, ["untouched"], [], AGENT, "setup:other", AT)
    before = conversation.sequence

    [event] = conversation.change_labels(kind, add, remove, "agent_x", "cmd_labels", AT)

    assert isinstance(event, ConversationLabelsChanged)
    assert event.kind == kind
    assert list(event.added) == added
    assert list(event.removed) == removed
    assert list(event.current) == after
    assert event.actor_id == "agent_x"
    assert event.sequence == before + 1
    assert getattr(conversation, kind) == after
    assert getattr(conversation, other_kind) == ["untouched"]


@pytest.mark.parametrize("kind", ["tags", "topics"])
@pytest.mark.parametrize(
    ("start", "add", "remove"),
    [
        pytest.param([], [], [], id="nothing"),
        pytest.param(["a"], [], ["zzz"], id="remove-absent"),
        pytest.param([], [], ["a"], id="remove-from-empty"),
        pytest.param(["a"], ["a", " a "], [], id="add-present"),
        pytest.param([], ["", "  "], [], id="add-blank"),
    ],
)
def test_label_changes_that_change_nothing_emit_nothing(
    kind: str, start: list[str], add: list[str], remove: list[str]
) -> None:
    conversation = opened()
    if start:
        conversation.change_labels(kind, start, [], AGENT, "setup:labels", AT)
    before = conversation.sequence

    assert conversation.change_labels(kind, add, remove, AGENT, "cmd_noop", AT) == []
    assert getattr(conversation, kind) == start
    assert conversation.sequence == before


@pytest.mark.parametrize("kind", ["labels", "Tags", "", "notes"])
def test_an_unknown_label_kind_is_invalid(kind: str) -> None:
    conversation = opened()
    before = conversation.sequence

    with pytest.raises(InvalidCommand) as caught:
        conversation.change_labels(kind, ["x"], [], AGENT, "cmd_bad", AT)

    assert caught.value.code == "INVALID_LABEL_KIND"
    assert conversation.sequence == before
    assert (conversation.tags, conversation.topics) == ([], [])
    assert not conversation.has_applied("cmd_bad")


def test_the_same_label_cause_twice_is_applied_once() -> None:
    conversation = opened()
    first_time = conversation.change_labels("tags", ["vip"], [], AGENT, "cmd_1", AT)
    conversation.change_labels("tags", [], ["vip"], AGENT, "cmd_2", AT)
    before = conversation.sequence

    assert conversation.change_labels("tags", ["vip"], [], AGENT, "cmd_1", AT) == first_time
    assert conversation.tags == []
    assert conversation.sequence == before


def test_add_note_emits_note_added_and_counts_the_note() -> None:
    conversation = opened()
    before = conversation.sequence

    [event] = conversation.add_note("Customer is a VIP", "agent_x", "cmd_note", AT)

    assert isinstance(event, ConversationNoteAdded)
    assert event.text == "Customer is a VIP"
    assert event.author_id == "agent_x"
    assert event.sequence == before + 1
    assert event.occurred_at == AT
    assert conversation.note_count == 1
    # the note lives outside the document: the event carries it, the document only counts it
    assert "notes" not in conversation.to_document()


def test_note_ids_are_deterministic_per_conversation_and_cause() -> None:
    a, b = opened(), opened()
    [note_a] = a.add_note("one", AGENT, "cmd_note", AT)
    [note_b] = b.add_note("one", AGENT, "cmd_note", AT)
    [other] = a.add_note("two", AGENT, "cmd_note_2", AT)
    assert isinstance(note_a, ConversationNoteAdded)
    assert isinstance(note_b, ConversationNoteAdded)
    assert isinstance(other, ConversationNoteAdded)
    assert note_a.note_id == note_b.note_id
    assert other.note_id != note_a.note_id


def test_the_same_note_cause_twice_stores_one_note() -> None:
    conversation = opened()
    first_time = conversation.add_note("hello", AGENT, "cmd_note", AT)
    before = conversation.sequence

    assert conversation.add_note("hello", AGENT, "cmd_note", AT) == first_time
    assert conversation.note_count == 1
    assert conversation.sequence == before


@pytest.mark.parametrize("text", ["", " ", "\n\t  "])
def test_an_empty_note_is_invalid(text: str) -> None:
    conversation = opened()
    before = conversation.sequence

    with pytest.raises(InvalidCommand) as caught:
        conversation.add_note(text, AGENT, "cmd_note", AT)

    assert caught.value.code == "EMPTY_NOTE"
    assert conversation.note_count == 0
    assert conversation.sequence == before
    assert not conversation.has_applied("cmd_note")


# --- 5. auto-resolve ---------------------------------------------------------------------------

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)

AUTO_RESOLVE_TABLE = [
    # (queue, owner, idle for, threshold, resolves?)
    pytest.param(Queue.NEW, None, 2 * HOUR, HOUR, True, id="new-idle"),
    pytest.param(Queue.PENDING, None, 2 * HOUR, HOUR, True, id="pending-idle"),
    pytest.param(Queue.NEW, OTHER, 2 * HOUR, HOUR, True, id="new-idle-owned"),
    pytest.param(Queue.PENDING, OTHER, 2 * HOUR, HOUR, True, id="pending-idle-owned"),
    pytest.param(Queue.NEW, None, HOUR, HOUR, True, id="new-at-boundary"),
    pytest.param(Queue.PENDING, OTHER, HOUR, HOUR, True, id="pending-at-boundary"),
    pytest.param(Queue.NEW, None, HOUR - SECOND, HOUR, False, id="new-one-second-early"),
    pytest.param(Queue.PENDING, OTHER, HOUR - SECOND, HOUR, False, id="pending-one-second-early"),
    pytest.param(Queue.NEW, None, timedelta(days=3650), None, False, id="new-threshold-off"),
    pytest.param(Queue.PENDING, None, timedelta(days=3650), None, False, id="pending-threshold-off"),
    pytest.param(Queue.RESOLVED, None, timedelta(days=3650), HOUR, False, id="resolved-never"),
    pytest.param(Queue.RESOLVED, OTHER, timedelta(days=3650), HOUR, False, id="resolved-owned-never"),
]


@pytest.mark.parametrize(("queue", "owner", "idle_for", "threshold", "resolves"), AUTO_RESOLVE_TABLE)
def test_auto_resolve(
    queue: Queue, owner: str | None, idle_for: timedelta, threshold: timedelta | None, resolves: bool
) -> None:
    conversation = in_queue(queue, owner=owner)
    before = conversation.sequence
    now = conversation.last_activity_at + idle_for

    assert conversation.is_idle(now, threshold) is resolves
    events = conversation.auto_resolve(now, threshold)

    if not resolves:
        assert events == []
        assert (conversation.queue, conversation.owner_id) == (queue, owner)
        assert conversation.sequence == before
        return
    status = events[0]
    assert isinstance(status, ConversationStatusChanged)
    assert (status.from_queue, status.to_queue) == (queue, Queue.RESOLVED)
    assert status.reason is StatusChangeReason.AUTO_RESOLVE
    assert status.actor_id is None
    assert status.occurred_at == now
    assert status.sequence == before + 1
    if owner is None:
        assert len(events) == 1
    else:
        assert len(events) == 2
        cleared = events[1]
        assert isinstance(cleared, ConversationOwnerCleared)
        assert cleared.previous_owner_id == owner
        assert cleared.reason is OwnerChangeReason.RESOLVED
        assert cleared.actor_id is None
        assert cleared.sequence == before + 2
    assert conversation.queue is Queue.RESOLVED
    assert conversation.owner_id is None
    # a second run finds nothing to do
    assert conversation.auto_resolve(now + HOUR, threshold) == []


def test_auto_resolve_measures_idleness_from_the_latest_activity() -> None:
    conversation = opened()
    conversation.receive(message(2, at=T0 + 10 * HOUR))
    conversation.record_reply(reply(3, at=T0 + 20 * HOUR), False)

    assert conversation.auto_resolve(T0 + 20 * HOUR + HOUR - SECOND, HOUR) == []
    assert len(conversation.auto_resolve(T0 + 21 * HOUR, HOUR)) == 1


# --- 6. sequences ----------------------------------------------------------------------------------


def play_long_series(conversation: Conversation) -> list[ConversationEvent]:
    """A long mix of messages, replies, echoes and commands, with replays; returns the new events."""
    fresh: list[ConversationEvent] = []

    def keep(events: list[ConversationEvent]) -> None:
        fresh.extend(events)

    keep(conversation.receive(message(1)))
    for i in range(1, 40):
        at = T0 + timedelta(minutes=10 * i)
        keep(
            conversation.receive(
                kind_message(100 + i, MessageKind.COMMENT if i % 5 == 0 else MessageKind.DIRECT, at=at)
            )
        )
        keep(conversation.record_reply(reply(i, at=at + SECOND), auto_ownership=i % 2 == 0))
        if i % 3 == 0:
            keep(conversation.receive(message(200 + i, direction=Direction.OUTBOUND, at=at + 2 * SECOND)))
        keep(conversation.move(Queue.PENDING if i % 2 else Queue.RESOLVED, AGENT, f"move_{i}", at))
        keep(conversation.change_labels("tags", [f"t{i % 4}"], [f"t{(i + 1) % 4}"], AGENT, f"tags_{i}", at))
        if i % 4 == 0:
            keep(conversation.assign(OTHER, AGENT, f"assign_{i}", at))
        if i % 6 == 0:
            keep(conversation.unassign(AGENT, f"unassign_{i}", at))
        if i % 7 == 0:
            keep(conversation.add_note(f"note {i}", AGENT, f"note_{i}", at))
            keep(conversation.receive(kind_message(300 + i, MessageKind.REACTION, at=at)))
        if i % 8 == 0:
            keep(conversation.auto_resolve(at + timedelta(days=40), timedelta(days=30)))
        # replays of earlier causes must not consume numbers
        replayed = conversation.receive(kind_message(100 + max(1, i - 2), at=at))
        assert all(e.sequence <= conversation.sequence for e in replayed)
        conversation.move(Queue.PENDING if i % 2 else Queue.RESOLVED, AGENT, f"move_{i}", at)
        conversation.record_reply(reply(max(1, i - 1)), auto_ownership=True)
    return fresh


def test_sequences_are_gap_free_over_a_long_mixed_series() -> None:
    conversation = Conversation.open(message(1))

    events = play_long_series(conversation)

    assert len(events) > 150
    assert sequences(events) == list(range(1, len(events) + 1))
    assert conversation.sequence == len(events)
    assert len({type(e) for e in events}) == 7  # every event type took part
    assert [e.sequence for e in conversation.unpublished()] == list(range(1, len(events) + 1))


def test_event_ids_are_deterministic() -> None:
    a = Conversation.open(message(1))
    b = Conversation.open(message(1))

    events_a = play_long_series(a)
    events_b = play_long_series(b)

    assert [e.event_id for e in events_a] == [conversation_event_id("conv_1", e.sequence) for e in events_a]
    assert [e.model_dump() for e in events_a] == [e.model_dump() for e in events_b]
    assert len({e.event_id for e in events_a}) == len(events_a)
    assert conversation_event_id("conv_1", 1) == conversation_event_id("conv_1", 1)
    assert conversation_event_id("conv_1", 1) != conversation_event_id("conv_1", 2)
    assert conversation_event_id("conv_1", 1) != conversation_event_id("conv_2", 1)


# --- 6. caps and replays (security #13) ---------------------------------------------------------


@pytest.mark.parametrize(("kind", "cap"), [("tags", MAX_TAGS), ("topics", MAX_TOPICS)])
def test_labels_are_capped_per_conversation(kind: str, cap: int) -> None:
    conversation = opened()
    for n in range(cap):
        conversation.change_labels(kind, [f"label-{n}"], [], AGENT, f"cmd_{n}", AT)
    before = conversation.sequence

    with pytest.raises(InvalidCommand) as caught:
        conversation.change_labels(kind, ["one-too-many"], [], AGENT, "cmd_over", AT)

    assert caught.value.code == f"TOO_MANY_{kind.upper()}"
    assert len(getattr(conversation, kind)) == cap
    assert conversation.sequence == before
    assert not conversation.has_applied("cmd_over")
    # at the cap, removing (or swapping one for another) still works
    [event] = conversation.change_labels(kind, ["swapped"], ["label-0"], AGENT, "cmd_swap", AT)
    assert isinstance(event, ConversationLabelsChanged)
    assert len(event.current) == cap


def test_a_label_longer_than_the_cap_is_refused() -> None:
    conversation = opened()
    conversation.change_labels("tags", ["x" * MAX_LABEL_LENGTH], [], AGENT, "cmd_ok", AT)

    with pytest.raises(InvalidCommand) as caught:
        conversation.change_labels("tags", ["y" * (MAX_LABEL_LENGTH + 1)], [], AGENT, "cmd_long", AT)

    assert caught.value.code == "LABEL_TOO_LONG"
    assert conversation.tags == ["x" * MAX_LABEL_LENGTH]


def test_notes_are_capped_in_length_and_number() -> None:
    conversation = opened()
    with pytest.raises(InvalidCommand) as caught:
        conversation.add_note("n" * (MAX_NOTE_LENGTH + 1), AGENT, "cmd_long", AT)
    assert caught.value.code == "NOTE_TOO_LONG"

    for n in range(MAX_NOTES):
        conversation.add_note("n" * MAX_NOTE_LENGTH if n == 0 else "short", AGENT, f"cmd_{n}", AT)
    with pytest.raises(InvalidCommand) as caught:
        conversation.add_note("one more", AGENT, "cmd_over", AT)

    assert caught.value.code == "TOO_MANY_NOTES"
    assert conversation.note_count == MAX_NOTES


def test_a_flood_of_published_label_changes_keeps_the_document_small() -> None:
    conversation = opened()
    for n in range(500):
        kind = ("tags", "topics")[n % 2]
        label = f"{n:04d}" + "x" * (MAX_LABEL_LENGTH - 4)
        current = getattr(conversation, kind)
        remove = current[:1] if len(current) == MAX_LABELS[kind] else []
        conversation.change_labels(kind, [label], remove, AGENT, f"cmd_{n}", AT)
        conversation.published_sequence = conversation.sequence

    assert len(conversation.recent) <= RECENT_LIMIT
    assert len(bson.encode(conversation.to_document())) < 1024 * 1024


def test_notes_embedded_by_an_older_version_are_loaded_as_legacy_notes() -> None:
    conversation = opened()
    doc = conversation.to_document()
    del doc["note_count"]  # as an older version wrote it
    doc["notes"] = [{"note_id": "note_old", "author_id": AGENT, "text": "from before", "created_at": AT}]

    loaded = Conversation.from_document(doc)

    assert [n.note_id for n in loaded.legacy_notes] == ["note_old"]
    assert loaded.note_count == 1
    assert "notes" not in loaded.to_document()


def test_a_message_sent_well_before_the_resolution_is_recorded_but_does_not_reopen() -> None:
    conversation = opened()
    conversation.move(Queue.RESOLVED, AGENT, "cmd_resolve", AT)
    assert conversation.resolved_at == AT

    # a replayed old delivery: sent just over the grace before the resolution
    late = conversation.receive(message(3, at=AT - REOPEN_GRACE - timedelta(seconds=1)))

    assert [type(e) for e in late] == [ConversationMessageAdded]
    assert conversation.queue is Queue.RESOLVED

    fresh = conversation.receive(message(4, at=AT + timedelta(minutes=1)))

    assert [type(e) for e in fresh] == [ConversationMessageAdded, ConversationStatusChanged]
    assert conversation.queue is Queue.NEW
    assert conversation.resolved_at is None


@pytest.mark.parametrize(
    "sent_before",
    [
        pytest.param(timedelta(seconds=1), id="a-second-before"),
        pytest.param(timedelta(minutes=5), id="five-minutes-before"),
        pytest.param(REOPEN_GRACE, id="exactly-the-grace-before"),
    ],
)
def test_a_message_sent_shortly_before_the_resolution_and_delivered_after_it_reopens(
    sent_before: timedelta,
) -> None:
    # the customer wrote while the agent (or auto-resolve) was closing the conversation; the
    # message reached routing after the resolution (pipeline lag): the agents must see it
    conversation = opened()
    conversation.move(Queue.RESOLVED, AGENT, "cmd_resolve", AT)

    lagged = conversation.receive(message(3, at=AT - sent_before))

    assert [type(e) for e in lagged] == [ConversationMessageAdded, ConversationStatusChanged]
    assert conversation.queue is Queue.NEW
    assert conversation.resolved_at is None


def test_a_message_the_store_has_seen_is_a_duplicate_and_does_not_reopen() -> None:
    conversation = in_queue(Queue.RESOLVED)
    before = conversation.sequence
    replay = message(7, at=AT + timedelta(minutes=1)).model_copy(update={"event_id": "evt_replayed"})

    assert conversation.receive(replay, seen_before=True) == []
    assert conversation.queue is Queue.RESOLVED
    assert conversation.sequence == before


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("a:b", "c"), ("a", "b:c"), id="colon-in-user-or-key"),
        pytest.param(("a%3Ab", "c"), ("a:b", "c"), id="escape-lookalike"),
        pytest.param(("a", ":c"), ("a:", "c"), id="colon-at-the-edges"),
    ],
)
def test_command_causes_of_different_users_and_keys_never_collide(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    assert command_cause(*first) != command_cause(*second)
    conversation = opened()
    conversation.change_labels("tags", ["first"], [], first[0], command_cause(*first), AT)

    # the second user's command applies: it is not mistaken for a retry of the first
    [event] = conversation.change_labels("tags", ["second"], [], second[0], command_cause(*second), AT)

    assert isinstance(event, ConversationLabelsChanged)
    assert conversation.tags == ["first", "second"]


def test_a_document_forgets_message_causes_before_an_agents_command() -> None:
    conversation = opened()
    note_cause = command_cause(AGENT, "note-1")
    [note] = conversation.add_note("call back", AGENT, note_cause, AT)
    for n in range(2, RECENT_LIMIT + 1):  # long customer messages after the note
        conversation.receive(message(n, text="\U0001f600" * 10_000))
    conversation.published_sequence = conversation.sequence
    assert len(bson.encode(conversation.to_document())) > 1024 * 1024

    conversation.bounded_document(lambda d: len(bson.encode(d)), 1024 * 1024)

    # the agent's retry (same idempotency key) answers the same and adds no second note
    assert conversation.has_applied(note_cause)
    assert conversation.add_note("call back", AGENT, note_cause, AT) == [note]
    assert conversation.note_count == 1


def test_long_customer_messages_make_the_document_forget_old_causes_not_refuse_the_save() -> None:
    conversation = opened()
    for n in range(2, RECENT_LIMIT + 2):  # the longest DMs (X allows 10,000 characters), emoji only
        conversation.receive(message(n, text="\U0001f600" * 10_000))
    conversation.published_sequence = conversation.sequence
    unpublished = conversation.receive(message(99, text="\U0001f600" * 10_000))
    assert len(bson.encode(conversation.to_document())) > 1024 * 1024

    doc, size = conversation.bounded_document(lambda d: len(bson.encode(d)), 1024 * 1024)

    assert size == len(bson.encode(doc)) <= 1024 * 1024
    assert conversation.has_applied(message(99).event_id)  # unpublished events are never forgotten
    assert conversation.unpublished() == unpublished
    assert len(conversation.recent) >= 2
