"""Routing's store contract: what ``ConversationRepository`` promises, on every store.

Each test runs on the MongoDB adapter (version claims) and the PostgreSQL adapter (version-checked
updates) alike, through the port's methods only: whichever way an adapter gets there, the same
writes must win and lose, and the same reads must come back.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from parley_events import ConversationEvent, ConversationMessageAdded, MessageReceived, Queue
from parley_routing.adapters.stores import MAX_DOCUMENT_BYTES, ConcurrentUpdate, DocumentTooLarge, Fenced
from parley_routing.domain.model import Conversation
from parley_routing.service import ConversationService

from tests.unit.factories import T0, message

pytestmark = pytest.mark.store


def msg(
    n: int,
    conversation_id: str = "conv_1",
    *,
    channel_id: str = "chn_1",
    tenant_id: str = "ten_acme",
    at: datetime | None = None,
) -> MessageReceived:
    return message(n, conversation_id=conversation_id, at=at).model_copy(
        update={"channel_id": channel_id, "tenant_id": tenant_id}
    )


async def saved(repository: Any, first: MessageReceived, *more: MessageReceived) -> Conversation:
    """A new conversation with these messages, saved (version 1)."""
    conversation = Conversation.open(first)
    for m in (first, *more):
        conversation.receive(m)
    await repository.save(conversation)
    return conversation


async def test_a_saved_conversation_reads_back_the_same(conversations: Any) -> None:
    conversation = Conversation.open(msg(1))
    conversation.receive(msg(1))
    conversation.receive(msg(2))
    conversation.assign("agent-1", "agent-1", "cmd:assign", T0 + timedelta(minutes=1))
    conversation.move(Queue.RESOLVED, "agent-1", "cmd:resolve", T0 + timedelta(minutes=2))
    await conversations.save(conversation)
    assert conversation.version == 1

    stored = await conversations.get("conv_1")
    assert stored is not None
    assert stored.to_document() == conversation.to_document()
    many = await conversations.get_many(["conv_1", "conv_missing"])
    assert list(many) == ["conv_1"]
    assert many["conv_1"].to_document() == conversation.to_document()
    assert await conversations.get("conv_missing") is None
    assert await conversations.get_many([]) == {}


async def test_of_writers_saving_the_same_version_exactly_one_wins(conversations: Any) -> None:
    await saved(conversations, msg(1))
    copies = [await conversations.get("conv_1") for _ in range(6)]
    for n, copy in enumerate(copies):
        assert copy is not None
        copy.receive(msg(10 + n))

    outcomes = await asyncio.gather(*(conversations.save(c) for c in copies), return_exceptions=True)

    winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ConcurrentUpdate) for o in outcomes if o is not None), outcomes
    stored = await conversations.get("conv_1")
    assert stored is not None and stored.version == 2
    assert set(stored.recent) == {msg(1).event_id, msg(10 + winners[0]).event_id}
    assert [c.version for c in copies if c is not None] == [2 if n in winners else 1 for n in range(6)]


async def test_of_writers_opening_the_same_conversation_exactly_one_wins(conversations: Any) -> None:
    openings = []
    for n in range(6):
        conversation = Conversation.open(msg(n))
        conversation.receive(msg(n))
        openings.append(conversation)

    outcomes = await asyncio.gather(*(conversations.save(c) for c in openings), return_exceptions=True)

    winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ConcurrentUpdate) for o in outcomes if o is not None), outcomes
    stored = await conversations.get("conv_1")
    assert stored is not None
    assert (stored.version, list(stored.recent)) == (1, [msg(winners[0]).event_id])


async def test_racing_read_modify_write_loops_lose_no_update(conversations: Any) -> None:
    writers, each = 4, 5

    async def writer(w: int) -> None:
        for k in range(each):
            m = msg(100 * w + k)
            for _ in range(500):
                conversation = await conversations.get("conv_1") or Conversation.open(m)
                conversation.receive(m)
                try:
                    await conversations.save(conversation)
                    break
                except ConcurrentUpdate:
                    await asyncio.sleep(0)
            else:
                pytest.fail(f"writer {w} never saved message {k}")

    await asyncio.gather(*(writer(w) for w in range(writers)))

    stored = await conversations.get("conv_1")
    assert stored is not None
    assert set(stored.recent) == {msg(100 * w + k).event_id for w in range(writers) for k in range(each)}
    # one version per successful save, and every event numbered once: created + 20 messages
    assert (stored.version, stored.sequence) == (writers * each, writers * each + 1)
    sequences = [e.sequence for cause in stored.recent for e in stored.events_of(cause)]
    assert sorted(sequences) == list(range(1, writers * each + 2))


async def test_a_batch_saves_what_nobody_changed_and_reports_the_rest(conversations: Any) -> None:
    for name in ("a", "b", "c"):
        await saved(conversations, msg(1, f"conv_{name}"))
    await saved(conversations, msg(1, "conv_e"))  # someone opened e first
    stale = await conversations.get_many(["conv_a", "conv_b", "conv_c"])
    meanwhile = await conversations.get("conv_b")
    assert meanwhile is not None
    meanwhile.receive(msg(2, "conv_b"))
    await conversations.save(meanwhile)
    for conversation in stale.values():
        conversation.receive(msg(3, conversation.id))
    opened_too = Conversation.open(msg(4, "conv_e"))
    opened_too.receive(msg(4, "conv_e"))

    lost = await conversations.save_many([*stale.values(), opened_too])

    assert lost == {"conv_b", "conv_e"}
    assert {i: c.version for i, c in stale.items()} == {"conv_a": 2, "conv_b": 1, "conv_c": 2}
    assert opened_too.version == 0
    stored = await conversations.get_many(["conv_a", "conv_b", "conv_c", "conv_e"])
    assert msg(3, "conv_a").event_id in stored["conv_a"].recent
    assert set(stored["conv_b"].recent) == {msg(1, "conv_b").event_id, msg(2, "conv_b").event_id}
    assert list(stored["conv_e"].recent) == [msg(1, "conv_e").event_id]
    assert await conversations.save_many([]) == set()


async def test_racing_batches_that_share_conversations_each_win_every_one_once(conversations: Any) -> None:
    ids = [f"conv_{n}" for n in range(6)]
    for i in ids:
        await saved(conversations, msg(0, i))
    for rnd in range(5):
        left = await conversations.get_many(ids[:4])
        right = await conversations.get_many(ids[2:])
        for conversation in [*left.values(), *right.values()]:
            conversation.receive(msg(10 * rnd + 1, conversation.id))
        # the shared ones in opposite orders: a store that locks as it goes must not deadlock
        lost_left, lost_right = await asyncio.gather(
            conversations.save_many(list(left.values())),
            conversations.save_many(list(reversed(right.values()))),
        )
        assert not lost_left & lost_right
        assert lost_left | lost_right == {"conv_2", "conv_3"}
        stored = await conversations.get_many(ids)
        assert all(c.version == rnd + 2 for c in stored.values()), {i: c.version for i, c in stored.items()}


async def test_a_late_published_mark_never_closes_the_outbox_over_a_newer_change(conversations: Any) -> None:
    conversation = await saved(conversations, msg(1))
    first = (conversation.id, conversation.sequence, conversation.version)
    conversation.receive(msg(2))
    await conversations.save(conversation)
    assert [c.id for c in await conversations.pending_outbox()] == ["conv_1"]

    await conversations.mark_published_many([first])  # the first change's mark, after the second saved

    assert [c.id for c in await conversations.pending_outbox()] == ["conv_1"]
    stored = await conversations.get("conv_1")
    assert stored is not None
    assert [e.sequence for e in stored.unpublished()] == [conversation.sequence]

    await conversations.mark_published_many([(conversation.id, conversation.sequence, conversation.version)])
    assert await conversations.pending_outbox() == []

    await conversations.mark_published_many([first])  # an older mark arriving last lowers nothing
    stored = await conversations.get("conv_1")
    assert stored is not None
    assert (stored.published_sequence, stored.unpublished()) == (conversation.sequence, [])
    await conversations.mark_published_many([])


async def test_provider_message_ids_are_remembered_for_their_retention_then_pruned(
    conversations: Any,
) -> None:
    retention = conversations.seen_retention
    first = await saved(conversations, msg(1), msg(2))
    events = first.unpublished()
    await conversations.record_projections(events, T0)
    await conversations.record_projections(events, T0 + timedelta(days=1))  # again: the first expiry stays

    assert await conversations.seen_before("conv_1", ["m_1", "m_2", "m_3", "m_1"]) == {"m_1", "m_2"}
    assert await conversations.seen_before("conv_other", ["m_1"]) == set()
    assert await conversations.seen_before("conv_1", []) == set()
    # several conversations at once: an entry for each one asked about, found or not
    assert await conversations.seen_before_many(
        {"conv_1": ["m_2", "m_3", "m_2"], "conv_other": ["m_1"], "conv_none": []}
    ) == {"conv_1": {"m_2"}, "conv_other": set(), "conv_none": set()}
    assert await conversations.seen_before_many({}) == {}

    assert await conversations.prune_seen(T0 + retention - timedelta(seconds=1)) == 0
    assert await conversations.seen_before("conv_1", ["m_1"]) == {"m_1"}
    assert await conversations.prune_seen(T0 + retention + timedelta(seconds=1)) == 2
    assert await conversations.seen_before("conv_1", ["m_1", "m_2"]) == set()


async def test_notes_and_history_are_kept_once_in_order(conversations: Any) -> None:
    conversation = await saved(conversations, msg(1))
    conversation.add_note("second", "agent-1", "cmd:n2", T0 + timedelta(minutes=2))
    conversation.add_note("first", "agent-2", "cmd:n1", T0 + timedelta(minutes=1))
    conversation.receive(msg(3))
    await conversations.save(conversation)
    events = conversation.unpublished()

    for _ in range(2):  # a relay after a crash writes them again
        await conversations.record_projections(events, T0)
        await conversations.record_history(list(reversed(events)))

    notes = await conversations.notes_of(conversation)
    assert [(n.text, n.author_id) for n in notes] == [("first", "agent-2"), ("second", "agent-1")]
    history = await conversations.history_of("conv_1")
    assert [h["sequence"] for h in history] == [e.sequence for e in events]
    assert [h["type"] for h in history] == [e.event_type for e in events]
    assert history[-1]["content"]["text"] == "message 3"
    assert [h["sequence"] for h in await conversations.history_of("conv_1", limit=2)] == [1, 2]
    assert await conversations.history_of("conv_other") == []
    await conversations.record_history([])


async def test_idle_lists_a_channel_queues_oldest_first_up_to_a_time(conversations: Any) -> None:
    for n in range(5):
        await saved(conversations, msg(n, f"conv_{n}", at=T0 + timedelta(hours=n)))
    await saved(conversations, msg(9, "conv_elsewhere", channel_id="chn_2", at=T0))
    pending = await saved(conversations, msg(8, "conv_pending", at=T0))
    pending.move(Queue.PENDING, "agent-1", "cmd:p", T0)
    await conversations.save(pending)

    idle = await conversations.idle("chn_1", Queue.NEW, T0 + timedelta(hours=3))

    assert [c.id for c in idle] == ["conv_0", "conv_1", "conv_2", "conv_3"]
    assert [c.id for c in await conversations.idle("chn_1", Queue.NEW, T0 + timedelta(hours=3), limit=2)] == [
        "conv_0",
        "conv_1",
    ]
    assert [c.id for c in await conversations.idle("chn_1", Queue.PENDING, T0)] == ["conv_pending"]


async def test_the_inbox_lists_newest_activity_first_in_complete_keyset_pages(conversations: Any) -> None:
    channels = ["chn_a", "chn_b", "chn_c"]
    for n in range(24):
        # activity in pairs at the same minute, so ties are broken by id
        m = msg(n, f"conv_{n:02d}", channel_id=channels[n % 3], at=T0 + timedelta(minutes=n // 2))
        conversation = Conversation.open(m)
        conversation.receive(m)
        if n % 4 == 0:
            conversation.move(Queue.PENDING, "agent-1", f"cmd:p{n}", m.provider_timestamp)
        if n % 5 == 0:
            conversation.assign("agent-1", "agent-1", f"cmd:a{n}", m.provider_timestamp)
        await conversations.save(conversation)
    # another tenant's conversations, one on a channel id the caller names
    await saved(conversations, msg(50, "conv_other", channel_id="chn_a", tenant_id="ten_other", at=T0))
    stored = await conversations.get_many([f"conv_{n:02d}" for n in range(24)])

    async def every_page(**filters: Any) -> list[str]:
        listed: list[str] = []
        after = None
        for _ in range(30):
            page = await conversations.list_visible(
                "ten_acme", ["chn_a", "chn_b"], limit=3, after=after, **filters
            )
            assert len(page.items) <= 3
            listed += [c.id for c in page.items]
            if page.next_cursor is None:
                return listed
            after = page.next_cursor
        pytest.fail("pagination did not end")

    def expected(keep: Any) -> list[str]:
        visible = [c for c in stored.values() if c.channel_id in ("chn_a", "chn_b") and keep(c)]
        return [c.id for c in sorted(visible, key=lambda c: (c.last_activity_at, c.id), reverse=True)]

    assert await every_page() == expected(lambda c: True)
    assert await every_page(queue=Queue.PENDING) == expected(lambda c: c.queue is Queue.PENDING)
    assert await every_page(owner_id="agent-1") == expected(lambda c: c.owner_id == "agent-1")
    assert await every_page(queue=Queue.NEW, owner_id="agent-1") == expected(
        lambda c: c.queue is Queue.NEW and c.owner_id == "agent-1"
    )
    assert len(expected(lambda c: True)) == 16
    assert (await conversations.list_visible("ten_acme", [])).items == []
    other = await conversations.list_visible("ten_other", ["chn_a"])
    assert ([c.id for c in other.items], other.next_cursor) == (["conv_other"], None)


async def test_a_document_above_the_bound_is_refused_and_nothing_is_written(conversations: Any) -> None:
    await saved(conversations, msg(1))
    conversation = await conversations.get("conv_1")
    assert conversation is not None
    conversation.tags = ["x" * MAX_DOCUMENT_BYTES]  # past every domain cap: only the store's bound is left

    with pytest.raises(DocumentTooLarge):
        await conversations.save(conversation)
    with pytest.raises(DocumentTooLarge):
        await conversations.save_many([conversation])

    assert conversation.version == 1
    stored = await conversations.get("conv_1")
    assert stored is not None
    assert (stored.version, stored.tags) == (1, [])


async def test_long_messages_forget_published_causes_rather_than_stop_the_conversation(
    conversations: Any,
) -> None:
    conversation = await saved(conversations, msg(0))
    for n in range(1, 12):
        m = msg(n).model_copy(update={"content": msg(n).content.model_copy(update={"text": "y" * 150_000})})
        conversation.receive(m)
        await conversations.save(conversation)
        published = (conversation.id, conversation.sequence, conversation.version)
        await conversations.mark_published_many([published])
        conversation.published_sequence = conversation.sequence

    stored = await conversations.get("conv_1")
    assert stored is not None
    assert stored.version == 12
    added = [
        e
        for cause in stored.recent
        for e in stored.events_of(cause)
        if isinstance(e, ConversationMessageAdded)
    ]
    assert added and added[-1].content.text == "y" * 150_000
    assert len(stored.recent) < 12  # older causes, all published, were forgotten to fit


async def test_through_the_service_a_batch_is_applied_once_and_every_event_published_once(
    conversations: Any,
) -> None:
    published: list[str] = []
    failing = {"conv_b"}

    async def publish(event: ConversationEvent) -> None:
        if event.conversation_id in failing:
            raise ConnectionError("the broker did not answer")
        published.append(event.event_id)

    service = ConversationService(conversations, publish, lambda: T0)
    batch = [msg(1, "conv_a"), msg(2, "conv_a"), msg(1, "conv_b")]

    with pytest.raises(ConnectionError):
        await service.on_messages(batch)
    assert [c.id for c in await conversations.pending_outbox()] == ["conv_b"]
    failing.clear()
    await service.on_messages(batch)  # the redelivered batch changes nothing, publishes b's events
    assert await service.relay_outbox() == 0

    assert len(published) == len(set(published)) == 5  # a: created and two messages; b: created and one
    assert await conversations.pending_outbox() == []
    assert [h["type"] for h in await conversations.history_of("conv_b")] == [
        "parley.conversation.created.v1",
        "parley.conversation.message_added.v1",
    ]
    stored = await conversations.get_many(["conv_a", "conv_b"])
    assert {i: (c.version, c.sequence) for i, c in stored.items()} == {"conv_a": (1, 3), "conv_b": (1, 2)}


# --- partition ownership epochs: the fence against an owner that lost its partitions ---------------

INBOUND = "parley.messages.inbound.v1"


async def test_each_take_of_a_partition_gets_a_newer_epoch_than_any_before(conversations: Any) -> None:
    assert await conversations.take_epochs(INBOUND, [0, 1]) == {0: 1, 1: 1}
    assert await conversations.take_epochs(INBOUND, [1, 2]) == {1: 2, 2: 1}
    assert await conversations.take_epochs("other.topic", [1]) == {1: 1}  # per topic and partition
    assert await conversations.take_epochs(INBOUND, []) == {}

    # replicas assigned the same partition at once (a rebalance) each get an epoch of their own
    racing = await asyncio.gather(*(conversations.take_epochs(INBOUND, [1]) for _ in range(6)))

    assert sorted(r[1] for r in racing) == [3, 4, 5, 6, 7, 8]
    assert await conversations.take_epochs(INBOUND, [1]) == {1: 9}


async def test_a_write_carrying_the_newest_epochs_is_saved(conversations: Any) -> None:
    epochs = await conversations.take_epochs(INBOUND, [0, 1])
    conversation = Conversation.open(msg(1))
    conversation.receive(msg(1))

    lost = await conversations.commit([conversation], T0, {(INBOUND, p): e for p, e in epochs.items()})

    assert lost == set()
    stored = await conversations.get("conv_1")
    assert stored is not None and stored.version == 1


async def test_a_write_for_a_partition_a_newer_owner_took_is_refused_whole(conversations: Any) -> None:
    await saved(conversations, msg(1, "conv_a"))
    old = await conversations.take_epochs(INBOUND, [0, 1])
    held = {(INBOUND, p): e for p, e in old.items()}
    batch = list((await conversations.get_many(["conv_a"])).values())
    batch[0].receive(msg(2, "conv_a"))
    opened = Conversation.open(msg(1, "conv_b"))
    opened.receive(msg(1, "conv_b"))

    await conversations.take_epochs(INBOUND, [1])  # the new owner of partition 1

    with pytest.raises(Fenced) as refused:
        await conversations.commit([*batch, opened], T0, held)

    assert refused.value.partitions == [(INBOUND, 1)]
    # nothing written, not even for the partition still held; versions as they were
    assert (batch[0].version, opened.version) == (1, 0)
    stored = await conversations.get_many(["conv_a", "conv_b"])
    assert list(stored) == ["conv_a"] and stored["conv_a"].version == 1
    assert await conversations.seen_before("conv_a", [msg(2, "conv_a").provider_message_id]) == set()
    # the new owner, holding the newest epochs, writes the same change
    newest = {(INBOUND, 0): old[0], (INBOUND, 1): old[1] + 1}
    assert await conversations.commit([*batch, opened], T0, newest) == set()
    assert {c.version for c in (await conversations.get_many(["conv_a", "conv_b"])).values()} == {1, 2}
