"""Who may see and do what on a channel (pure).

A user's effective role on a channel is the highest of: the role given to them directly, the
role of each team they belong to (several teams are allowed), the channel's "All Users" role,
and its "All Teams" role if they are in any team. No role means the channel's conversations are
invisible to them. Tenant administrators may do everything on their tenant's channels.

| action | Viewer | Contributor | Supervisor |
|---|---|---|---|
| see conversations, move to Pending or Resolved, tags, topics, notes | yes | yes | yes |
| reply (enforced by policy) | no | yes | yes |
| take ownership (assign themselves) | no | yes | yes |
| give up their own ownership | no | yes | yes |
| assign or unassign someone else | no | no | yes |

An owner must be able to reply, so only a Contributor or Supervisor can be made owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from parley_events import ChannelRole, ChannelSnapshot


class Forbidden(Exception):
    """The user may not do this; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ChannelAccess:
    """The access settings of one channel."""

    user_access: Mapping[str, ChannelRole]
    team_access: Mapping[str, ChannelRole]
    all_users_role: ChannelRole | None = None
    all_teams_role: ChannelRole | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """The user acting, as their token says."""

    user_id: str
    tenant_id: str
    is_admin: bool = False


def effective_role(user_id: str, teams: Iterable[str], access: ChannelAccess) -> ChannelRole | None:
    """The highest role the user gets on the channel, or None."""
    team_ids = set(teams)
    candidates: list[ChannelRole] = []
    if user_id in access.user_access:
        candidates.append(access.user_access[user_id])
    candidates.extend(role for team, role in access.team_access.items() if team in team_ids)
    if access.all_users_role is not None:
        candidates.append(access.all_users_role)
    if access.all_teams_role is not None and team_ids:
        candidates.append(access.all_teams_role)
    return max(candidates, key=lambda r: r.rank, default=None)


def acting_role(actor: Actor, role: ChannelRole | None) -> ChannelRole | None:
    """Administrators act as Supervisors on every channel of their tenant."""
    return ChannelRole.SUPERVISOR if actor.is_admin else role


def require_any_role(role: ChannelRole | None) -> ChannelRole:
    if role is None:
        raise Forbidden("NO_ACCESS", "you have no role on this channel")
    return role


def check_assign(
    actor: Actor, actor_role: ChannelRole | None, target: str, target_role: ChannelRole | None
) -> None:
    """May ``actor`` make ``target`` the owner?"""
    role = require_any_role(actor_role)
    if target_role is None or target_role.rank < ChannelRole.CONTRIBUTOR.rank:
        raise Forbidden("OWNER_CANNOT_REPLY", "only a Contributor or Supervisor can own a conversation")
    if role is ChannelRole.SUPERVISOR:
        return
    if role is ChannelRole.CONTRIBUTOR and target == actor.user_id:
        return
    raise Forbidden("ROLE_FORBIDDEN", "only a Supervisor may assign someone else")


def check_unassign(actor: Actor, actor_role: ChannelRole | None, owner: str | None) -> None:
    """May ``actor`` clear the owner?"""
    role = require_any_role(actor_role)
    if role is ChannelRole.SUPERVISOR:
        return
    if role is ChannelRole.CONTRIBUTOR and owner == actor.user_id:
        return
    raise Forbidden("ROLE_FORBIDDEN", "only a Supervisor may unassign someone else")


def access_of(channel: ChannelSnapshot) -> ChannelAccess:
    """The access settings carried by a channel snapshot."""
    return ChannelAccess(
        channel.user_access, channel.team_access, channel.all_users_role, channel.all_teams_role
    )
