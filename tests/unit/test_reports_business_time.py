"""Reports in business time: first response, reply and resolution measured on the channel's
schedule as well as on the wall clock (docs/reports.md, "Business time").

The builder's T0 is Friday 2026-03-27 09:00 UTC. The channel's hours are Monday to Friday 09:00 to
17:00 in Europe/Berlin: Friday 08:00-16:00 UTC (winter time), and from Monday 30 March, after the
clocks moved forward on Sunday the 29th, 07:00-15:00 UTC (summer time).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from parley_events import BusinessHours
from parley_events.hours import AWAY_MESSAGE_REQUESTER
from parley_reports.domain.buckets import Bucket
from parley_reports.domain.report import Activity, Granularity, activity_report, agent_report
from parley_reports.domain.timing import ConversationTiming, ReportEvent, new_state

from tests.support.reports import Conversation

pytestmark = pytest.mark.unit

DAY = 24 * 60  # minutes
FRI_1530_UTC = 6 * 60 + 30  # 16:30 in Berlin: half an hour before closing
MON_0730_UTC = 3 * DAY - 90  # 09:30 in Berlin (summer time): half an hour after opening
TUE_0730_UTC = MON_0730_UTC + DAY


def office(*holidays: str) -> BusinessHours:
    return BusinessHours.model_validate(
        {
            "time_zone": "Europe/Berlin",
            "intervals": [
                {"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")
            ],
            "holidays": list(holidays),
        }
    )


def totals(events: Iterable[ReportEvent], hours: BusinessHours | None) -> Activity:
    states: dict[str, ConversationTiming] = {}
    buckets: dict[tuple[str, datetime], Bucket] = {}
    for event in events:
        state = states.setdefault(event.conversation_id, new_state(event))
        for c in state.apply(event, hours):
            buckets.setdefault((c.channel_id, c.hour), Bucket(c.tenant_id, c.channel_id, c.hour)).apply(c)
    return activity_report(buckets.values(), ZoneInfo("UTC"), Granularity.WEEK, 2 * 3600)[1]


def friday_evening_to(reply_at: float) -> list[ReportEvent]:
    """A customer writes on Friday at 16:30 in Berlin; alice answers and resolves at ``reply_at``."""
    c = Conversation()
    reply = c.reply(reply_at)
    return [
        c.created(FRI_1530_UTC),
        c.message(FRI_1530_UTC),
        reply,
        c.echo(reply),
        c.resolved(reply_at),
    ]


def test_across_a_weekend_and_a_clock_change_only_open_hours_count() -> None:
    total = totals(friday_evening_to(MON_0730_UTC), office())
    wall = (MON_0730_UTC - FRI_1530_UTC) * 60
    # half an hour on Friday, half an hour on Monday (opening at 07:00 UTC in summer time, not 08:00)
    for wall_time, business in (
        (total.first_response, total.first_response_business),
        (total.reply_time, total.reply_time_business),
        (total.resolution, total.resolution_business),
    ):
        assert (wall_time.count, business.count) == (1, 1)
        assert wall_time.median_s == pytest.approx(wall, rel=0.01)
        assert business.median_s == pytest.approx(3600, rel=0.01)
    # within the caller's two-hour target in business time, not on the wall clock
    assert (total.first_response.within_target, total.first_response_business.within_target) == (0.0, 1.0)


def test_a_holiday_is_not_business_time() -> None:
    plain = totals(friday_evening_to(TUE_0730_UTC), office())
    holiday = totals(friday_evening_to(TUE_0730_UTC), office("2026-03-30"))
    # Monday counts its 8 hours, unless it is a holiday
    assert plain.first_response_business.median_s == pytest.approx(9 * 3600, rel=0.01)
    assert holiday.first_response_business.median_s == pytest.approx(3600, rel=0.01)
    assert holiday.first_response.median_s == plain.first_response.median_s


def test_a_channel_without_a_schedule_has_business_time_equal_to_wall_time() -> None:
    total = totals(friday_evening_to(MON_0730_UTC), None)
    assert total.first_response_business == total.first_response
    assert total.reply_time_business == total.reply_time
    assert total.resolution_business == total.resolution


def test_a_reply_seen_before_its_message_is_measured_in_business_time_when_it_is_released() -> None:
    events = friday_evening_to(MON_0730_UTC)
    created, message, reply, echo, resolved = events
    early = totals([reply, created, message, echo, resolved], office())
    assert early == totals(events, office())
    assert early.first_response_business.median_s == pytest.approx(3600, rel=0.01)


def test_an_agents_first_response_is_measured_in_business_time_too() -> None:
    states: dict[str, ConversationTiming] = {}
    buckets: dict[tuple[str, datetime], Bucket] = {}
    for event in friday_evening_to(MON_0730_UTC):
        state = states.setdefault(event.conversation_id, new_state(event))
        for c in state.apply(event, office()):
            buckets.setdefault((c.channel_id, c.hour), Bucket(c.tenant_id, c.channel_id, c.hour)).apply(c)
    [alice] = agent_report(buckets.values(), None)
    assert alice.first_response.median_s == pytest.approx((MON_0730_UTC - FRI_1530_UTC) * 60, rel=0.01)
    assert alice.first_response_business.median_s == pytest.approx(3600, rel=0.01)


def test_an_away_message_is_counted_as_an_automated_reply_but_answers_nobody() -> None:
    c = Conversation()
    away = c.reply(FRI_1530_UTC + 0.1, agent=None).model_copy(update={"requested_by": AWAY_MESSAGE_REQUESTER})
    human = c.reply(MON_0730_UTC)
    events = [c.created(FRI_1530_UTC), c.message(FRI_1530_UTC), away, c.echo(away), human, c.echo(human)]
    total = totals(events, office())
    assert (total.replies_automated, total.replies_human) == (1, 1)
    # the customer's message waited for alice, not for the away message
    assert total.reply_time.count == 1
    assert total.reply_time_business.median_s == pytest.approx(3600, rel=0.01)
