"""Channel roles and permissions: the rules live in ``parley_shared.access`` (shared with policy)."""

from __future__ import annotations

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
    "require_any_role",
]
