"""ConversationService against an in-memory repository: publish, outbox relay, auto-resolve."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from parley_events import (
    ChannelSnapshot,
    ConversationCreated,
    ConversationEvent,
    ConversationMessageAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationStatusChanged,
    Direction,
    OwnerChangeReason,
    Queue,
    ReplySent,
    SenderType,
    StatusChangeReason,
)
from parley_routing.adapters.stores import ConcurrentUpdate
from parley_routing.domain.model import SEEN_MESSAGES_LIMIT, Conversation
from parley_routing.service import MAX_CONFLICT_RETRIES, ConversationNotFound, ConversationService

from tests.support.fakes.routing import FakeRepository
from tests.unit.factories import T0, channel, message

pytestmark = pytest.mark.unit

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
NOW = T0 + timedelta(days=1)


class Publisher:
    """Collects what is published; ``failures`` makes the next that many publishes raise."""

    def __init__(self) -> None:
        self.published: list[ConversationEvent] = []
        self.failures = 0

    async def __call__(self, event: ConversationEvent) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("broker unavailable")
        self.published.append(event)


def reply(
    n: int,
    *,
    conversation_id: str = "conv_1",
    agent_id: str | None = "agent_a",
    sender_type: SenderType = SenderType.HUMAN,
) -> ReplySent:
    return ReplySent(
        reply_id=f"rpl_{n}",
        conversation_id=conversation_id,
        tenant_id="ten_acme",
        channel_id="chn_1",
        sender_type=sender_type,
        agent_id=agent_id,
        provider_message_id=f"m_reply_{n}",
        text=f"reply {n}",
        sent_at=T0 + timedelta(minutes=n),
    )


def snapshot(**update: Any) -> ChannelSnapshot:
    return channel().model_copy(update=update)


def sequences(events: Sequence[ConversationEvent]) -> list[int]:
    return [e.sequence for e in events]


@pytest.fixture
def repo() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def service(repo: FakeRepository, publisher: Publisher) -> ConversationService:
    return ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]


# --- the fake keeps the adapter's contract ------------------------------------------------------


async def test_the_fake_rejects_a_stale_write_and_a_second_insert(repo: FakeRepository) -> None:
    await repo.save(Conversation.open(message(1)))
    with pytest.raises(ConcurrentUpdate):
        await repo.save(Conversation.open(message(1)))
    a, b = await repo.get("conv_1"), await repo.get("conv_1")
    assert a is not None
    assert b is not None
    a.receive(message(1))
    await repo.save(a)
    b.receive(message(2))
    with pytest.raises(ConcurrentUpdate):
        await repo.save(b)
    assert b.version == 1


async def test_the_fake_never_moves_published_sequence_backwards(
    repo: FakeRepository, service: ConversationService
) -> None:
    await service.on_message(message(1))
    await repo.mark_published("conv_1", 1)
    assert repo.stored("conv_1").published_sequence == 2


# --- apply ---------------------------------------------------------------------------------------


async def test_apply_opens_a_conversation_publishes_in_order_and_marks_published(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    first = message(1)

    conversation, events = await service.apply(first.conversation_id, lambda c: c.receive(first), first)

    assert [type(e) for e in events] == [ConversationCreated, ConversationMessageAdded]
    assert sequences(events) == [1, 2]
    assert publisher.published == events
    assert repo.history == events
    stored = repo.stored("conv_1")
    assert (stored.sequence, stored.version, stored.published_sequence) == (2, 1, 2)
    assert stored.unpublished() == []
    assert conversation.sequence == 2


async def test_apply_publishes_every_later_change_in_sequence_order(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))
    await service.apply("conv_1", lambda c: c.assign("agent_a", "sup", "cmd_1", T0))
    await service.apply("conv_1", lambda c: c.move(Queue.RESOLVED, "sup", "cmd_2", T0))
    await service.on_message(message(2))

    assert sequences(publisher.published) == [1, 2, 3, 4, 5, 6, 7]
    assert [type(e) for e in publisher.published[2:]] == [
        ConversationOwnerAssigned,
        ConversationStatusChanged,
        ConversationOwnerCleared,
        ConversationMessageAdded,
        ConversationStatusChanged,
    ]
    assert repo.history == publisher.published
    assert repo.stored("conv_1").published_sequence == 7


async def test_apply_to_an_unknown_conversation_without_an_opening_message_is_not_found(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    with pytest.raises(ConversationNotFound):
        await service.apply("conv_none", lambda c: c.move(Queue.PENDING, "sup", "cmd", T0))
    assert repo.documents == {}
    assert publisher.published == []


async def test_a_change_that_changes_nothing_publishes_nothing(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))
    published = list(publisher.published)

    _, events = await service.apply("conv_1", lambda c: c.unassign("sup", "cmd_1", T0))

    assert events == []
    assert publisher.published == published
    stored = repo.stored("conv_1")
    assert (stored.sequence, stored.published_sequence, stored.owner_id) == (2, 2, None)


async def test_a_replayed_command_that_changed_nothing_still_changes_nothing(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))
    await service.apply("conv_1", lambda c: c.move(Queue.PENDING, "agent_a", "cmd_a", T0))
    # a second agent asks for the same: a no-op
    _, first_time = await service.apply("conv_1", lambda c: c.move(Queue.PENDING, "agent_b", "cmd_b", T0))
    assert first_time == []
    await service.on_message(message(2))  # the customer writes: back to New
    published = list(publisher.published)

    # the second agent's client retries its command with the same idempotency key
    _, again = await service.apply("conv_1", lambda c: c.move(Queue.PENDING, "agent_b", "cmd_b", T0))

    assert again == first_time
    assert repo.stored("conv_1").queue is Queue.NEW
    assert publisher.published == published


async def test_apply_gives_up_after_too_many_conflicts(publisher: Publisher) -> None:
    class AlwaysConflicting(FakeRepository):
        async def save(self, conversation: Conversation) -> None:
            self.save_attempts += 1
            raise ConcurrentUpdate(conversation.id)

    repo = AlwaysConflicting()
    service = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]

    with pytest.raises(ConcurrentUpdate):
        await service.on_message(message(1))

    assert repo.save_attempts == MAX_CONFLICT_RETRIES
    assert publisher.published == []


async def test_a_conflict_on_the_first_save_is_retried_with_gap_free_sequences(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))  # 1, 2
    competitor = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]

    async def competing(_: Conversation) -> None:
        await competitor.on_message(message(2))  # takes 3

    repo.before_save = competing
    attempts = repo.save_attempts

    events = await service.on_message(message(3))

    assert sequences(events) == [4]
    assert repo.save_attempts == attempts + 3  # ours (conflict), the competitor's, our retry
    assert sequences(publisher.published) == [1, 2, 3, 4]
    assert [e.event_id for e in publisher.published] == [e.event_id for e in repo.history]
    stored = repo.stored("conv_1")
    assert (stored.sequence, stored.published_sequence) == (4, 4)
    assert stored.has_applied(message(2).event_id)
    assert stored.has_applied(message(3).event_id)


# --- batches ------------------------------------------------------------------------------------


def mixed_batch() -> list[Any]:
    """Messages of three conversations, interleaved, with a redelivered duplicate."""
    batch = []
    for n in range(1, 7):
        for conversation_id in ("conv_a", "conv_b", "conv_c"):
            batch.append(message(n, conversation_id=conversation_id))
    batch.insert(5, message(1, conversation_id="conv_b"))  # the same cause again
    return batch


def as_published(events: Sequence[ConversationEvent]) -> list[tuple[str, int, str]]:
    return [(e.conversation_id, e.sequence, e.event_type) for e in events]


async def test_a_batch_has_the_same_effect_as_its_messages_one_by_one(publisher: Publisher) -> None:
    one_by_one, batched = FakeRepository(), FakeRepository()
    sequential_publisher = Publisher()
    sequential = ConversationService(one_by_one, sequential_publisher, clock=lambda: NOW)  # type: ignore[arg-type]
    for m in mixed_batch():
        await sequential.on_message(m)

    service = ConversationService(batched, publisher, clock=lambda: NOW)  # type: ignore[arg-type]
    await service.on_messages(mixed_batch())

    def without_version(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {i: {k: v for k, v in d.items() if k != "version"} for i, d in docs.items()}

    assert without_version(batched.documents) == without_version(one_by_one.documents)
    assert sorted(as_published(publisher.published)) == sorted(as_published(sequential_publisher.published))
    for conversation_id in ("conv_a", "conv_b", "conv_c"):
        # per conversation: published in order, gap-free, and one message_added per message
        mine = [e for e in publisher.published if e.conversation_id == conversation_id]
        assert sequences(mine) == list(range(1, 8))
        assert sum(isinstance(e, ConversationMessageAdded) for e in mine) == 6
    # one save per conversation for the whole batch
    assert batched.saves == 3
    assert {d["version"] for d in batched.documents.values()} == {1}


async def test_a_redelivered_batch_changes_and_publishes_nothing(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_messages(mixed_batch())
    published, saves = len(publisher.published), repo.saves

    await service.on_messages(mixed_batch())

    assert len(publisher.published) == published
    assert repo.saves == saves


async def test_a_conflict_in_a_batch_retries_only_that_conversation(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_messages([message(1, conversation_id="conv_a"), message(1, conversation_id="conv_b")])
    competitor = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]

    async def competing(_: Conversation) -> None:
        await competitor.on_message(message(9, conversation_id="conv_a"))

    repo.before_save = competing  # gets in before the batch's first save (conv_a)
    saves = repo.saves

    await service.on_messages([message(2, conversation_id="conv_a"), message(2, conversation_id="conv_b")])

    # the competitor's save, conv_b once, conv_a again after reloading
    assert repo.saves == saves + 3
    a = [e for e in publisher.published if e.conversation_id == "conv_a"]
    assert sequences(a) == [1, 2, 3, 4]
    stored = repo.stored("conv_a")
    assert stored.has_applied(message(9, conversation_id="conv_a").event_id)
    assert stored.has_applied(message(2, conversation_id="conv_a").event_id)
    assert repo.stored("conv_b").sequence == 3


async def test_a_batch_whose_publish_fails_leaves_its_events_for_the_relay(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    publisher.failures = 1
    with pytest.raises(RuntimeError):
        await service.on_messages(
            [message(1, conversation_id="conv_a"), message(1, conversation_id="conv_b")]
        )
    assert all(
        d["outbox_pending"] or d["published_sequence"] == d["sequence"] for d in repo.documents.values()
    )

    await service.relay_outbox()

    for conversation_id in ("conv_a", "conv_b"):
        mine = [e for e in publisher.published if e.conversation_id == conversation_id]
        assert sequences(mine) == [1, 2]
        assert repo.stored(conversation_id).published_sequence == 2


async def test_a_batch_publishes_in_rounds_and_a_failed_event_stops_only_its_conversation(
    repo: FakeRepository, publisher: Publisher
) -> None:
    rounds: list[list[tuple[str, int]]] = []

    async def together(events: Sequence[ConversationEvent]) -> list[BaseException | None]:
        rounds.append([(e.conversation_id, e.sequence) for e in events])
        answers: list[BaseException | None] = []
        for event in events:
            if (event.conversation_id, event.sequence) == ("conv_b", 1) and len(rounds) == 1:
                answers.append(RuntimeError("not acknowledged"))
            else:
                await publisher(event)
                answers.append(None)
        return answers

    service = ConversationService(repo, publisher, clock=lambda: NOW, publish_together=together)  # type: ignore[arg-type]
    batch = [message(1, conversation_id=c) for c in ("conv_a", "conv_b", "conv_c")]

    with pytest.raises(RuntimeError, match="not acknowledged"):
        await service.on_messages(batch)

    # each round: the next event of every conversation still going; conv_b's second event is
    # never handed over once its first failed, so it cannot overtake it
    assert rounds == [
        [("conv_a", 1), ("conv_b", 1), ("conv_c", 1)],
        [("conv_a", 2), ("conv_c", 2)],
    ]
    assert repo.stored("conv_a").published_sequence == 2
    assert repo.stored("conv_c").published_sequence == 2
    assert repo.stored("conv_b").published_sequence == 0

    await service.relay_outbox()

    assert sequences([e for e in publisher.published if e.conversation_id == "conv_b"]) == [1, 2]
    assert repo.stored("conv_b").published_sequence == 2


async def test_a_batch_gives_up_after_too_many_conflicts(publisher: Publisher) -> None:
    class AlwaysConflicting(FakeRepository):
        async def save_many(self, conversations: Sequence[Conversation]) -> set[str]:
            return {c.id for c in conversations}

    service = ConversationService(AlwaysConflicting(), publisher, clock=lambda: NOW)  # type: ignore[arg-type]
    with pytest.raises(ConcurrentUpdate):
        await service.on_messages([message(1)])
    assert publisher.published == []


async def test_two_services_opening_the_same_conversation_create_it_once(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    competitor = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]

    async def competing(_: Conversation) -> None:
        await competitor.on_message(message(1))

    repo.before_save = competing

    events = await service.on_message(message(2))

    assert [type(e) for e in events] == [ConversationMessageAdded]
    assert sequences(publisher.published) == [1, 2, 3]
    assert sum(isinstance(e, ConversationCreated) for e in publisher.published) == 1


async def test_a_command_conflict_is_retried_against_the_fresh_state(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))
    competitor = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]

    async def competing(_: Conversation) -> None:
        await competitor.apply("conv_1", lambda c: c.assign("agent_b", "sup", "cmd_other", T0))

    repo.before_save = competing

    _, events = await service.apply("conv_1", lambda c: c.move(Queue.RESOLVED, "sup", "cmd_resolve", T0))

    # the retry sees the competitor's owner and clears it
    assert [type(e) for e in events] == [ConversationStatusChanged, ConversationOwnerCleared]
    cleared = events[1]
    assert isinstance(cleared, ConversationOwnerCleared)
    assert cleared.previous_owner_id == "agent_b"
    assert sequences(publisher.published) == [1, 2, 3, 4, 5]


# --- publish failures and the outbox --------------------------------------------------------------


async def test_a_failed_publish_leaves_the_events_unpublished_and_the_relay_publishes_exactly_those(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))  # 1, 2 published
    await service.apply("conv_1", lambda c: c.move(Queue.PENDING, "sup", "cmd_pending", T0))  # 3
    publisher.failures = 1

    with pytest.raises(RuntimeError):
        await service.on_message(message(2))  # 4 (message), 5 (reopened)

    stored = repo.stored("conv_1")
    assert (stored.sequence, stored.published_sequence) == (5, 3)
    unpublished = stored.unpublished()
    assert sequences(unpublished) == [4, 5]
    assert [type(e) for e in unpublished] == [ConversationMessageAdded, ConversationStatusChanged]
    assert sequences(repo.history) == [1, 2, 3]
    before = len(publisher.published)

    relayed = await service.relay_outbox()

    assert relayed == 2
    assert publisher.published[before:] == unpublished
    assert sequences(publisher.published) == [1, 2, 3, 4, 5]
    assert sequences(repo.history) == [1, 2, 3, 4, 5]
    assert repo.stored("conv_1").published_sequence == 5
    assert await repo.pending_outbox() == []
    assert await service.relay_outbox() == 0
    assert len(publisher.published) == 5


async def test_events_whose_publish_failed_are_not_lost_when_a_later_change_is_published(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))  # 1, 2
    publisher.failures = 1
    with pytest.raises(RuntimeError):  # an agent's command: 3 is stored, its publish fails
        await service.apply("conv_1", lambda c: c.move(Queue.PENDING, "sup", "cmd_pending", T0))
    await service.on_message(message(2))  # 4 (message), 5 (reopened): published fine

    await service.relay_outbox()

    assert sorted(sequences(publisher.published)) == [1, 2, 3, 4, 5]
    assert sorted(sequences(repo.history)) == [1, 2, 3, 4, 5]


async def test_the_relay_publishes_events_stored_by_a_writer_that_crashed_before_publishing(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))
    events = await service.on_message(message(2))
    assert sequences(events) == [3]

    # a crash between save and publish: the next two events are stored but never published
    stored = repo.stored("conv_1")
    stored.receive(message(3))
    stored.receive(message(4))
    await repo.save(stored)

    assert await service.relay_outbox() == 2
    assert sequences(publisher.published) == [1, 2, 3, 4, 5]
    assert repo.stored("conv_1").published_sequence == 5


async def test_the_relay_handles_several_conversations(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    publisher.failures = 10
    for conversation_id in ("conv_a", "conv_b"):
        with pytest.raises(RuntimeError):
            await service.on_message(message(1, conversation_id=conversation_id))
    publisher.failures = 0

    assert await service.relay_outbox() == 4
    by_conversation = {
        cid: sequences([e for e in publisher.published if e.conversation_id == cid])
        for cid in ("conv_a", "conv_b")
    }
    assert by_conversation == {"conv_a": [1, 2], "conv_b": [1, 2]}


async def test_a_redelivered_cause_whose_publish_failed_publishes_the_recorded_events(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    publisher.failures = 1
    with pytest.raises(RuntimeError):
        await service.on_message(message(1))
    saves = repo.saves

    events = await service.on_message(message(1))

    assert sequences(events) == [1, 2]
    assert publisher.published == events
    assert repo.saves == saves  # nothing new to store
    assert repo.stored("conv_1").published_sequence == 2


async def test_a_duplicate_cause_publishes_nothing_new_when_already_published(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    first_time = await service.on_message(message(1))
    _, moved = await service.apply("conv_1", lambda c: c.move(Queue.PENDING, "sup", "cmd_1", T0))
    published, saves = list(publisher.published), repo.saves

    again = await service.on_message(message(1))
    _, moved_again = await service.apply("conv_1", lambda c: c.move(Queue.PENDING, "sup", "cmd_1", T0))

    assert again == first_time
    assert moved_again == moved
    assert publisher.published == published
    assert repo.saves == saves
    assert sequences(repo.history) == [1, 2, 3]


# --- replies -------------------------------------------------------------------------------------


async def test_on_reply_sent_for_an_unknown_conversation_returns_nothing(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    assert await service.on_reply_sent(reply(1, conversation_id="conv_unknown"), snapshot()) == []
    assert await service.on_reply_sent(reply(2, conversation_id="conv_unknown"), None) == []
    assert repo.documents == {}
    assert publisher.published == []


@pytest.mark.parametrize(
    ("channel_snapshot", "owner"),
    [
        pytest.param(snapshot(auto_ownership=True), "agent_a", id="on"),
        pytest.param(snapshot(auto_ownership=False), None, id="off"),
        pytest.param(None, None, id="unknown-channel"),
    ],
)
async def test_on_reply_sent_applies_the_channel_auto_ownership(
    repo: FakeRepository,
    publisher: Publisher,
    service: ConversationService,
    channel_snapshot: ChannelSnapshot | None,
    owner: str | None,
) -> None:
    await service.on_message(message(1))

    events = await service.on_reply_sent(reply(1), channel_snapshot)

    assert isinstance(events[0], ConversationMessageAdded)
    assert events[0].direction is Direction.OUTBOUND
    assigned = [e for e in events if isinstance(e, ConversationOwnerAssigned)]
    if owner is None:
        assert assigned == []
    else:
        assert [(e.owner_id, e.reason) for e in assigned] == [(owner, OwnerChangeReason.AUTO_OWNERSHIP)]
    assert repo.stored("conv_1").owner_id == owner
    assert publisher.published[2:] == events


# --- auto-resolve -----------------------------------------------------------------------------------


async def seed_idle_conversations(service: ConversationService) -> None:
    """conv_1 idle in New, conv_2 idle in Pending and owned, conv_3 recently active in New."""
    await service.on_message(message(1, conversation_id="conv_1", at=NOW - 3 * HOUR))
    await service.on_message(message(1, conversation_id="conv_2", at=NOW - 3 * HOUR))
    await service.apply("conv_2", lambda c: c.move(Queue.PENDING, "sup", "cmd_pending", NOW - 3 * HOUR))
    await service.apply("conv_2", lambda c: c.assign("agent_a", "sup", "cmd_assign", NOW - 3 * HOUR))
    await service.on_message(message(1, conversation_id="conv_3", at=NOW - HOUR / 2))


def auto_resolutions(events: Sequence[ConversationEvent]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        if isinstance(e, ConversationStatusChanged) and e.reason is StatusChangeReason.AUTO_RESOLVE:
            counts[e.conversation_id] = counts.get(e.conversation_id, 0) + 1
    return counts


async def test_auto_resolve_resolves_idle_new_and_pending_conversations(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await seed_idle_conversations(service)
    before = len(publisher.published)

    resolved = await service.auto_resolve([snapshot(auto_resolve_new_s=3600, auto_resolve_pending_s=3600)])

    assert resolved == 2
    fresh = publisher.published[before:]
    assert auto_resolutions(fresh) == {"conv_1": 1, "conv_2": 1}
    cleared = [e for e in fresh if isinstance(e, ConversationOwnerCleared)]
    assert [(e.conversation_id, e.previous_owner_id, e.reason) for e in cleared] == [
        ("conv_2", "agent_a", OwnerChangeReason.RESOLVED)
    ]
    for cid in ("conv_1", "conv_2"):
        stored = repo.stored(cid)
        assert (stored.queue, stored.owner_id) == (Queue.RESOLVED, None)
        assert stored.published_sequence == stored.sequence
    assert repo.stored("conv_3").queue is Queue.NEW
    assert await service.auto_resolve([snapshot(auto_resolve_new_s=3600, auto_resolve_pending_s=3600)]) == 0


@pytest.mark.parametrize(
    ("new_s", "pending_s", "resolved"),
    [
        pytest.param(None, None, set(), id="both-off"),
        pytest.param(3600, None, {"conv_1"}, id="new-only"),
        pytest.param(None, 3600, {"conv_2"}, id="pending-only"),
        pytest.param(3 * 3600, 3 * 3600, {"conv_1", "conv_2"}, id="exactly-at-threshold"),
        pytest.param(3 * 3600 + 1, 3 * 3600 + 1, set(), id="one-second-short"),
        pytest.param(60, 60, {"conv_1", "conv_2", "conv_3"}, id="short-threshold"),
    ],
)
async def test_auto_resolve_follows_the_channel_thresholds(
    repo: FakeRepository,
    publisher: Publisher,
    service: ConversationService,
    new_s: int | None,
    pending_s: int | None,
    resolved: set[str],
) -> None:
    await seed_idle_conversations(service)
    before = len(publisher.published)

    count = await service.auto_resolve([snapshot(auto_resolve_new_s=new_s, auto_resolve_pending_s=pending_s)])

    assert count == len(resolved)
    assert set(auto_resolutions(publisher.published[before:])) == resolved
    assert {cid for cid in repo.documents if repo.stored(cid).queue is Queue.RESOLVED} == resolved


async def test_auto_resolve_ignores_other_channels(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await seed_idle_conversations(service)
    assert await service.auto_resolve([snapshot(channel_id="chn_other", auto_resolve_new_s=60)]) == 0
    assert all(repo.stored(cid).queue is not Queue.RESOLVED for cid in repo.documents)


async def test_two_replicas_auto_resolving_at_once_resolve_each_conversation_once(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await seed_idle_conversations(service)
    replica = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]
    channels = [snapshot(auto_resolve_new_s=3600, auto_resolve_pending_s=3600)]
    before = len(publisher.published)
    repo.idle_reads.clear()

    counts = await asyncio.gather(service.auto_resolve(channels), replica.auto_resolve(channels))

    # both replicas read each conversation at the same version: the race really happened
    assert sorted(repo.idle_reads) == sorted([("conv_1", 1), ("conv_1", 1), ("conv_2", 3), ("conv_2", 3)])
    assert sum(counts) == 2
    fresh = publisher.published[before:]
    assert auto_resolutions(fresh) == {"conv_1": 1, "conv_2": 1}
    assert sum(isinstance(e, ConversationOwnerCleared) for e in fresh) == 1
    for cid in ("conv_1", "conv_2"):
        mine = [e for e in fresh if e.conversation_id == cid]
        stored = repo.stored(cid)
        assert sequences(mine) == list(range(stored.sequence - len(mine) + 1, stored.sequence + 1))
        assert stored.published_sequence == stored.sequence


async def test_a_replica_running_after_another_finds_nothing_to_resolve(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await seed_idle_conversations(service)
    replica = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]
    channels = [snapshot(auto_resolve_new_s=3600, auto_resolve_pending_s=3600)]
    before = len(publisher.published)

    assert await service.auto_resolve(channels) == 2
    assert await replica.auto_resolve(channels) == 0
    assert auto_resolutions(publisher.published[before:]) == {"conv_1": 1, "conv_2": 1}


async def test_a_conversation_changed_between_the_read_and_the_write_is_left_alone(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1, at=NOW - 3 * HOUR))
    other = ConversationService(repo, publisher, clock=lambda: NOW)  # type: ignore[arg-type]

    async def customer_writes_again(_: Conversation) -> None:
        await other.on_message(message(2, at=NOW))

    repo.before_save = customer_writes_again

    assert await service.auto_resolve([snapshot(auto_resolve_new_s=3600)]) == 0
    assert repo.stored("conv_1").queue is Queue.NEW
    assert auto_resolutions(publisher.published) == {}


# --- late redeliveries (security #13) --------------------------------------------------------------


def replayed(n: int) -> Any:
    """Message n delivered again after ingest's dedupe window: a new event id, same provider id."""
    return message(n).model_copy(update={"event_id": f"msg_conv_1_{n}_again"})


@pytest.mark.parametrize("path", ["batch", "one-by-one"])
async def test_a_redelivery_the_conversation_forgot_is_a_duplicate_and_does_not_reopen(
    repo: FakeRepository, publisher: Publisher, service: ConversationService, path: str
) -> None:
    # more messages than the conversation remembers provider ids of
    await service.on_messages([message(n) for n in range(1, SEEN_MESSAGES_LIMIT + 11)])
    assert "m_1" not in repo.stored("conv_1").seen_messages
    assert repo.seen_lookups == []  # messages in order cost no lookup
    await service.apply("conv_1", lambda c: c.move(Queue.RESOLVED, "agent_a", "cmd_resolve", NOW))
    publisher.published.clear()

    if path == "batch":
        await service.on_messages([replayed(1)])
    else:
        await service.on_message(replayed(1))

    assert repo.seen_lookups == ["m_1"]
    assert publisher.published == []
    assert repo.stored("conv_1").queue is Queue.RESOLVED


async def test_a_batch_of_late_redeliveries_for_many_conversations_asks_the_store_once(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    conversations = [f"conv_{k}" for k in range(5)]
    for conversation_id in conversations:
        await service.on_messages(
            [message(n, conversation_id=conversation_id) for n in range(1, SEEN_MESSAGES_LIMIT + 11)]
        )
    publisher.published.clear()

    # each conversation gets its forgotten first message again, and one it never had, dated
    # before its last activity (both can only be told apart by the store)
    again = [
        item
        for conversation_id in conversations
        for item in (
            message(1, conversation_id=conversation_id).model_copy(
                update={"event_id": f"{conversation_id}_again"}
            ),
            message(0, conversation_id=conversation_id),
        )
    ]
    await service.on_messages(again)

    assert repo.seen_many_calls == 1
    assert sorted(repo.seen_lookups) == sorted(["m_1", "m_0"] * 5)
    # the redeliveries changed nothing; the messages never received joined their conversations
    added = [e for e in publisher.published if e.event_type == "parley.conversation.message_added.v1"]
    assert sorted((e.conversation_id, e.provider_message_id) for e in added) == [
        (c, "m_0") for c in conversations
    ]


async def test_seen_provider_message_ids_are_forgotten_after_the_retention(
    repo: FakeRepository, service: ConversationService
) -> None:
    await service.on_messages([message(1), message(2)])
    assert len(repo.seen) == 2

    assert await ConversationService(repo, service.publish, lambda: NOW).prune_seen_messages() == 0
    later = ConversationService(repo, service.publish, lambda: NOW + 9 * DAY)
    assert await later.prune_seen_messages() == 2
    assert repo.seen == {}


async def test_a_note_is_written_to_the_notes_store_before_it_is_published(
    repo: FakeRepository, publisher: Publisher, service: ConversationService
) -> None:
    await service.on_message(message(1))
    publisher.failures = 1

    with pytest.raises(RuntimeError):
        await service.apply("conv_1", lambda c: c.add_note("call back", "agent_a", "cmd_note", NOW))

    [note] = repo.notes.values()
    assert note.text == "call back"
    assert repo.stored("conv_1").note_count == 1
