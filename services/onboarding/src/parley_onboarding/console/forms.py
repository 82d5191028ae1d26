"""What the console's forms submit, read into the service's arguments (pure).

Only the reading of form fields lives here (a checkbox, minutes, a blank select); every rule on
the values themselves (a display name's length, the shortest auto-resolve) stays in the domain,
which answers the console as it answers the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parley_events import BusinessHours, ChannelRole, OpenInterval, Weekday
from parley_events.hours import MAX_HOLIDAYS, MAX_INTERVALS
from pydantic import BaseModel, ValidationError

from parley_onboarding.console.i18n import N_, _
from parley_onboarding.domain.channels import Access

USER_PREFIX = "user:"
TEAM_PREFIX = "team:"
ROLES = tuple(ChannelRole)
HOURS_OWN = "hours_own"
HOURS_ZONE = "hours_time_zone"
HOURS_HOLIDAYS = "hours_holidays"
HOURS = "hours"
"""The hours fieldset's own error slot (a refusal that belongs to no single field)."""
HOURS_WORDS = {
    "zone_missing": N_("Enter the time zone."),
    "zone": N_("This time zone is unknown: use an IANA name such as Europe/Berlin."),
    "format": N_("Write each opening as HH:MM-HH:MM (09:00-17:30), several separated by commas."),
    "order": N_(
        "An opening ends after it starts and at 24:00 at the latest: split a night shift over two "
        "days (22:00-24:00, then 00:00-06:00 the next day)."
    ),
    "overlap": N_("Openings on this day overlap."),
    "holiday": N_("Write each holiday as a date, YYYY-MM-DD, separated by commas or new lines."),
    "too_many_openings": N_("A week has at most %(max)s openings."),
    "too_many_holidays": N_("At most %(max)s holidays."),
}
"""What the console says when the schedule's contract (``parley_events.hours``) refuses a field."""
_SPAN = re.compile(r"^(\S+?)\s*[-\u2013]\s*(\S+)$")
_LIST = re.compile(r"[,;\s]+")


@dataclass
class FormErrors:
    """Messages by field name, shown beside their field."""

    by_field: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_field)

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, message)


Form = Mapping[str, list[str]]


def one(form: Form, name: str) -> str:
    values = form.get(name) or [""]
    return values[-1].strip()


def checked(form: Form, name: str) -> bool:
    return bool(form.get(name))


def _minutes(form: Form, name: str, errors: FormErrors) -> int | None:
    """Minutes to seconds; blank or 0 is off (None)."""
    raw = one(form, name)
    if raw in ("", "0"):
        return None
    if not raw.isdecimal():
        errors.add(name, _("Enter a whole number of minutes, or 0 to turn it off."))
        return None
    return int(raw) * 60


def _role(raw: str) -> ChannelRole | None:
    try:
        return ChannelRole(raw) if raw else None
    except ValueError:
        return None


def day_field(day: Weekday) -> str:
    return f"hours_{day.value}"


def _refusal(model: type[BaseModel], data: dict[str, Any]) -> list[Any] | None:
    """The contract's refusal of ``data`` (its errors), or None when it takes it."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return list(exc.errors())
    return None


def hours_from(form: Form, errors: FormErrors) -> BusinessHours | None:
    """The hours fields as a schedule; None when the box is unticked (no schedule of its own).

    The schedule's contract decides what is valid (``BusinessHours`` and ``OpenInterval``'s own
    validators, as the API's body is validated); the form only splits the text into its parts and
    writes each refusal by the field it concerns: the zone, one day's openings, the holidays.
    """
    if not checked(form, HOURS_OWN):
        return None
    mine = FormErrors()
    zone = one(form, HOURS_ZONE)
    if not zone:
        mine.add(HOURS_ZONE, _(HOURS_WORDS["zone_missing"]))
    elif _refusal(BusinessHours, {"time_zone": zone}):
        mine.add(HOURS_ZONE, _(HOURS_WORDS["zone"]))
    intervals: list[dict[str, str]] = []
    for day in Weekday:
        name, spans = day_field(day), []
        for piece in filter(None, (p.strip() for p in one(form, name).split(","))):
            match = _SPAN.match(piece)
            span = {"day": day.value, "start": match[1], "end": match[2]} if match else None
            refused = _refusal(OpenInterval, span) if span else None
            if span is None or refused:
                # a field's validator names its field (a time that is not HH:MM); the interval's
                # own check (end after start) names none
                word = "order" if refused and all(not e["loc"] for e in refused) else "format"
                mine.add(name, _(HOURS_WORDS[word]))
                continue
            spans.append(span)
        if spans and _refusal(BusinessHours, {"time_zone": "UTC", "intervals": spans}):
            mine.add(name, _(HOURS_WORDS["overlap"]))
        intervals += spans
    if len(intervals) > MAX_INTERVALS:
        mine.add(HOURS, _(HOURS_WORDS["too_many_openings"], max=MAX_INTERVALS))
    holidays = [d for d in _LIST.split(one(form, HOURS_HOLIDAYS)) if d]
    if len(holidays) > MAX_HOLIDAYS:
        mine.add(HOURS_HOLIDAYS, _(HOURS_WORDS["too_many_holidays"], max=MAX_HOLIDAYS))
    elif _refusal(BusinessHours, {"time_zone": "UTC", "holidays": holidays}):
        mine.add(HOURS_HOLIDAYS, _(HOURS_WORDS["holiday"]))
    for name, message in mine.by_field.items():
        errors.add(name, message)
    if mine:
        return None
    return BusinessHours.model_validate({"time_zone": zone, "intervals": intervals, "holidays": holidays})


def hours_values(hours: BusinessHours | None) -> dict[str, str]:
    """A schedule as the hours fields show it (the box ticked when there is one)."""
    if hours is None:
        return {}
    values = {
        HOURS_OWN: "on",
        HOURS_ZONE: hours.time_zone,
        HOURS_HOLIDAYS: ", ".join(d.isoformat() for d in hours.holidays),
    }
    for day in Weekday:
        spans = sorted((i.start, i.end) for i in hours.intervals if i.day is day)
        values[day_field(day)] = ", ".join(f"{start}-{end}" for start, end in spans)
    return values


def settings_changes(form: Form, *, x_channel: bool) -> tuple[dict[str, Any], FormErrors]:
    """The settings form as ``update_settings`` changes (every field, so unchecked boxes count)."""
    errors = FormErrors()
    name = one(form, "display_name")
    changes: dict[str, Any] = {
        "display_name": name or None,
        "auto_ownership": checked(form, "auto_ownership"),
        "auto_resolve_new_s": _minutes(form, "auto_resolve_new_min", errors),
        "auto_resolve_pending_s": _minutes(form, "auto_resolve_pending_min", errors),
        "human_agent_tag": checked(form, "human_agent_tag"),
        "mark_read_on_open": checked(form, "mark_read_on_open"),
        "business_hours": hours_from(form, errors),
        # empty: no away message (the domain refuses a blank one; None removes it)
        "away_message": one(form, "away_message") or None,
    }
    limit = one(form, "text_limit")
    if limit in ("", "0"):
        changes["text_limit"] = None
    elif limit.isdecimal():
        changes["text_limit"] = int(limit)
    else:
        errors.add("text_limit", _("Enter a whole number of characters, or 0 for the provider's own limit."))
    if x_channel:
        changes["x_api"] = one(form, "x_api") or None
    return changes, errors


def access_from(form: Form) -> tuple[Access, FormErrors]:
    """The access form as the channel's whole access (the service replaces it)."""
    errors = FormErrors()
    users: dict[str, ChannelRole] = {}
    teams: dict[str, ChannelRole] = {}
    for key, values in form.items():
        role = _role(values[-1].strip() if values else "")
        if key.startswith(USER_PREFIX) and role is not None:
            users[key.removeprefix(USER_PREFIX)] = role
        elif key.startswith(TEAM_PREFIX) and role is not None:
            teams[key.removeprefix(TEAM_PREFIX)] = role
    new_user = one(form, "new_user_id")
    new_role = _role(one(form, "new_user_role"))
    if new_user and new_role is None:
        errors.add("new_user_role", _("Choose the role this user gets."))
    elif new_role is not None and not new_user:
        errors.add("new_user_id", _("Enter the user's id, or leave the role empty."))
    elif new_user and new_role is not None:
        users[new_user] = new_role
    all_users = _role(one(form, "all_users_role")) if checked(form, "all_users") else None
    all_teams = _role(one(form, "all_teams_role")) if checked(form, "all_teams") else None
    if checked(form, "all_users") and all_users is None:
        errors.add("all_users_role", _("Choose the role every user gets."))
    if checked(form, "all_teams") and all_teams is None:
        errors.add("all_teams_role", _("Choose the role every team member gets."))
    return Access(users, teams, all_users, all_teams), errors
