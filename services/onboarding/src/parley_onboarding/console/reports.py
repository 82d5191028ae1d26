"""The Reports page's reading of its GET form and of the reports API's answers (pure).

The figures are the reports service's (``parley-reports``, docs/reports.md): the console asks it
with the signed-in user's token and draws what it answers. It fills in the periods the answer
has no row for (a period with no event is a zero, not a gap) and turns durations into minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from markupsafe import Markup

from parley_onboarding.console import charts, i18n
from parley_onboarding.console.i18n import N_, _

BUCKETS = {"day": N_("Days"), "week": N_("Weeks"), "hour": N_("Hours")}
DEFAULT_DAYS = 7
MAX_HOUR_DAYS = 14  # hourly periods over longer ranges make charts of hundreds of bars
DAY_FORMAT = N_("%Y-%m-%d")
HOUR_FORMAT = N_("%Y-%m-%d %H:00")
WEEK_LABEL = N_("week of %(day)s")
DECIMAL = {"de": ","}

COUNTS = (
    ("conversations_created", N_("Conversations created")),
    ("conversations_reopened", N_("Conversations reopened")),
    ("inbound_messages", N_("Customer messages")),
    ("replies_human", N_("Replies by agents")),
    ("replies_automated", N_("Replies by automations")),
    ("resolved_by_agent", N_("Resolved by agents")),
    ("resolved_automatically", N_("Resolved automatically")),
)
DURATIONS = (
    ("first_response", N_("First response, median in minutes")),
    ("reply_time", N_("Reply time, median in minutes")),
    ("resolution", N_("Resolution, median in minutes")),
)
# the reports API's refusals, in words: by the form field they concern, or for the whole page
FIELD_REFUSALS = {
    "UNKNOWN_TIME_ZONE": (
        "tz",
        N_("There is no time zone of that name: use an IANA name such as Europe/Berlin."),
    ),
    "INVALID_RANGE": ("to", N_("The last day is before the first day.")),
    "RANGE_TOO_LONG": ("from", N_("This range is longer than a report may cover.")),
    "VALIDATION_ERROR": ("from", N_("The report's parameters were refused: check the days and the period.")),
}
PAGE_REFUSALS = {
    "SUPERVISOR_REQUIRED": N_(
        "Reports are for the Supervisors of a channel and for administrators: you do not supervise "
        "this channel, or any channel."
    ),
    "CHANNEL_NOT_FOUND": N_("Your tenant has no such channel."),
}
UNKNOWN_REFUSAL = N_("The reports service refused the request (reason code %(code)s).")


def number(value: float) -> str:
    """A number the page's way: at most one decimal, the language's decimal mark."""
    return charts.plain(round(value, 1)).replace(".", DECIMAL.get(i18n.current(), "."))


@dataclass
class Query:
    """What the GET form asks for, checked as far as the console can (the rest is the API's)."""

    first: str
    last: str
    channel: str
    bucket: str
    tz: str
    errors: dict[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        out = {"from": self.first, "to": self.last, "bucket": self.bucket, "tz": self.tz}
        if self.channel:
            out["channel_id"] = self.channel
        return out


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def query_from(params: Mapping[str, str], today: date) -> Query:
    """The form's values, defaults for what is left out: the last seven days, by day, in UTC."""
    last = params.get("to", "").strip() or today.isoformat()
    first = params.get("from", "").strip() or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    bucket = params.get("bucket", "").strip() or "day"
    query = Query(
        first, last, params.get("channel", "").strip(), bucket, params.get("tz", "").strip() or "UTC"
    )
    start, end = _day(first), _day(last)
    if start is None:
        query.errors["from"] = _("Enter the first day as YYYY-MM-DD.")
    if end is None:
        query.errors["to"] = _("Enter the last day as YYYY-MM-DD.")
    if bucket not in BUCKETS:
        query.errors["bucket"] = _("Choose days, weeks or hours.")
    elif bucket == "hour" and start and end and (end - start).days + 1 > MAX_HOUR_DAYS:
        query.errors["bucket"] = _(
            "Hours are offered for at most %(days)s days: choose days or weeks.", days=MAX_HOUR_DAYS
        )
    return query


def periods(start: datetime, end: datetime, tz: ZoneInfo, bucket: str) -> list[datetime]:
    """The start of every period from ``start`` to ``end`` (exclusive) in ``tz``, as the reports
    service forms them: local hours, days (midnight to midnight) or ISO weeks (from Monday)."""
    found: list[datetime] = []
    if bucket == "hour":
        moment = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while moment < end:
            local = moment.astimezone(tz).replace(minute=0, second=0, microsecond=0)
            if not found or local != found[-1]:
                found.append(local)
            moment += timedelta(hours=1)
        return found
    day = start.astimezone(tz).date()
    if bucket == "week":
        day -= timedelta(days=day.weekday())
    step = timedelta(days=7 if bucket == "week" else 1)
    while datetime(day.year, day.month, day.day, tzinfo=tz) < end:
        found.append(datetime(day.year, day.month, day.day, tzinfo=tz))
        day += step
    return found


def label(moment: datetime, bucket: str) -> str:
    if bucket == "hour":
        return moment.strftime(i18n.translate(HOUR_FORMAT))
    day = moment.strftime(i18n.translate(DAY_FORMAT))
    return _(WEEK_LABEL, day=day) if bucket == "week" else day


@dataclass(frozen=True)
class Measure:
    """One chart and its table: the measure's name, its periods and values, the SVG."""

    key: str
    title: str
    unit: str
    rows: list[tuple[str, str]]
    svg: Markup
    total: str


def _minutes(timing: Mapping[str, Any] | None) -> float | None:
    median = (timing or {}).get("median_s")
    return None if median is None else float(median) / 60


def measures(answer: Mapping[str, Any], bucket: str) -> list[Measure]:
    """A chart per measure of an activity report, every period of its range on the axis."""
    tz = ZoneInfo(str(answer["time_zone"]))
    start = datetime.fromisoformat(str(answer["start"]))
    end = datetime.fromisoformat(str(answer["end"]))
    by_start: dict[float, Mapping[str, Any]] = {
        datetime.fromisoformat(str(row["period_start"])).timestamp(): row["activity"]
        for row in answer["rows"]
    }
    slots = [(label(p, bucket), by_start.get(p.timestamp())) for p in periods(start, end, tz, bucket)]
    total = answer["total"]
    out: list[Measure] = []
    kinds: list[tuple[str, str, Literal["bars", "line"]]] = [(k, t, "bars") for k, t in COUNTS]
    kinds += [(k, t, "line") for k, t in DURATIONS]
    for key, title, kind in kinds:
        if kind == "bars":
            points = [charts.Point(name, float(row[key]) if row else 0.0) for name, row in slots]
            whole_total = number(float(total[key]))
        else:
            points = [charts.Point(name, _minutes(row[key]) if row else None) for name, row in slots]
            minutes = _minutes(total[key])
            whole_total = number(minutes) if minutes is not None else _("none measured")
        measured = [p for p in points if p.value is not None]
        if not measured or all(p.value == 0 for p in measured):
            description = _("Nothing in this range.")
        else:
            peak = max(measured, key=lambda p: p.value or 0.0)
            description = _(
                "%(periods)s periods from %(first)s to %(last)s; the highest value is %(value)s (%(peak)s).",
                periods=len(points),
                first=points[0].label,
                last=points[-1].label,
                value=number(peak.value or 0.0),
                peak=peak.label,
            )
        rows = [(p.label, number(p.value) if p.value is not None else "-") for p in points]
        chart = charts.svg(
            f"chart-{key}",
            _(title),
            description,
            points,
            kind=kind,
            whole=kind == "bars",
            number=number,
        )
        out.append(Measure(key, _(title), kind, rows, chart, whole_total))
    return out


def refusal_sentence(code: str) -> str:
    sentence = PAGE_REFUSALS.get(code)
    return _(sentence) if sentence else _(UNKNOWN_REFUSAL, code=code or "?")


def field_refusal(code: str) -> tuple[str, str] | None:
    found = FIELD_REFUSALS.get(code)
    return (found[0], _(found[1])) if found else None
