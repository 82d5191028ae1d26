"""The team read model (parley_shared.channels.KafkaTeamDirectory) without a broker: ``apply``
records as the compacted teams topic delivers them, then ask ``teams_of``.

Security #13 finding 14c: role lookups are indexed by tenant and user instead of scanning every
tenant's teams.
"""

from __future__ import annotations

from parley_events import TeamSnapshot
from parley_shared.channels import KafkaTeamDirectory


def directory() -> KafkaTeamDirectory:
    return KafkaTeamDirectory("127.0.0.1:1", "parley.teams.v1")


def put(
    teams: KafkaTeamDirectory,
    team_id: str,
    tenant: str,
    members: tuple[str, ...],
    revision: int = 1,
    deleted: bool = False,
) -> None:
    snap = TeamSnapshot(
        team_id=team_id, tenant_id=tenant, name=team_id, members=members, revision=revision, deleted=deleted
    )
    teams.apply(team_id.encode(), snap.model_dump_json().encode())


def test_teams_of_is_per_tenant_and_user() -> None:
    teams = directory()
    put(teams, "t1", "acme", ("ann", "bob"))
    put(teams, "t2", "acme", ("ann",))
    put(teams, "t3", "globex", ("ann",))
    assert teams.teams_of("acme", "ann") == {"t1", "t2"}
    assert teams.teams_of("acme", "bob") == {"t1"}
    assert teams.teams_of("globex", "ann") == {"t3"}
    assert teams.teams_of("globex", "bob") == set()
    assert teams.teams_of("initech", "ann") == set()


def test_membership_changes_follow_newer_revisions_only() -> None:
    teams = directory()
    put(teams, "t1", "acme", ("ann", "bob"), revision=2)
    put(teams, "t1", "acme", ("bob",), revision=3)  # ann removed
    assert teams.teams_of("acme", "ann") == set()
    assert teams.teams_of("acme", "bob") == {"t1"}
    put(teams, "t1", "acme", ("ann",), revision=1)  # an older snapshot changes nothing
    assert (teams.teams_of("acme", "ann"), teams.teams_of("acme", "bob")) == (set(), {"t1"})


def test_deleted_team_and_tombstone_remove_membership() -> None:
    teams = directory()
    put(teams, "t1", "acme", ("ann",))
    put(teams, "t2", "acme", ("ann",))
    put(teams, "t1", "acme", ("ann",), revision=2, deleted=True)
    assert teams.teams_of("acme", "ann") == {"t2"}
    teams.apply(b"t2", None)
    assert teams.teams_of("acme", "ann") == set()
    assert teams.size() == 1  # the deleted t1 is still known, as a deleted team


def test_answer_is_a_copy() -> None:
    teams = directory()
    put(teams, "t1", "acme", ("ann",))
    teams.teams_of("acme", "ann").add("t9")
    assert teams.teams_of("acme", "ann") == {"t1"}


class NoScan(dict[str, TeamSnapshot]):
    """The teams by id, refusing to be walked: a lookup may only go through the index."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("a lookup walked every team")

    def values(self):  # type: ignore[no-untyped-def]
        raise AssertionError("a lookup walked every team")

    def items(self):  # type: ignore[no-untyped-def]
        raise AssertionError("a lookup walked every team")


def test_lookup_does_not_scan_other_tenants_teams() -> None:
    """A role lookup reads the (tenant, user) index: the teams by id are never walked."""
    teams = directory()
    for n in range(2_000):
        put(teams, f"other-{n}", f"tenant-{n % 50}", (f"usr-{n}", "ann"))
    put(teams, "mine", "acme", ("ann",))
    teams.by_id = NoScan(teams.by_id)
    assert teams.teams_of("acme", "ann") == {"mine"}
    assert teams.teams_of("tenant-7", "usr-7") == {"other-7"}
    assert teams.teams_of("acme", "usr-7") == set()
