"""The reports read model's store contract (``ReportStore``), on every store: documents come back
as saved, each version is won by exactly one writer, and the queries reports needs."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from parley_reports.adapters.stores import ConcurrentUpdate, ReportStore
from parley_reports.bootstrap import report_store
from parley_reports.domain.buckets import Bucket, hour_of
from parley_reports.domain.timing import ConversationTiming, new_state
from parley_shared.store import Store

from tests.support.reports import CHANNEL, T0, Conversation, at

pytestmark = pytest.mark.store


@pytest.fixture
async def reports(store: Store) -> ReportStore:
    adapter = report_store(store)
    await adapter.ensure_indexes()
    await adapter.ensure_indexes()  # idempotent: every replica runs it at start
    return adapter


def a_state() -> ConversationTiming:
    c = Conversation()
    reply = c.reply(20)
    state = new_state(reply)
    for event in (reply, c.created(0), c.message(0), c.message(1), c.owned(2, "ana"), c.resolved(3)):
        state.apply(event)
    for event in (c.reopened(5), c.message(5)):
        state.apply(event)
    state.pending = state.apply(c.message(6))  # saved with the state until the buckets have it
    return state


async def test_a_timing_state_comes_back_as_it_was_saved(reports: ReportStore) -> None:
    state = a_state()
    assert state.parked and state.cycles and state.waiting and state.pending  # every part is exercised
    await reports.save_state(state)
    assert state.version == 1
    loaded = await reports.get_state(state.conversation_id)
    assert loaded == state
    assert await reports.get_state("conv_missing") is None


async def test_a_bucket_comes_back_with_its_counts_sketches_and_counted_events(reports: ReportStore) -> None:
    c = Conversation()
    state = new_state(c.created(0))
    bucket = Bucket("t1", CHANNEL, hour_of(at(0)))
    reply = c.reply(5)
    for event in (c.created(0), c.message(0), reply, c.echo(reply)):
        for contribution in state.apply(event):
            bucket.apply(contribution)
    await reports.save_bucket(bucket)
    loaded = await reports.get_bucket(CHANNEL, hour_of(at(0)))
    assert loaded is not None
    assert loaded.to_document() == bucket.to_document()
    assert loaded.durations["first_response"].quantile(0.5) == pytest.approx(300, rel=0.01)


async def test_each_version_is_won_by_exactly_one_writer(reports: ReportStore) -> None:
    hour = hour_of(T0)
    first, second = Bucket("t1", CHANNEL, hour), Bucket("t1", CHANNEL, hour)
    results = await asyncio.gather(
        reports.save_bucket(first), reports.save_bucket(second), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["ConcurrentUpdate", "NoneType"]
    loaded = await reports.get_bucket(CHANNEL, hour)
    assert loaded is not None and loaded.version == 1
    loaded.counts["conversations_created"] = 1
    await reports.save_bucket(loaded)
    stale = Bucket("t1", CHANNEL, hour, version=1)
    with pytest.raises(ConcurrentUpdate):
        await reports.save_bucket(stale)
    state = a_state()
    await reports.save_state(state)
    stale_state = a_state()
    with pytest.raises(ConcurrentUpdate):
        await reports.save_state(stale_state)


async def test_buckets_of_channels_in_a_range_and_open_conversations(reports: ReportStore) -> None:
    for channel, hours in (("ch1", (0, 1, 2)), ("ch2", (1,)), ("ch3", (1,))):
        for h in hours:
            await reports.save_bucket(Bucket("t1", channel, T0 + timedelta(hours=h)))
    found = await reports.buckets(["ch1", "ch2"], T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert sorted((b.channel_id, b.hour) for b in found) == [
        ("ch1", T0 + timedelta(hours=1)),
        ("ch2", T0 + timedelta(hours=1)),
    ]
    assert await reports.buckets([], T0, T0 + timedelta(days=1)) == []

    open_one = a_state()  # reopened: New
    closed = Conversation("c2")
    done = new_state(closed.created(0))
    for event in (closed.created(0), closed.resolved(1)):
        done.apply(event)
    elsewhere = Conversation("c3", channel_id="ch9")
    other = new_state(elsewhere.created(0))
    other.apply(elsewhere.created(0))
    for state in (open_one, done, other):
        await reports.save_state(state)
    assert [s.conversation_id for s in await reports.open_conversations([CHANNEL])] == ["c1"]

    assert await reports.clear() == 8  # five buckets, three states
    assert await reports.buckets(["ch1", "ch2", "ch3"], T0, T0 + timedelta(days=1)) == []
    assert await reports.get_state("c1") is None
