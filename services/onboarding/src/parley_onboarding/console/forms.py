"""What the console's forms submit, read into the service's arguments (pure).

Only the reading of form fields lives here (a checkbox, minutes, a blank select); every rule on
the values themselves (a display name's length, the shortest auto-resolve) stays in the domain,
which answers the console as it answers the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parley_events import ChannelRole

from parley_onboarding.console.i18n import _
from parley_onboarding.domain.channels import Access

USER_PREFIX = "user:"
TEAM_PREFIX = "team:"
ROLES = tuple(ChannelRole)


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
