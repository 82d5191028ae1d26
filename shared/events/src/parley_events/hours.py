"""Business hours: a channel's weekly schedule in a time zone, with holidays (contract and pure rules).

The schema is published inside the channel snapshot, so it lives with the event contracts; the
computation (open at an instant, the next opening or closing, business seconds between two
instants) is pure, so routing's away message and the reports' business-time measures share it
without I/O.

Decisions (docs/onboarding.md, "Business hours"):

- **No schedule** (``None`` on the snapshot) means always open: business time equals wall time.
  A schedule with **no intervals** means never open (every second is out of hours).
- Intervals do **not** cross midnight: ``end`` is at most ``24:00`` of the interval's own day.
  A night shift is two intervals (Monday 22:00-24:00 and Tuesday 00:00-06:00); touching
  intervals join, so the shift opens once and closes once.
- A **holiday** is a whole local date closed: every interval of that date is dropped (the
  Monday 22:00-24:00 half of a shift on a Monday holiday, not its Tuesday half).
- Wall times are read in the schedule's zone as RFC 5545 (3.3.5) reads them: a time the clock
  skips (02:30 on Europe/Berlin's spring-forward day) uses the offset before the change, so it is
  03:30 summer time; a time the clock shows twice (02:30 on the fall-back day) is its first
  occurrence. Python's ``zoneinfo`` with ``fold=0`` does exactly that.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AWAY_MESSAGE_REQUESTER = "parley:away-message"
"""``requested_by`` of the replies that carry a channel's away message (policy sends them for
routing's ``conversation.away_message_due``): consumers tell them from other automations' replies
by it (reports does not count one as answering the customer)."""
MAX_INTERVALS = 70
MAX_HOLIDAYS = 400
SEARCH_DAYS = 400
"""How far ahead the next opening or closing is looked for (a year of holidays and a week more)."""
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


class Weekday(StrEnum):
    """A day of the week, Monday first (``date.weekday()`` order)."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        return list(Weekday).index(self)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class OpenInterval(BaseModel):
    """Open from ``start`` to ``end`` (local wall time) on one weekday; ``end`` may be ``24:00``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: Weekday = Field(examples=["mon"])
    start: str = Field(description="Local time HH:MM, 00:00 to 23:59.", examples=["09:00"])
    end: str = Field(
        description="Local time HH:MM after start, up to 24:00 (the end of the day).", examples=["17:30"]
    )

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError("a time is HH:MM, from 00:00 to 24:00")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> OpenInterval:
        if self.start == "24:00":
            raise ValueError("start is before 24:00")
        if _minutes(self.end) <= _minutes(self.start):
            raise ValueError("end is after start; an interval does not cross midnight (split it in two)")
        return self


class BusinessHours(BaseModel):
    """A weekly schedule in an IANA time zone, and the dates it is closed all day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_zone: str = Field(description="An IANA time zone name.", examples=["Europe/Berlin"])
    intervals: tuple[OpenInterval, ...] = Field(
        default=(),
        max_length=MAX_INTERVALS,
        description="When the channel is open each week; none: never open.",
        examples=[[{"day": "mon", "start": "09:00", "end": "17:00"}]],
    )
    holidays: tuple[date, ...] = Field(
        default=(),
        max_length=MAX_HOLIDAYS,
        description="Local dates closed all day.",
        examples=[["2026-12-25"]],
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin") from exc
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> BusinessHours:
        for day in Weekday:
            spans = sorted((_minutes(i.start), _minutes(i.end)) for i in self.intervals if i.day is day)
            for (_, end), (start, _) in pairwise(spans):
                if start < end:
                    raise ValueError(f"intervals on {day.value} overlap")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


# --- the pure rules -----------------------------------------------------------------------------


def _instant(zone: ZoneInfo, day: date, minutes: int) -> datetime:
    """The UTC instant of a local wall time (RFC 5545: fold=0 for a skipped or repeated time)."""
    if minutes >= 24 * 60:
        return _instant(zone, day + timedelta(days=1), minutes - 24 * 60)
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(UTC)


def _day_spans(hours: BusinessHours, day: date) -> Iterator[tuple[datetime, datetime]]:
    if day in hours.holidays:
        return
    zone = hours.zone
    for interval in hours.intervals:
        if interval.day.number == day.weekday():
            start = _instant(zone, day, _minutes(interval.start))
            end = _instant(zone, day, _minutes(interval.end))
            if end > start:  # a span wholly inside a skipped hour has no length
                yield start, end


def open_spans(hours: BusinessHours, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The open periods overlapping ``[start, end)``, in UTC, joined where they touch, not clipped."""
    zone = hours.zone
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    spans: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        spans.extend(_day_spans(hours, day))
        day += timedelta(days=1)
    spans.sort()
    joined: list[tuple[datetime, datetime]] = []
    for s, e in spans:
        if joined and s <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], e))
        else:
            joined.append((s, e))
    return [(s, e) for s, e in joined if e > start and s < end]


def is_open(hours: BusinessHours | None, at: datetime) -> bool:
    """Whether the channel is open at an instant (no schedule: always)."""
    if hours is None:
        return True
    return any(s <= at < e for s, e in open_spans(hours, at, at + timedelta(microseconds=1)))


def business_seconds(hours: BusinessHours | None, start: datetime, end: datetime) -> float:
    """Open seconds in ``[start, end)`` (no schedule: all of them; an empty or reversed range: 0)."""
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    return sum((min(e, end) - max(s, start)).total_seconds() for s, e in open_spans(hours, start, end))


def current_period(
    hours: BusinessHours | None, at: datetime
) -> tuple[bool, datetime | None, datetime | None]:
    """Whether the channel is open at ``at``, when that state began and when it ends.

    ``(open, since, until)``: ``since`` is the last opening or closing at or before ``at`` and
    ``until`` the next after it, each None when there is none within a year or so (always open,
    never open, closed for more than a year). No schedule: ``(True, None, None)``."""
    if hours is None:
        return True, None, None
    # look a week or so each way first (most schedules change within it), wider only if needed
    for days in (8, 32, 128, SEARCH_DAYS):
        found = _period_within(hours, at, timedelta(days=days))
        if found[1] is not None and found[2] is not None:
            break
    return found


def _period_within(
    hours: BusinessHours, at: datetime, horizon: timedelta
) -> tuple[bool, datetime | None, datetime | None]:
    low, high = at - horizon, at + horizon
    spans = open_spans(hours, low, high)
    for s, e in spans:
        if s <= at < e:
            # a period reaching the edge of the search began (or ends) beyond it: not a change seen
            return True, (s if s > low else None), (e if e < high else None)
    before = [e for _, e in spans if e <= at]
    after = [s for s, _ in spans if s > at]
    return False, (before[-1] if before else None), (after[0] if after else None)


def next_change(hours: BusinessHours | None, after: datetime) -> datetime | None:
    """The next opening or closing strictly after an instant (None: none within a year or so)."""
    return current_period(hours, after)[2]
