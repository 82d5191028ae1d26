"""The conversation aggregate: sequence numbers, idempotence and its stored document."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from parley_events import (
    ConversationCreated,
    ConversationMessageAdded,
    Direction,
    Provider,
    Queue,
)
from parley_routing.domain.model import RECENT_LIMIT, Conversation, conversation_event_id

from tests.unit.factories import CUSTOMER_ID, T0, message

pytestmark = pytest.mark.unit


def opened(first_n: int = 1) -> Conversation:
    return Conversation.open(message(first_n))


def test_opening_a_conversation_puts_it_in_new_with_no_events_yet() -> None:
    first = message(1)
    conversation = Conversation.open(first)

    assert conversation.id == first.conversation_id
    assert conversation.queue is Queue.NEW
    assert conversation.sequence == 0
    assert conversation.version == 0
    assert conversation.owner_id is None
    assert conversation.recent == {}
    assert conversation.created_at == first.provider_timestamp


def test_a_first_message_creates_the_conversation_then_adds_the_message() -> None:
    first = message(1)
    conversation = Conversation.open(first)

    created, added = conversation.receive(first)

    assert isinstance(created, ConversationCreated)
    assert created.sequence == 1
    assert created.queue is Queue.NEW
    assert created.provider is Provider.MESSENGER
    assert created.conversation_key == f"dm:{CUSTOMER_ID}"
    assert isinstance(added, ConversationMessageAdded)
    assert added.sequence == 2
    assert added.message_event_id == first.event_id
    assert added.content == first.content
    assert added.author == first.author
    assert added.direction is Direction.INBOUND
    assert added.provider_message_id == first.provider_message_id
    assert conversation.sequence == 2


def test_events_carry_the_conversation_tenant_and_channel() -> None:
    first = message(1)
    for event in Conversation.open(first).receive(first):
        assert (event.conversation_id, event.tenant_id, event.channel_id) == (
            first.conversation_id,
            first.tenant_id,
            first.channel_id,
        )
        assert event.occurred_at == first.provider_timestamp
        assert event.key() == first.conversation_id


def test_event_ids_are_derived_from_conversation_and_sequence() -> None:
    conversation = opened()
    events = conversation.receive(message(1))
    assert [e.event_id for e in events] == [
        conversation_event_id(conversation.id, 1),
        conversation_event_id(conversation.id, 2),
    ]
    assert conversation_event_id("conv_a", 1) != conversation_event_id("conv_b", 1)
    assert conversation_event_id("conv_a", 1) != conversation_event_id("conv_a", 2)


def test_a_second_message_only_adds_a_message_with_sequence_three() -> None:
    conversation = opened()
    conversation.receive(message(1))

    events = conversation.receive(message(2))

    assert len(events) == 1
    [added] = events
    assert isinstance(added, ConversationMessageAdded)
    assert added.sequence == 3
    assert added.message_event_id == message(2).event_id


def test_an_outbound_echo_is_added_like_any_message() -> None:
    conversation = opened()
    conversation.receive(message(1))

    [added] = conversation.receive(message(2, direction=Direction.OUTBOUND))

    assert isinstance(added, ConversationMessageAdded)
    assert added.direction is Direction.OUTBOUND
    assert added.sequence == 3


def test_a_repeated_message_changes_nothing() -> None:
    conversation = opened()
    conversation.receive(message(1))
    conversation.receive(message(2))
    before = copy.deepcopy(conversation.to_document())

    conversation.receive(message(2))
    conversation.receive(message(1))

    assert conversation.to_document() == before
    assert conversation.sequence == 3


def test_a_repeated_message_returns_the_events_it_caused_the_first_time() -> None:
    conversation = opened()
    first_time = conversation.receive(message(1))
    conversation.receive(message(2))

    again = conversation.receive(message(1))

    assert again == first_time
    assert [type(e) for e in again] == [ConversationCreated, ConversationMessageAdded]
    assert [e.event_id for e in again] == [e.event_id for e in first_time]


def test_a_repeated_message_is_recognised_by_event_id_even_with_different_content() -> None:
    conversation = opened()
    first_time = conversation.receive(message(1, text="original"))

    again = conversation.receive(message(1, text="edited"))

    assert again == first_time
    assert conversation.sequence == 2


def test_sequence_numbers_have_no_gaps_over_many_messages() -> None:
    conversation = opened()
    sequences: list[int] = []
    for n in range(1, 121):
        sequences += [e.sequence for e in conversation.receive(message(n))]
        if n % 7 == 0:  # redeliveries sprinkled in must not consume numbers
            conversation.receive(message(n - 3))

    assert sequences == list(range(1, 122))
    assert conversation.sequence == 121


def test_last_activity_is_the_latest_message_time_even_out_of_order() -> None:
    conversation = Conversation.open(message(1, at=T0))
    conversation.receive(message(1, at=T0))
    conversation.receive(message(2, at=T0 + timedelta(minutes=5)))
    conversation.receive(message(3, at=T0 + timedelta(minutes=1)))

    assert conversation.last_activity_at == T0 + timedelta(minutes=5)
    assert conversation.created_at == T0


def test_recent_is_bounded_and_drops_the_oldest_published_messages() -> None:
    conversation = opened()
    total = RECENT_LIMIT + 5
    for n in range(1, total + 1):
        conversation.receive(message(n))
        conversation.published_sequence = conversation.sequence

    assert len(conversation.recent) == RECENT_LIMIT
    assert list(conversation.recent) == [message(n).event_id for n in range(6, total + 1)]
    assert not any(conversation.has_applied(message(n).event_id) for n in range(1, 6))
    assert conversation.has_applied(message(total).event_id)


def test_recent_keeps_causes_whose_events_are_not_published_yet() -> None:
    conversation = opened()
    for n in range(1, RECENT_LIMIT + 6):
        conversation.receive(message(n))
    # nothing was published: forgetting any cause could lose its events
    assert len(conversation.recent) == RECENT_LIMIT + 5
    assert [e.sequence for e in conversation.unpublished()] == list(range(1, conversation.sequence + 1))


def test_recent_remembers_the_events_of_each_message() -> None:
    conversation = opened()
    events = conversation.receive(message(1))

    assert conversation.events_of(message(1).event_id) == events
    assert conversation.events_of("msg_never_seen") == []


def test_the_stored_document_round_trips_everything() -> None:
    conversation = opened()
    for n in range(1, 8):
        conversation.receive(message(n))
    conversation.version = 4
    conversation.owner_id = "agent_7"
    conversation.queue = Queue.PENDING

    restored = Conversation.from_document(conversation.to_document())

    assert restored == conversation
    assert list(restored.recent) == list(conversation.recent)
    assert restored.queue is Queue.PENDING
    assert restored.provider is Provider.MESSENGER


def test_the_stored_document_keeps_recent_as_an_ordered_list() -> None:
    conversation = opened()
    for n in (3, 1, 2):
        conversation.receive(message(n))

    doc = conversation.to_document()

    assert doc["_id"] == conversation.id
    assert [r["cause"] for r in doc["recent"]] == [message(n).event_id for n in (3, 1, 2)]
    assert list(Conversation.from_document(doc).recent) == [message(n).event_id for n in (3, 1, 2)]


def test_a_restored_conversation_continues_the_sequence_and_recognises_old_messages() -> None:
    conversation = opened()
    first_time = conversation.receive(message(1))
    conversation.receive(message(2))

    restored = Conversation.from_document(copy.deepcopy(conversation.to_document()))

    assert restored.receive(message(1)) == first_time
    [added] = restored.receive(message(3))
    assert added.sequence == 4


def test_a_document_without_owner_or_recent_loads_as_empty() -> None:
    doc = opened().to_document()
    del doc["owner_id"]
    del doc["recent"]

    restored = Conversation.from_document(doc)

    assert restored.owner_id is None
    assert restored.recent == {}
