"""Channel roles and permissions: the rules live in ``parley_shared.access`` (shared with policy)."""

from __future__ import annotations

from parley_events import ChannelRole, ChannelSnapshot
from parley_shared.access import (
    Actor,
    ChannelAccess,
    Forbidden,
    acting_role,
    check_assign,
    check_unassign,
    effective_role,
    require_any_role,
)

__all__ = [
    "Actor",
    "ChannelAccess",
    "Forbidden",
    "acting_role",
    "check_assign",
    "check_unassign",
    "effective_role",
    "marks_read_on_open",
    "require_any_role",
]


def marks_read_on_open(role: ChannelRole, channel: ChannelSnapshot | None) -> bool:
    """Whether an agent opening a conversation marks its customer's last message read: the channel
    says so (its ``mark_read_on_open`` setting) and the agent may reply (Contributor or higher, as
    the explicit read call requires): a Viewer looking in tells the customer nothing."""
    return channel is not None and channel.mark_read_on_open and role.rank >= ChannelRole.CONTRIBUTOR.rank
