"""Teams (domain/teams.py): a name and members, revisions that move only on change."""

from __future__ import annotations

import pytest
from parley_events import TeamSnapshot
from parley_onboarding.domain.errors import DomainError
from parley_onboarding.domain.teams import Team

pytestmark = pytest.mark.unit

TENANT = "ten_acme"


def test_create() -> None:
    team = Team.create(TENANT, "  Support  ")
    assert team.name == "Support"
    assert team.tenant_id == TENANT
    assert team.members == []
    assert team.revision == 1
    assert team.deleted is False
    assert team.id.startswith("team_")
    assert len(team.id) == len("team_") + 16


def test_created_teams_get_distinct_ids() -> None:
    assert len({Team.create(TENANT, "Support").id for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="spaces"),
        pytest.param("\t\n", id="whitespace"),
        pytest.param("a" * 101, id="too-long"),
    ],
)
def test_invalid_name_refused_on_create(name: str) -> None:
    with pytest.raises(DomainError) as exc:
        Team.create(TENANT, name)
    assert exc.value.code == "INVALID_TEAM_NAME"
    assert exc.value.details == {"field": "name"}


@pytest.mark.parametrize("name", ["a", "a" * 100, " " + "a" * 100 + " "])
def test_name_of_1_to_100_characters_accepted(name: str) -> None:
    assert Team.create(TENANT, name).name == name.strip()


def test_rename() -> None:
    team = Team.create(TENANT, "Support")
    assert team.rename(" Sales ") is True
    assert team.name == "Sales"
    assert team.revision == 2


@pytest.mark.parametrize("name", ["Support", "  Support  "])
def test_rename_to_same_name_is_a_no_op(name: str) -> None:
    team = Team.create(TENANT, "Support")
    assert team.rename(name) is False
    assert team.revision == 1


@pytest.mark.parametrize("name", ["", "  ", "a" * 101])
def test_rename_refuses_invalid_name(name: str) -> None:
    team = Team.create(TENANT, "Support")
    with pytest.raises(DomainError) as exc:
        team.rename(name)
    assert exc.value.code == "INVALID_TEAM_NAME"
    assert team.name == "Support"
    assert team.revision == 1


def test_add_member() -> None:
    team = Team.create(TENANT, "Support")
    assert team.add_member("usr_1") is True
    assert team.add_member("usr_2") is True
    assert team.members == ["usr_1", "usr_2"]
    assert team.revision == 3


def test_add_existing_member_is_a_no_op() -> None:
    team = Team.create(TENANT, "Support")
    team.add_member("usr_1")
    assert team.add_member("usr_1") is False
    assert team.members == ["usr_1"]
    assert team.revision == 2


def test_remove_member() -> None:
    team = Team.create(TENANT, "Support")
    team.add_member("usr_1")
    team.add_member("usr_2")
    assert team.remove_member("usr_1") is True
    assert team.members == ["usr_2"]
    assert team.revision == 4


def test_remove_absent_member_is_a_no_op() -> None:
    team = Team.create(TENANT, "Support")
    team.add_member("usr_1")
    assert team.remove_member("usr_9") is False
    assert team.members == ["usr_1"]
    assert team.revision == 2


def test_member_can_rejoin() -> None:
    team = Team.create(TENANT, "Support")
    team.add_member("usr_1")
    team.remove_member("usr_1")
    assert team.add_member("usr_1") is True
    assert team.members == ["usr_1"]
    assert team.revision == 4


def test_a_user_may_be_in_several_teams() -> None:
    support, sales = Team.create(TENANT, "Support"), Team.create(TENANT, "Sales")
    assert support.add_member("usr_1") and sales.add_member("usr_1")
    assert "usr_1" in support.members
    assert "usr_1" in sales.members


def test_delete() -> None:
    team = Team.create(TENANT, "Support")
    team.add_member("usr_1")
    team.delete()
    assert team.deleted is True
    assert team.revision == 3


def test_delete_twice_bumps_revision_once() -> None:
    team = Team.create(TENANT, "Support")
    team.delete()
    team.delete()
    assert team.deleted is True
    assert team.revision == 2


def test_snapshot() -> None:
    team = Team.create(TENANT, "Support")
    team.add_member("usr_1")
    team.add_member("usr_2")
    snapshot = team.snapshot()
    assert isinstance(snapshot, TeamSnapshot)
    assert snapshot.team_id == team.id
    assert snapshot.tenant_id == TENANT
    assert snapshot.name == "Support"
    assert snapshot.members == ("usr_1", "usr_2")
    assert isinstance(snapshot.members, tuple)
    assert snapshot.revision == 3
    assert snapshot.deleted is False
    assert snapshot.key() == team.id


def test_snapshot_members_do_not_follow_later_changes() -> None:
    team = Team.create(TENANT, "Support")
    team.add_member("usr_1")
    snapshot = team.snapshot()
    team.add_member("usr_2")
    assert snapshot.members == ("usr_1",)


def test_snapshot_of_deleted_team_says_deleted() -> None:
    team = Team.create(TENANT, "Support")
    team.delete()
    snapshot = team.snapshot()
    assert snapshot.deleted is True
    assert snapshot.revision == 2
