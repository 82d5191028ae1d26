"""Who may do what on a channel: roles and the assignment rules (see domain/access.py)."""

from __future__ import annotations

import pytest
from parley_events import ChannelRole
from parley_routing.domain.access import (
    Actor,
    ChannelAccess,
    Forbidden,
    acting_role,
    check_assign,
    check_unassign,
    effective_role,
    require_any_role,
)

pytestmark = pytest.mark.unit

V, C, S = ChannelRole.VIEWER, ChannelRole.CONTRIBUTOR, ChannelRole.SUPERVISOR
USER = "usr_me"
COLLEAGUE = "usr_colleague"

# --- effective role ---------------------------------------------------------------------------

ROLE_TABLE = [
    # (direct role, team access, all users, all teams, the user's teams, effective role)
    pytest.param(None, {}, None, None, [], None, id="nothing"),
    pytest.param(None, {}, None, None, ["t1", "t2"], None, id="teams-without-access"),
    pytest.param(V, {}, None, None, [], V, id="direct-viewer"),
    pytest.param(C, {}, None, None, [], C, id="direct-contributor"),
    pytest.param(S, {}, None, None, [], S, id="direct-supervisor"),
    pytest.param(V, {"t1": C}, None, None, ["t1"], C, id="team-above-direct"),
    pytest.param(S, {"t1": V}, None, None, ["t1"], S, id="direct-above-team"),
    pytest.param(None, {"t1": V, "t2": S, "t3": C}, None, None, ["t1", "t3"], C, id="only-own-teams"),
    pytest.param(None, {"t1": V, "t2": S, "t3": C}, None, None, ["t1", "t2", "t3"], S, id="highest-team"),
    pytest.param(None, {"t1": C, "t2": V}, None, None, ["t2", "t1"], C, id="team-order-irrelevant"),
    pytest.param(None, {"t9": S}, None, None, ["t1"], None, id="other-team-only"),
    pytest.param(V, {"t9": S}, None, None, ["t1"], V, id="other-team-ignored"),
    pytest.param(None, {}, V, None, [], V, id="all-users"),
    pytest.param(V, {}, C, None, [], C, id="all-users-above-direct"),
    pytest.param(S, {}, V, None, [], S, id="direct-above-all-users"),
    pytest.param(None, {"t1": V}, S, None, ["t1"], S, id="all-users-above-team"),
    pytest.param(None, {}, None, S, [], None, id="all-teams-needs-a-team"),
    pytest.param(None, {}, V, S, [], V, id="all-teams-ignored-without-team"),
    pytest.param(V, {}, None, S, [], V, id="all-teams-ignored-direct-kept"),
    pytest.param(None, {}, None, C, ["t7"], C, id="all-teams-any-team"),
    pytest.param(None, {"t1": V}, None, C, ["t1"], C, id="all-teams-above-team"),
    pytest.param(None, {"t1": S}, None, V, ["t1"], S, id="team-above-all-teams"),
    pytest.param(S, {}, V, V, ["t1"], S, id="direct-above-all-toggles"),
    pytest.param(V, {"t1": V, "t2": V}, V, C, ["t1", "t2"], C, id="several-teams-all-teams-wins"),
]


@pytest.mark.parametrize(("direct", "team_access", "all_users", "all_teams", "teams", "expected"), ROLE_TABLE)
def test_effective_role(
    direct: ChannelRole | None,
    team_access: dict[str, ChannelRole],
    all_users: ChannelRole | None,
    all_teams: ChannelRole | None,
    teams: list[str],
    expected: ChannelRole | None,
) -> None:
    access = ChannelAccess(
        user_access={COLLEAGUE: S, **({USER: direct} if direct is not None else {})},
        team_access=team_access,
        all_users_role=all_users,
        all_teams_role=all_teams,
    )

    assert effective_role(USER, teams, access) is expected
    # the teams may come as any iterable, once
    assert effective_role(USER, iter(teams), access) is expected


def test_a_role_given_to_someone_else_is_not_mine() -> None:
    access = ChannelAccess(user_access={COLLEAGUE: S}, team_access={})
    assert effective_role(USER, [], access) is None
    assert effective_role(COLLEAGUE, [], access) is S


# --- acting role ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [None, V, C, S])
def test_administrators_act_as_supervisors(role: ChannelRole | None) -> None:
    admin = Actor(user_id=USER, tenant_id="ten_acme", is_admin=True)
    assert acting_role(admin, role) is S


@pytest.mark.parametrize("role", [None, V, C, S])
def test_other_users_act_with_their_own_role(role: ChannelRole | None) -> None:
    user = Actor(user_id=USER, tenant_id="ten_acme")
    assert acting_role(user, role) is role


def test_no_role_means_no_access() -> None:
    with pytest.raises(Forbidden) as caught:
        require_any_role(None)
    assert caught.value.code == "NO_ACCESS"
    assert require_any_role(V) is V


# --- check_assign ---------------------------------------------------------------------------------

ME = Actor(user_id=USER, tenant_id="ten_acme")
ADMIN = Actor(user_id="usr_admin", tenant_id="ten_acme", is_admin=True)

ASSIGN_TABLE = [
    # (actor role, target, target role, Forbidden code or None when allowed)
    pytest.param(None, USER, C, "NO_ACCESS", id="no-role-self"),
    pytest.param(None, COLLEAGUE, C, "NO_ACCESS", id="no-role-other"),
    pytest.param(V, USER, V, "OWNER_CANNOT_REPLY", id="viewer-self"),
    pytest.param(V, COLLEAGUE, C, "ROLE_FORBIDDEN", id="viewer-contributor"),
    pytest.param(V, COLLEAGUE, S, "ROLE_FORBIDDEN", id="viewer-supervisor"),
    pytest.param(V, COLLEAGUE, V, "OWNER_CANNOT_REPLY", id="viewer-viewer"),
    pytest.param(C, USER, C, None, id="contributor-self"),
    pytest.param(C, COLLEAGUE, C, "ROLE_FORBIDDEN", id="contributor-other-contributor"),
    pytest.param(C, COLLEAGUE, S, "ROLE_FORBIDDEN", id="contributor-other-supervisor"),
    pytest.param(C, COLLEAGUE, V, "OWNER_CANNOT_REPLY", id="contributor-viewer"),
    pytest.param(C, COLLEAGUE, None, "OWNER_CANNOT_REPLY", id="contributor-no-role"),
    pytest.param(S, USER, S, None, id="supervisor-self"),
    pytest.param(S, COLLEAGUE, C, None, id="supervisor-contributor"),
    pytest.param(S, COLLEAGUE, S, None, id="supervisor-supervisor"),
    pytest.param(S, COLLEAGUE, V, "OWNER_CANNOT_REPLY", id="supervisor-viewer"),
    pytest.param(S, COLLEAGUE, None, "OWNER_CANNOT_REPLY", id="supervisor-no-role"),
]


@pytest.mark.parametrize(("actor_role", "target", "target_role", "code"), ASSIGN_TABLE)
def test_check_assign(
    actor_role: ChannelRole | None, target: str, target_role: ChannelRole | None, code: str | None
) -> None:
    if code is None:
        check_assign(ME, actor_role, target, target_role)
        return
    with pytest.raises(Forbidden) as caught:
        check_assign(ME, actor_role, target, target_role)
    assert caught.value.code == code
    assert caught.value.message
    assert str(caught.value) == caught.value.message


@pytest.mark.parametrize(
    ("target_role", "code"),
    [(C, None), (S, None), (V, "OWNER_CANNOT_REPLY"), (None, "OWNER_CANNOT_REPLY")],
)
def test_an_administrator_assigns_like_a_supervisor(
    target_role: ChannelRole | None, code: str | None
) -> None:
    role = acting_role(ADMIN, None)
    if code is None:
        check_assign(ADMIN, role, COLLEAGUE, target_role)
        return
    with pytest.raises(Forbidden) as caught:
        check_assign(ADMIN, role, COLLEAGUE, target_role)
    assert caught.value.code == code


@pytest.mark.parametrize("target", [USER, COLLEAGUE])
@pytest.mark.parametrize("target_role", [None, V, C, S])
def test_a_viewer_cannot_assign_anyone(target: str, target_role: ChannelRole | None) -> None:
    with pytest.raises(Forbidden):
        check_assign(ME, V, target, target_role)


@pytest.mark.parametrize("actor_role", [None, V, C, S])
@pytest.mark.parametrize("target", [USER, COLLEAGUE])
def test_nobody_can_make_a_viewer_or_a_user_without_role_the_owner(
    actor_role: ChannelRole | None, target: str
) -> None:
    for target_role in (V, None):
        with pytest.raises(Forbidden) as caught:
            check_assign(ME, actor_role, target, target_role)
        expected = "NO_ACCESS" if actor_role is None else "OWNER_CANNOT_REPLY"
        assert caught.value.code == expected


# --- check_unassign ---------------------------------------------------------------------------------

UNASSIGN_TABLE = [
    # (actor role, current owner, Forbidden code or None when allowed)
    pytest.param(None, USER, "NO_ACCESS", id="no-role-own"),
    pytest.param(None, COLLEAGUE, "NO_ACCESS", id="no-role-other"),
    pytest.param(V, USER, "ROLE_FORBIDDEN", id="viewer-own"),
    pytest.param(V, COLLEAGUE, "ROLE_FORBIDDEN", id="viewer-other"),
    pytest.param(V, None, "ROLE_FORBIDDEN", id="viewer-unowned"),
    pytest.param(C, USER, None, id="contributor-own"),
    pytest.param(C, COLLEAGUE, "ROLE_FORBIDDEN", id="contributor-other"),
    pytest.param(S, USER, None, id="supervisor-own"),
    pytest.param(S, COLLEAGUE, None, id="supervisor-other"),
    pytest.param(S, None, None, id="supervisor-unowned"),
]


@pytest.mark.parametrize(("actor_role", "owner", "code"), UNASSIGN_TABLE)
def test_check_unassign(actor_role: ChannelRole | None, owner: str | None, code: str | None) -> None:
    if code is None:
        check_unassign(ME, actor_role, owner)
        return
    with pytest.raises(Forbidden) as caught:
        check_unassign(ME, actor_role, owner)
    assert caught.value.code == code


@pytest.mark.parametrize("owner", [USER, COLLEAGUE, None])
def test_an_administrator_unassigns_like_a_supervisor(owner: str | None) -> None:
    check_unassign(ADMIN, acting_role(ADMIN, None), owner)
