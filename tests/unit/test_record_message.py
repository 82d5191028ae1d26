"""The routing service layer against an in-memory repository with optimistic concurrency."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from parley_events import ConversationCreated, ConversationEvent, ConversationMessageAdded, MessageReceived
from parley_routing.adapters.stores import ConcurrentUpdate
from parley_routing.domain.model import Conversation
from parley_routing.service import MAX_CONFLICT_RETRIES, record_message

from tests.unit.factories import message

pytestmark = pytest.mark.unit


class FakeConversationRepository:
    """Documents in a dict; ``save`` is conditional on the version read, like the Mongo adapter.

    ``before_save`` runs once per save before the version check, to let a test play a
    competing writer that gets in between this writer's read and its write.
    """

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.gets = 0
        self.save_attempts = 0
        self.saves = 0
        self.before_save: Callable[[Conversation], None] | None = None

    async def get(self, conversation_id: str) -> Conversation | None:
        self.gets += 1
        doc = self.documents.get(conversation_id)
        return None if doc is None else Conversation.from_document(copy.deepcopy(doc))

    async def save(self, conversation: Conversation) -> None:
        self.save_attempts += 1
        if self.before_save is not None:
            hook, self.before_save = self.before_save, None
            hook(conversation)
        self._store(conversation)
        self.saves += 1

    def _store(self, conversation: Conversation) -> None:
        expected = conversation.version
        stored = self.documents.get(conversation.id)
        if (stored is not None and expected == 0) or (
            expected > 0 and (stored is None or stored["version"] != expected)
        ):
            raise ConcurrentUpdate(conversation.id)
        conversation.version = expected + 1
        self.documents[conversation.id] = copy.deepcopy(conversation.to_document())

    def competing_writer(self, other: MessageReceived) -> Callable[[Conversation], None]:
        """A hook that records ``other`` directly in the store, as another consumer would."""

        def hook(_: Conversation) -> None:
            doc = self.documents.get(other.conversation_id)
            conversation = (
                Conversation.open(other) if doc is None else Conversation.from_document(copy.deepcopy(doc))
            )
            conversation.receive(other)
            self._store(conversation)

        return hook


class AlwaysConflictingRepository(FakeConversationRepository):
    async def save(self, conversation: Conversation) -> None:
        self.save_attempts += 1
        raise ConcurrentUpdate(conversation.id)


def sequences(events: list[ConversationEvent]) -> list[int]:
    return [e.sequence for e in events]


# --- the fake itself keeps the adapter's contract ----------------------------------------


async def test_the_fake_rejects_a_write_based_on_a_stale_version() -> None:
    repo = FakeConversationRepository()
    await record_message(message(1), repo)
    a = await repo.get("conv_1")
    b = await repo.get("conv_1")
    assert a is not None
    assert b is not None
    a.receive(message(2))
    await repo.save(a)
    b.receive(message(3))

    with pytest.raises(ConcurrentUpdate):
        await repo.save(b)
    assert b.version == 1


async def test_the_fake_rejects_a_second_insert_of_a_new_conversation() -> None:
    repo = FakeConversationRepository()
    await repo.save(Conversation.open(message(1)))
    with pytest.raises(ConcurrentUpdate):
        await repo.save(Conversation.open(message(1)))


# --- record_message ---------------------------------------------------------------------


async def test_a_first_message_opens_and_saves_the_conversation() -> None:
    repo = FakeConversationRepository()

    events = await record_message(message(1), repo)

    assert [type(e) for e in events] == [ConversationCreated, ConversationMessageAdded]
    assert sequences(events) == [1, 2]
    stored = await repo.get("conv_1")
    assert stored is not None
    assert stored.sequence == 2
    assert stored.version == 1
    assert stored.has_applied(message(1).event_id)


async def test_a_second_message_is_added_with_sequence_three_and_bumps_the_version() -> None:
    repo = FakeConversationRepository()
    await record_message(message(1), repo)

    events = await record_message(message(2), repo)

    assert [type(e) for e in events] == [ConversationMessageAdded]
    assert sequences(events) == [3]
    stored = await repo.get("conv_1")
    assert stored is not None
    assert (stored.sequence, stored.version) == (3, 2)


async def test_a_duplicate_returns_the_stored_events_without_saving() -> None:
    repo = FakeConversationRepository()
    first_time = await record_message(message(1), repo)
    await record_message(message(2), repo)
    saves_before = repo.saves
    doc_before = copy.deepcopy(repo.documents["conv_1"])

    again = await record_message(message(1), repo)

    assert again == first_time
    assert [e.event_id for e in again] == [e.event_id for e in first_time]
    assert repo.saves == saves_before
    assert repo.save_attempts == saves_before
    assert repo.documents["conv_1"] == doc_before


async def test_a_conflict_is_retried_and_sequences_stay_gap_free() -> None:
    repo = FakeConversationRepository()
    await record_message(message(1), repo)  # sequences 1, 2
    repo.before_save = repo.competing_writer(message(2))  # takes sequence 3 first

    events = await record_message(message(3), repo)

    assert sequences(events) == [4]
    assert repo.save_attempts == 3  # first record, the conflicting save, the retry
    stored = await repo.get("conv_1")
    assert stored is not None
    assert stored.sequence == 4
    assert stored.version == 3
    assert stored.has_applied(message(2).event_id)
    assert stored.has_applied(message(3).event_id)
    all_events = [e for m in (1, 2, 3) for e in stored.events_of(message(m).event_id)]
    assert sequences(all_events) == [1, 2, 3, 4]


async def test_two_writers_opening_the_same_conversation_create_it_once() -> None:
    repo = FakeConversationRepository()
    repo.before_save = repo.competing_writer(message(1))

    events = await record_message(message(2), repo)

    assert [type(e) for e in events] == [ConversationMessageAdded]
    assert sequences(events) == [3]
    stored = await repo.get("conv_1")
    assert stored is not None
    created = [e for e in stored.events_of(message(1).event_id) if isinstance(e, ConversationCreated)]
    assert len(created) == 1


async def test_a_conflict_with_the_same_message_returns_the_winners_events() -> None:
    repo = FakeConversationRepository()
    await record_message(message(1), repo)
    repo.before_save = repo.competing_writer(message(2))

    events = await record_message(message(2), repo)

    stored = await repo.get("conv_1")
    assert stored is not None
    assert events == stored.events_of(message(2).event_id)
    assert sequences(events) == [3]
    assert stored.sequence == 3


async def test_many_messages_get_gap_free_sequences_through_the_repository() -> None:
    repo = FakeConversationRepository()
    seen: list[int] = []
    for n in range(1, 31):
        if n % 5 == 0:
            repo.before_save = repo.competing_writer(message(1000 + n))
        seen += sequences(await record_message(message(n), repo))
        await record_message(message(n), repo)  # redelivery

    stored = await repo.get("conv_1")
    assert stored is not None
    competitor_sequences = [
        e.sequence for n in range(5, 31, 5) for e in stored.events_of(message(1000 + n).event_id)
    ]
    assert sorted(seen + competitor_sequences) == list(range(1, stored.sequence + 1))
    assert stored.sequence == 2 + 29 + 6


async def test_endless_conflicts_give_up_with_concurrent_update() -> None:
    repo = AlwaysConflictingRepository()

    with pytest.raises(ConcurrentUpdate):
        await record_message(message(1), repo)

    assert repo.save_attempts == MAX_CONFLICT_RETRIES
    assert repo.documents == {}
