"""The reports domain on hand-built event sequences: every measure, reopen, auto-resolve, a reply
seen before the message it answers, duplicates, time zones (docs/reports.md)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from parley_events import (
    DeliveryStatus,
    Direction,
    MessageStatusChanged,
    Pricing,
    Provider,
    ProviderError,
    Queue,
    Reaction,
    RejectionReason,
    ReplyFailed,
    ReplyRejected,
    SenderType,
    StatusChangeReason,
)
from parley_reports.domain.buckets import Bucket, hour_of
from parley_reports.domain.report import (
    Granularity,
    activity_report,
    agent_report,
    backlog,
    period_of,
)
from parley_reports.domain.sketch import Durations
from parley_reports.domain.timing import ConversationTiming, ReportEvent, new_state

from tests.support.reports import CHANNEL, T0, TENANT, Conversation, at


class ReadModel:
    """The service's bookkeeping in memory: timing states and buckets."""

    def __init__(self) -> None:
        self.states: dict[str, ConversationTiming] = {}
        self.buckets: dict[tuple[str, datetime], Bucket] = {}

    def apply(self, events: Iterable[ReportEvent]) -> ReadModel:
        for event in events:
            state = self.states.setdefault(event.conversation_id, new_state(event))
            for c in state.apply(event):
                key = (c.channel_id, c.hour)
                bucket = self.buckets.setdefault(key, Bucket(c.tenant_id, c.channel_id, c.hour))
                bucket.apply(c)
        return self

    def report(
        self, tz: str = "UTC", granularity: Granularity = Granularity.DAY, target_s: float | None = None
    ):  # type: ignore[no-untyped-def]
        return activity_report(self.buckets.values(), ZoneInfo(tz), granularity, target_s)


def served(c: Conversation, first: float = 0) -> list[ReportEvent]:
    """Created at ``first`` by a customer message, answered by alice 5 minutes later."""
    reply = c.reply(first + 5)
    return [c.created(first), c.message(first), reply, c.echo(reply)]


def test_a_conversation_answered_by_an_agent_counts_volume_and_first_response() -> None:
    c = Conversation()
    _, total = ReadModel().apply(served(c)).report(target_s=600)
    assert (total.conversations_created, total.inbound_messages) == (1, 1)
    assert (total.replies_human, total.replies_automated) == (1, 0)
    assert total.first_response.count == 1
    assert total.first_response.median_s == pytest.approx(300, rel=0.01)
    assert total.first_response.within_target == 1.0
    assert total.reply_time.count == 1
    assert total.reply_time.median_s == pytest.approx(300, rel=0.01)


def test_automated_replies_answer_messages_but_are_not_a_first_response() -> None:
    c = Conversation()
    bot = c.reply(1, agent=None)
    human = c.reply(30)
    events = [c.created(0), c.message(0), bot, c.echo(bot), c.message(10), human, c.echo(human)]
    model = ReadModel().apply(events)
    _, total = model.report()
    assert (total.replies_human, total.replies_automated) == (1, 1)
    assert total.first_response.count == 1
    assert total.first_response.median_s == pytest.approx(30 * 60, rel=0.01)
    # the bot answered the first message after 1 minute, alice the second after 20
    assert total.reply_time.count == 2
    times = model.buckets[(CHANNEL, hour_of(at(0)))].durations["reply_time"]
    assert (times.quantile(0), times.quantile(1)) == (
        pytest.approx(60, rel=0.01),
        pytest.approx(1200, rel=0.01),
    )


def test_every_waiting_message_is_measured_to_the_next_reply() -> None:
    c = Conversation()
    reply = c.reply(30)
    events = [c.created(0), c.message(0), c.message(10), c.message(20), reply, c.echo(reply)]
    model = ReadModel().apply(events)
    sketch = model.buckets[(CHANNEL, hour_of(at(30)))].durations["reply_time"]
    assert sketch.count == 3
    assert sketch.quantile(0.0) == pytest.approx(600, rel=0.01)
    assert sketch.quantile(1.0) == pytest.approx(1800, rel=0.01)


def test_a_reply_seen_before_the_message_it_answers_is_measured_once_the_message_arrives() -> None:
    c = Conversation()
    created, message, reply = c.created(0), c.message(0), c.reply(5)
    echo = c.echo(reply)
    in_order = ReadModel().apply([created, message, reply, echo])
    reply_first = ReadModel().apply([reply, created, message, echo])
    state = reply_first.states["c1"]
    assert not state.parked
    assert reply_first.report() == in_order.report()
    _, total = reply_first.report()
    assert total.first_response.count == 1
    assert total.first_response.median_s == pytest.approx(300, rel=0.01)


def test_a_parked_reply_waits_until_the_conversation_reaches_its_time() -> None:
    c = Conversation()
    created, message, reply = c.created(0), c.message(0), c.reply(5)
    model = ReadModel().apply([reply, created])
    assert [p.reply_id for p in model.states["c1"].parked] == [reply.reply_id]
    _, total = model.report()
    assert total.replies_human == 1  # counted in the volume at once
    assert total.first_response.count == 0  # but not measured yet
    model.apply([message, c.echo(reply)])
    assert not model.states["c1"].parked
    assert model.report()[1].first_response.count == 1


def test_a_reply_matched_to_an_earlier_echo_is_measured_at_once() -> None:
    # the provider's echo of the reply reached routing before policy's reply.sent did
    c = Conversation()
    created, message = c.created(0), c.message(0)
    echo = c.message(4.9, Direction.OUTBOUND, pmid="mid.1")
    model = ReadModel().apply([created, message, echo, c.reply(5, pmid="mid.1")])
    assert not model.states["c1"].parked
    assert model.report()[1].first_response.count == 1


def test_applying_every_event_twice_changes_nothing() -> None:
    c = Conversation()
    events = [*served(c), c.owned(6, "alice"), c.resolved(30)]
    once = ReadModel().apply(events)
    twice = ReadModel().apply(e for e in events for _ in range(2))
    again = ReadModel().apply(events).apply(events)
    assert once.report() == twice.report() == again.report()
    assert once.report()[1].conversations_created == 1


def test_a_bucket_counts_an_event_once_even_if_its_state_was_not_saved() -> None:
    # a crash after the buckets were written but before the state was: the event comes again
    c = Conversation()
    created = c.created(0)
    state = new_state(created)
    contributions = state.apply(created)
    bucket = Bucket(TENANT, CHANNEL, hour_of(at(0)))
    assert bucket.apply(contributions[0]) is True
    replayed = new_state(created).apply(created)
    assert bucket.apply(replayed[0]) is False
    assert bucket.counts == {"conversations_created": 1}


def test_resolution_reopen_and_the_reopened_cycles_first_response() -> None:
    c = Conversation()
    second_reply = c.reply(70, agent="bob")
    events = [
        *served(c),
        c.resolved(30, actor="alice"),
        c.reopened(60),
        c.message(60),
        second_reply,
        c.echo(second_reply),
        c.resolved(120, actor="bob"),
    ]
    model = ReadModel().apply(events)
    _, total = model.report()
    assert (total.conversations_created, total.conversations_reopened) == (1, 1)
    assert (total.resolved_by_agent, total.resolved_automatically) == (2, 0)
    assert total.reopen_rate == 0.5
    assert total.first_response.count == 2
    hours, _ = model.report(granularity=Granularity.HOUR)
    # 5 minutes in the first cycle (9:00), 10 in the reopened one (10:00)
    assert [r.activity.first_response.median_s for r in hours] == [
        pytest.approx(300, rel=0.01),
        pytest.approx(600, rel=0.01),
        None,  # 11:00: bob resolved it, nobody answered
    ]
    assert total.resolution.count == 2  # 30 minutes, then 60 from the reopening
    assert total.resolution.median_s == pytest.approx(1800, rel=0.01)
    assert [r.activity.resolution.median_s for r in hours] == [
        pytest.approx(1800, rel=0.01),
        None,
        pytest.approx(3600, rel=0.01),
    ]


def test_auto_resolve_is_counted_apart_and_credits_no_agent() -> None:
    c = Conversation()
    events = [c.created(0), c.message(0), c.owned(1, "alice"), c.resolved(600, actor=None)]
    model = ReadModel().apply(events)
    _, total = model.report(granularity=Granularity.WEEK)
    assert (total.resolved_by_agent, total.resolved_automatically) == (0, 1)
    assert total.first_response.count == 0
    agents = agent_report(model.buckets.values(), None)
    assert [(a.agent_id, a.conversations_owned, a.conversations_resolved) for a in agents] == [
        ("alice", 1, 0)
    ]


def test_a_late_reply_belongs_to_the_cycle_it_was_sent_in() -> None:
    # the conversation's events are ahead: resolved and reopened before the reply.sent arrives
    c = Conversation()
    reply = c.reply(20)
    echo = c.echo(reply)
    events = [c.created(0), c.message(0), echo, c.resolved(30), c.reopened(60), c.message(60), reply]
    model = ReadModel().apply(events)
    _, total = model.report()
    assert total.first_response.count == 1
    assert total.first_response.median_s == pytest.approx(1200, rel=0.01)
    # the reopening's message still waits: it is the backlog's oldest waiting message
    assert model.states["c1"].waiting_since == at(60)


def test_a_late_reply_still_answers_what_waited_before_a_resolution_it_preceded() -> None:
    c = Conversation()
    reply = c.reply(5)
    events = [c.created(0), c.message(0), c.echo(reply), c.resolved(20), c.reopened(70), c.message(70)]
    in_order = ReadModel().apply([*events[:2], reply, *events[2:]])
    late = ReadModel().apply([*events, reply])
    assert late.report() == in_order.report()
    assert late.report()[1].reply_time.count == 1
    assert late.states["c1"].waiting_since == at(70)


def test_a_message_resolved_unanswered_waits_no_more_and_is_not_measured() -> None:
    c = Conversation()
    reply = c.reply(80)
    model = ReadModel().apply(
        [c.created(0), c.message(0), c.resolved(20, actor=None), c.message(30), reply, c.echo(reply)]
    )
    assert model.states["c1"].waiting_since is None
    sketch = model.buckets[(CHANNEL, hour_of(at(80)))].durations["reply_time"]
    assert sketch.count == 1  # only the 09:30 message, answered after 50 minutes
    assert sketch.quantile(0.5) == pytest.approx(3000, rel=0.01)


def test_reactions_ask_for_no_answer() -> None:
    c = Conversation()
    events = [c.created(0), c.message(0), c.message(1, reaction=Reaction(emoji="+1"))]
    model = ReadModel().apply(events)
    assert model.report()[1].inbound_messages == 1
    assert model.states["c1"].waiting == [at(0)]


def test_agents_replies_ownership_resolutions_and_first_response() -> None:
    a, b = Conversation("a"), Conversation("b")
    b_reply = b.reply(25, agent="bob")
    events = [
        *served(a),
        a.owned(5, "alice"),
        a.resolved(30, actor="alice"),
        a.owner_cleared(30, "alice"),
        b.created(10),
        b.message(10),
        b.owned(11, "bob"),
        b_reply,
        b.echo(b_reply),
    ]
    model = ReadModel().apply(events)
    rows = {r.agent_id: r for r in agent_report(model.buckets.values(), target_s=600)}
    assert rows.keys() == {"alice", "bob"}
    assert (
        rows["alice"].replies,
        rows["alice"].conversations_owned,
        rows["alice"].conversations_resolved,
    ) == (
        1,
        1,
        1,
    )
    assert rows["alice"].first_response.median_s == pytest.approx(300, rel=0.01)
    assert rows["alice"].first_response.within_target == 1.0
    assert rows["bob"].first_response.median_s == pytest.approx(900, rel=0.01)
    assert rows["bob"].first_response.within_target == 0.0


def _rejected(event_id: str, *codes: str) -> ReplyRejected:
    return ReplyRejected(
        event_id=event_id,
        reply_id=event_id,
        conversation_id="c1",
        tenant_id=TENANT,
        channel_id=CHANNEL,
        sender_type=SenderType.HUMAN,
        agent_id="alice",
        occurred_at=at(1),
        reasons=tuple(RejectionReason(code=code, message=code) for code in codes),
    )


def _failed(event_id: str, kind: str, code: int | None) -> ReplyFailed:
    return ReplyFailed(
        event_id=event_id,
        reply_id=event_id,
        conversation_id="c1",
        tenant_id=TENANT,
        channel_id=CHANNEL,
        sender_type=SenderType.HUMAN,
        occurred_at=at(2),
        error=ProviderError(code=code),
        error_kind=kind,
        attempts=1,
    )


def _status(event_id: str, status: DeliveryStatus, category: str | None, *ids: str) -> MessageStatusChanged:
    return MessageStatusChanged(
        event_id=event_id,
        tenant_id=TENANT,
        channel_id=CHANNEL,
        provider=Provider.WHATSAPP,
        account_id="phone-1",
        conversation_id="c1",
        conversation_key="dm:1",
        status=status,
        provider_message_ids=ids,
        provider_timestamp=at(3),
        delivery_id="d",
        pricing=Pricing(category=category) if category else None,
    )


def test_policy_outcomes_by_reason_error_and_pricing_category() -> None:
    events: list[ReportEvent] = [
        _rejected("x1", "WINDOW_CLOSED"),
        _rejected("x2", "TOO_LONG", "WINDOW_CLOSED"),
        _rejected("x2", "TOO_LONG", "WINDOW_CLOSED"),  # a duplicate
        _failed("f1", "rate_limited", 613),
        _failed("f2", "permanent", None),
        # each status of a message repeats its pricing: the message is counted once
        _status("s1", DeliveryStatus.SENT, "service", "wamid.1"),
        _status("s2", DeliveryStatus.DELIVERED, "service", "wamid.1"),
        _status("s3", DeliveryStatus.SENT, "marketing", "wamid.2"),
        _status("s4", DeliveryStatus.READ, None, "wamid.3"),
    ]
    _, total = ReadModel().apply(events).report()
    assert total.rejected_by_reason == {"TOO_LONG": 1, "WINDOW_CLOSED": 2}
    assert total.failed_by_error == {"permanent/-": 1, "rate_limited/613": 1}
    assert total.whatsapp_by_pricing_category == {"marketing": 1, "service": 1}


def test_periods_are_the_callers_days_across_a_dst_change() -> None:
    # 22:30 UTC on Saturday the 28th is Sunday 00:30 in Paris (UTC+1 until 01:00 UTC on the 29th)
    late = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    paris = ZoneInfo("Europe/Paris")
    assert period_of(hour_of(late), paris, Granularity.DAY) == datetime(2026, 3, 29, tzinfo=paris)
    assert period_of(hour_of(late), ZoneInfo("UTC"), Granularity.DAY) == datetime(2026, 3, 28, tzinfo=UTC)
    assert period_of(hour_of(late), paris, Granularity.WEEK) == datetime(2026, 3, 23, tzinfo=paris)
    after = datetime(2026, 3, 29, 1, 15, tzinfo=UTC)  # 03:15 summer time
    assert period_of(hour_of(after), paris, Granularity.HOUR) == datetime(2026, 3, 29, 3, tzinfo=paris)

    saturday, sunday = Conversation("sat"), Conversation("sun")
    model = ReadModel().apply(
        [
            saturday.created((datetime(2026, 3, 28, 12, tzinfo=UTC) - T0).total_seconds() / 60),
            sunday.created((late - T0).total_seconds() / 60),
        ]
    )
    utc_rows, _ = model.report("UTC")
    paris_rows, _ = model.report("Europe/Paris")
    assert [(r.period_start.day, r.activity.conversations_created) for r in utc_rows] == [(28, 2)]
    assert [(r.period_start.day, r.activity.conversations_created) for r in paris_rows] == [(28, 1), (29, 1)]


def test_rows_by_group_and_range_totals() -> None:
    a, b = Conversation("a", "ch1"), Conversation("b", "ch2")
    model = ReadModel().apply([a.created(0), b.created(0), b.message(90)])
    rows, total = activity_report(
        model.buckets.values(), ZoneInfo("UTC"), Granularity.HOUR, None, group_of=lambda bk: bk.channel_id
    )
    assert [
        (r.period_start.hour, r.group, r.activity.conversations_created, r.activity.inbound_messages)
        for r in rows
    ] == [(9, "ch1", 1, 0), (9, "ch2", 1, 0), (10, "ch2", 0, 1)]
    assert (total.conversations_created, total.inbound_messages) == (2, 1)


def test_backlog_counts_open_conversations_per_queue_and_the_oldest_waiting_message() -> None:
    a, b, c = Conversation("a"), Conversation("b"), Conversation("c")
    model = ReadModel().apply(
        [
            a.created(0),
            a.message(0),
            b.created(10),
            b.message(10),
            b.owned(11, "bob"),
            b.status(12, Queue.NEW, Queue.PENDING, StatusChangeReason.AGENT, "bob"),
            *served(c, 20),
            c.resolved(40),
        ]
    )
    result = backlog(model.states.values())
    assert result.open_by_queue == {"new": 1, "pending": 1}
    assert result.unassigned == 1
    assert result.oldest_waiting_since == at(0)
    assert result.waiting_conversations == 2


def test_durations_merge_and_survive_their_stored_form() -> None:
    first, second = Durations(), Durations()
    for s in (10, 20, 30):
        first.add(s)
    for s in (40, 50, -5):  # a clock behind another never makes a negative wait
        second.add(s)
    first.merge(Durations.loads(second.dumps()))
    assert first.count == 6
    assert first.quantile(0.0) == 0.0
    assert first.quantile(1.0) == pytest.approx(50, rel=0.01)
    # 0, 10 and 20 are within 29 s; 30 too within 31 s (a sample within 1% of the target may fall either way)
    assert (first.share_within(29), first.share_within(31)) == (pytest.approx(3 / 6), pytest.approx(4 / 6))
    assert Durations().quantile(0.5) is None and Durations().share_within(1) is None


def test_states_and_buckets_survive_their_stored_form() -> None:
    c = Conversation()
    reply = c.reply(20)
    model = ReadModel().apply([reply, c.created(0), c.message(0), c.message(1), c.resolved(2)])
    model.apply([c.reopened(5), c.message(5)])
    state = model.states["c1"]
    assert state.parked  # the reply still waits for the conversation to reach 20 minutes
    state.pending = state.apply(c.message(6))  # what the service keeps until the buckets have it
    assert state.pending
    copy = ConversationTiming.from_document(state.to_document())
    assert copy == state
    for bucket in model.buckets.values():
        again = Bucket.from_document(bucket.to_document())
        assert again.to_document() == bucket.to_document()
