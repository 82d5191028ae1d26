"""Reports read from buckets: periods in the caller's time zone, merged sketches (pure).

Buckets are UTC hours per channel. A report converts each hour to the caller's time zone on read
and groups the hours into that zone's hours, days (midnight to midnight, 23 or 25 hours across a
DST change) or ISO weeks (from Monday), so one stored shape serves every zone. In a zone whose
offset is not whole hours (India, UTC+05:30) an hour is counted in the local hour, day or week its
start falls in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from parley_events import Queue

from parley_reports.domain import buckets as m
from parley_reports.domain.buckets import Bucket, split_slot
from parley_reports.domain.sketch import Durations
from parley_reports.domain.timing import ConversationTiming


class Granularity(StrEnum):
    """How long a report's periods are."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


def period_of(hour: datetime, tz: ZoneInfo, granularity: Granularity) -> datetime:
    """The start, in ``tz``, of the period a UTC hour falls in."""
    local = hour.astimezone(tz)
    if granularity is Granularity.HOUR:
        return local.replace(minute=0, second=0, microsecond=0)
    day = datetime(local.year, local.month, local.day, tzinfo=tz)
    if granularity is Granularity.DAY:
        return day
    monday = day.date() - timedelta(days=day.weekday())
    return datetime(monday.year, monday.month, monday.day, tzinfo=tz)


@dataclass
class Aggregate:
    """Buckets added together: counters and merged sketches."""

    counts: dict[str, int] = field(default_factory=dict)
    durations: dict[str, Durations] = field(default_factory=dict)

    def add(self, bucket: Bucket) -> None:
        for slot, n in bucket.counts.items():
            self.counts[slot] = self.counts.get(slot, 0) + n
        for slot, sketch in bucket.durations.items():
            self.durations.setdefault(slot, Durations()).merge(sketch)

    def count(self, measure: str, key: str = "") -> int:
        return self.counts.get(f"{measure}|{key}" if key else measure, 0)

    def keyed(self, measure: str) -> dict[str, int]:
        """A keyed counter's values by key (reasons, errors, categories, agents)."""
        out: dict[str, int] = {}
        for slot, n in self.counts.items():
            name, key = split_slot(slot)
            if name == measure and key:
                out[key] = n
        return dict(sorted(out.items()))

    def duration(self, measure: str, key: str = "") -> Durations:
        return self.durations.get(f"{measure}|{key}" if key else measure) or Durations()

    def keys_of(self, *measures: str) -> set[str]:
        return {
            key
            for slot in (*self.counts, *self.durations)
            for name, key in [split_slot(slot)]
            if name in measures and key
        }


@dataclass(frozen=True)
class Timing:
    """A duration measure over a period: how many, median, p90, share within the target."""

    count: int
    median_s: float | None
    p90_s: float | None
    within_target: float | None


def timing(durations: Durations, target_s: float | None) -> Timing:
    return Timing(
        count=durations.count,
        median_s=durations.quantile(0.5),
        p90_s=durations.quantile(0.9),
        within_target=durations.share_within(target_s) if target_s is not None else None,
    )


@dataclass(frozen=True)
class Activity:
    """Everything a report says about one period (or a whole range)."""

    conversations_created: int
    conversations_reopened: int
    inbound_messages: int
    replies_human: int
    replies_automated: int
    resolved_by_agent: int
    resolved_automatically: int
    reopen_rate: float | None
    first_response: Timing
    reply_time: Timing
    resolution: Timing
    first_response_business: Timing
    reply_time_business: Timing
    resolution_business: Timing
    rejected_by_reason: dict[str, int]
    failed_by_error: dict[str, int]
    whatsapp_by_pricing_category: dict[str, int]


def activity(agg: Aggregate, target_s: float | None) -> Activity:
    resolved = agg.count(m.RESOLVED_AGENT) + agg.count(m.RESOLVED_AUTO)
    reopened = agg.count(m.REOPENED)
    return Activity(
        conversations_created=agg.count(m.CREATED),
        conversations_reopened=reopened,
        inbound_messages=agg.count(m.INBOUND),
        replies_human=agg.count(m.REPLIES_HUMAN),
        replies_automated=agg.count(m.REPLIES_AUTOMATED),
        resolved_by_agent=agg.count(m.RESOLVED_AGENT),
        resolved_automatically=agg.count(m.RESOLVED_AUTO),
        reopen_rate=reopened / resolved if resolved else None,
        first_response=timing(agg.duration(m.FIRST_RESPONSE), target_s),
        reply_time=timing(agg.duration(m.REPLY_TIME), target_s),
        resolution=timing(agg.duration(m.RESOLUTION), None),
        first_response_business=timing(agg.duration(m.FIRST_RESPONSE_BUSINESS), target_s),
        reply_time_business=timing(agg.duration(m.REPLY_TIME_BUSINESS), target_s),
        resolution_business=timing(agg.duration(m.RESOLUTION_BUSINESS), None),
        rejected_by_reason=agg.keyed(m.REJECTED),
        failed_by_error=agg.keyed(m.FAILED),
        whatsapp_by_pricing_category=agg.keyed(m.PRICED),
    )


@dataclass(frozen=True)
class PeriodRow:
    """One period of one group (a channel, a provider, or everything the caller sees)."""

    period_start: datetime
    group: str
    activity: Activity


def activity_report(
    buckets: Iterable[Bucket],
    tz: ZoneInfo,
    granularity: Granularity,
    target_s: float | None,
    group_of: Callable[[Bucket], str] = lambda _: "all",
) -> tuple[list[PeriodRow], Activity]:
    """Rows per period and group, in time order, and the whole range's totals."""
    periods: dict[tuple[datetime, str], Aggregate] = {}
    total = Aggregate()
    for bucket in buckets:
        key = (period_of(bucket.hour, tz, granularity), group_of(bucket))
        periods.setdefault(key, Aggregate()).add(bucket)
        total.add(bucket)
    rows = [
        PeriodRow(start, group, activity(agg, target_s))
        for (start, group), agg in sorted(periods.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]
    return rows, activity(total, target_s)


@dataclass(frozen=True)
class AgentRow:
    """One agent over a range."""

    agent_id: str
    replies: int
    conversations_owned: int
    conversations_resolved: int
    first_response: Timing
    first_response_business: Timing


def agent_report(buckets: Iterable[Bucket], target_s: float | None) -> list[AgentRow]:
    """Per agent: replies sent, conversations owned and resolved, their first response times."""
    agg = Aggregate()
    for bucket in buckets:
        agg.add(bucket)
    agents = agg.keys_of(m.AGENT_REPLIES, m.AGENT_OWNED, m.AGENT_RESOLVED, m.AGENT_FIRST_RESPONSE)
    return [
        AgentRow(
            agent_id=agent,
            replies=agg.count(m.AGENT_REPLIES, agent),
            conversations_owned=agg.count(m.AGENT_OWNED, agent),
            conversations_resolved=agg.count(m.AGENT_RESOLVED, agent),
            first_response=timing(agg.duration(m.AGENT_FIRST_RESPONSE, agent), target_s),
            first_response_business=timing(agg.duration(m.AGENT_FIRST_RESPONSE_BUSINESS, agent), target_s),
        )
        for agent in sorted(agents)
    ]


@dataclass(frozen=True)
class Backlog:
    """Open conversations now: per queue, the oldest waiting customer message, unassigned."""

    open_by_queue: dict[str, int]
    unassigned: int
    oldest_waiting_since: datetime | None
    waiting_conversations: int


def backlog(conversations: Iterable[ConversationTiming]) -> Backlog:
    """The backlog of the open conversations given (closed ones are left out)."""
    by_queue = {Queue.NEW.value: 0, Queue.PENDING.value: 0}
    unassigned = waiting = 0
    oldest: datetime | None = None
    for c in conversations:
        if not c.is_open or c.queue is None:
            continue
        by_queue[c.queue.value] += 1
        unassigned += c.owner_id is None
        since = c.waiting_since
        if since is not None:
            waiting += 1
            oldest = since if oldest is None else min(oldest, since)
    return Backlog(by_queue, unassigned, oldest, waiting)
