"""Business hours (parley_events.hours): open or closed, the next change, business seconds.

Europe/Berlin's 2026 clock changes: 29 March 02:00 CET -> 03:00 CEST (01:00 UTC), 25 October
03:00 CEST -> 02:00 CET (01:00 UTC). 2026-03-27 is a Friday, 2026-10-23 a Friday too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from parley_events import BusinessHours, ChannelSnapshot
from parley_events.hours import business_seconds, current_period, is_open, next_change
from pydantic import ValidationError

H = 3600


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def weekdays(
    start: str = "09:00", end: str = "17:00", zone: str = "Europe/Berlin", **more: object
) -> BusinessHours:
    days = ("mon", "tue", "wed", "thu", "fri")
    return BusinessHours.model_validate(
        {"time_zone": zone, "intervals": [{"day": d, "start": start, "end": end} for d in days], **more}
    )


def every_day(start: str, end: str, zone: str = "Europe/Berlin") -> BusinessHours:
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return BusinessHours.model_validate(
        {"time_zone": zone, "intervals": [{"day": d, "start": start, "end": end} for d in days]}
    )


# --- open or closed -------------------------------------------------------------------------------


def test_a_weekday_is_open_in_its_local_hours_and_closed_outside() -> None:
    hours = weekdays()  # Berlin in November is UTC+1
    assert is_open(hours, utc(2026, 11, 30, 8, 0))  # Monday 09:00 local
    assert not is_open(hours, utc(2026, 11, 30, 7, 59))
    assert is_open(hours, utc(2026, 11, 30, 15, 59))
    assert not is_open(hours, utc(2026, 11, 30, 16, 0))  # 17:00 local: the end is not open


def test_the_weekend_is_closed() -> None:
    hours = weekdays()
    assert not is_open(hours, utc(2026, 11, 28, 10, 0))  # Saturday
    assert not is_open(hours, utc(2026, 11, 29, 10, 0))  # Sunday


def test_a_holiday_closes_its_whole_local_date() -> None:
    hours = weekdays(holidays=["2026-12-25"])  # a Friday
    assert not is_open(hours, utc(2026, 12, 25, 10, 0))
    assert is_open(hours, utc(2026, 12, 24, 10, 0))


def test_no_schedule_is_always_open_and_an_empty_one_never() -> None:
    at = utc(2026, 11, 29, 3, 0)
    assert is_open(None, at)
    empty = BusinessHours(time_zone="UTC")
    assert not is_open(empty, at)
    assert business_seconds(None, at, at + timedelta(hours=5)) == 5 * H
    assert business_seconds(empty, at, at + timedelta(hours=5)) == 0
    assert current_period(None, at) == (True, None, None)
    assert current_period(empty, at) == (False, None, None)


def test_a_schedule_open_around_the_clock_never_changes() -> None:
    hours = every_day("00:00", "24:00", zone="UTC")
    assert current_period(hours, utc(2026, 11, 30, 3)) == (True, None, None)
    assert next_change(hours, utc(2026, 11, 30, 3)) is None


def test_intervals_touching_midnight_join_into_one_night_shift() -> None:
    hours = BusinessHours.model_validate(
        {
            "time_zone": "UTC",
            "intervals": [
                {"day": "mon", "start": "22:00", "end": "24:00"},
                {"day": "tue", "start": "00:00", "end": "06:00"},
            ],
        }
    )
    assert is_open(hours, utc(2026, 11, 30, 23, 59))
    assert is_open(hours, utc(2026, 12, 1, 0, 0))
    # one period: opened Monday 22:00, closes Tuesday 06:00, nothing at midnight
    assert current_period(hours, utc(2026, 12, 1, 1, 0)) == (True, utc(2026, 11, 30, 22), utc(2026, 12, 1, 6))
    assert next_change(hours, utc(2026, 11, 30, 23)) == utc(2026, 12, 1, 6)
    assert business_seconds(hours, utc(2026, 11, 30), utc(2026, 12, 2)) == 8 * H


def test_a_holiday_drops_only_its_own_half_of_a_night_shift() -> None:
    hours = BusinessHours.model_validate(
        {
            "time_zone": "UTC",
            "intervals": [
                {"day": "mon", "start": "22:00", "end": "24:00"},
                {"day": "tue", "start": "00:00", "end": "06:00"},
            ],
            "holidays": ["2026-11-30"],
        }
    )
    assert not is_open(hours, utc(2026, 11, 30, 23))
    assert current_period(hours, utc(2026, 12, 1, 1)) == (True, utc(2026, 12, 1), utc(2026, 12, 1, 6))


# --- the next change, and the period an instant is in ----------------------------------------------


def test_friday_evening_next_opens_monday_morning() -> None:
    hours = weekdays()
    friday_evening = utc(2026, 11, 27, 18, 0)
    assert next_change(hours, friday_evening) == utc(2026, 11, 30, 8, 0)
    assert current_period(hours, friday_evening) == (False, utc(2026, 11, 27, 16), utc(2026, 11, 30, 8))


def test_the_next_change_skips_a_holiday() -> None:
    hours = weekdays(holidays=["2026-11-30"])
    assert next_change(hours, utc(2026, 11, 27, 18, 0)) == utc(2026, 12, 1, 8, 0)


def test_the_next_change_after_weeks_of_holidays_is_found() -> None:
    hours = weekdays(holidays=[date(2026, 12, d).isoformat() for d in range(1, 30)])
    # closed from Monday 30 November 17:00 local to Wednesday 30 December 09:00 local
    assert current_period(hours, utc(2026, 12, 10)) == (False, utc(2026, 11, 30, 16), utc(2026, 12, 30, 8))


def test_the_next_change_from_an_exact_boundary_is_the_one_after_it() -> None:
    hours = weekdays()
    assert next_change(hours, utc(2026, 11, 30, 8, 0)) == utc(2026, 11, 30, 16, 0)


# --- business seconds ------------------------------------------------------------------------------


def test_business_time_across_a_weekend_counts_only_open_hours() -> None:
    hours = weekdays()
    # Friday 16:00 local to Monday 10:00 local: 1 h on Friday, 1 h on Monday
    assert business_seconds(hours, utc(2026, 11, 27, 15), utc(2026, 11, 30, 9)) == 2 * H


def test_business_time_across_a_holiday_skips_it() -> None:
    plain = weekdays()
    holiday = weekdays(holidays=["2026-12-25"])
    start, end = utc(2026, 12, 24, 15), utc(2026, 12, 28, 9)  # Thu 16:00 -> Mon 10:00 local
    assert business_seconds(plain, start, end) == 1 * H + 8 * H + 1 * H
    assert business_seconds(holiday, start, end) == 1 * H + 1 * H


def test_business_time_inside_one_open_period_is_wall_time() -> None:
    hours = weekdays()
    assert business_seconds(hours, utc(2026, 11, 30, 8, 15), utc(2026, 11, 30, 8, 45, 30)) == 1830


def test_a_reversed_range_has_no_business_time() -> None:
    assert business_seconds(weekdays(), utc(2026, 11, 30, 10), utc(2026, 11, 30, 9)) == 0


def test_spring_forward_shortens_a_night_interval_by_the_skipped_hour() -> None:
    hours = every_day("00:00", "06:00")
    day = date(2026, 3, 29)
    assert business_seconds(hours, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == 5 * H  # 00:00-06:00 is 5 h
    assert business_seconds(hours, utc(2026, 3, 27, 12), utc(2026, 3, 28, 12)) == 6 * H
    assert day.weekday() == 6  # a Sunday
    # the opening hours stay on local time: 06:00 CEST is 04:00 UTC that day, 05:00 UTC the day before
    assert current_period(hours, utc(2026, 3, 29, 2))[2] == utc(2026, 3, 29, 4)
    assert current_period(hours, utc(2026, 3, 28, 2))[2] == utc(2026, 3, 28, 5)


def test_fall_back_lengthens_a_night_interval_by_the_repeated_hour() -> None:
    hours = every_day("00:00", "06:00")
    assert business_seconds(hours, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)) == 7 * H
    assert current_period(hours, utc(2026, 10, 25, 3)) == (True, utc(2026, 10, 24, 22), utc(2026, 10, 25, 5))


def test_a_skipped_wall_time_is_read_with_the_offset_before_the_change() -> None:
    # RFC 5545: 02:30 on spring-forward day is 03:30 CEST (01:30 UTC)
    hours = every_day("02:30", "10:00")
    assert current_period(hours, utc(2026, 3, 29, 5)) == (True, utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 8))


def test_a_repeated_wall_time_is_its_first_occurrence() -> None:
    # 02:30 on fall-back day happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET): the first
    hours = every_day("02:30", "10:00")
    assert current_period(hours, utc(2026, 10, 25, 5))[1] == utc(2026, 10, 25, 0, 30)


def test_weekday_business_time_over_the_fall_back_weekend() -> None:
    hours = weekdays()  # Friday 23 Oct is CEST (UTC+2), Monday 26 Oct CET (UTC+1)
    assert business_seconds(hours, utc(2026, 10, 23, 14), utc(2026, 10, 26, 9)) == 1 * H + 1 * H


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "UTC", "intervals": [{"day": "mon", "start": "9:00", "end": "17:00"}]}, "start"),
        ({"time_zone": "UTC", "intervals": [{"day": "mon", "start": "18:00", "end": "02:00"}]}, "intervals"),
        ({"time_zone": "UTC", "intervals": [{"day": "mon", "start": "24:00", "end": "24:00"}]}, "intervals"),
        ({"time_zone": "UTC", "intervals": [{"day": "mon", "start": "09:00", "end": "24:30"}]}, "end"),
        ({"time_zone": "UTC", "intervals": [{"day": "someday", "start": "09:00", "end": "17:00"}]}, "day"),
        ({"time_zone": "UTC", "holidays": ["2026-02-30"]}, "holidays"),
        (
            {
                "time_zone": "UTC",
                "intervals": [
                    {"day": "mon", "start": "09:00", "end": "12:00"},
                    {"day": "mon", "start": "11:00", "end": "13:00"},
                ],
            },
            "overlap",
        ),
        ({"time_zone": "UTC", "weekly": []}, "weekly"),
    ],
)
def test_an_invalid_schedule_names_what_is_wrong(body: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BusinessHours.model_validate(body)
    assert where in str(caught.value)


def test_the_snapshot_carries_the_schedule_and_reads_without_one() -> None:
    base = {
        "channel_id": "ch_1",
        "tenant_id": "t1",
        "provider": "messenger",
        "account_id": "p1",
        "status": "active",
        "revision": 1,
    }
    assert ChannelSnapshot.model_validate(base).business_hours is None
    snap = ChannelSnapshot.model_validate({**base, "business_hours": weekdays().model_dump(mode="json")})
    assert snap.business_hours == weekdays()
