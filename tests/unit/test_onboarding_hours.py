"""Business hours and the away message in onboarding: the settings, the snapshot, the hours job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import BusinessHours, ChannelHoursChanged, ChannelRole, ChannelSnapshot, Provider
from parley_onboarding.adapters.stores import channel_from_doc, channel_to_doc, team_from_doc, team_to_doc
from parley_onboarding.domain.channels import Access, Channel, team_hours_for
from parley_onboarding.domain.errors import DomainError
from parley_onboarding.domain.teams import Team

from tests.unit.test_onboarding_service import ACME, ADMIN, Harness

pytestmark = pytest.mark.unit

# 2026-11-27 is a Friday; Berlin is UTC+1 in November
FRIDAY_NOON = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
FRIDAY_CLOSE = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)  # 17:00 local
MONDAY_OPEN = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 local

OFFICE = BusinessHours.model_validate(
    {
        "time_zone": "Europe/Berlin",
        "intervals": [
            {"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")
        ],
        "holidays": ["2026-12-25"],
    }
)


def connect(provider: Provider = Provider.MESSENGER, at: datetime = FRIDAY_NOON) -> Channel:
    channel, _ = Channel.connect(
        tenant_id=ACME, provider=provider, account_id="acct_1", actor_id=ADMIN, at=at, display_name="Acme"
    )
    return channel


# --- the aggregate --------------------------------------------------------------------------------


def test_a_schedule_is_published_with_the_snapshot() -> None:
    channel = connect()
    events = channel.update_settings(
        {"business_hours": OFFICE, "away_message": "  We are closed.  "}, ADMIN, FRIDAY_NOON
    )
    [snapshot] = [e for e in events if isinstance(e, ChannelSnapshot)]
    assert snapshot.business_hours == OFFICE
    assert snapshot.away_message == "We are closed."
    assert connect().snapshot().business_hours is None


def test_a_blank_away_message_is_refused_naming_the_field() -> None:
    with pytest.raises(DomainError) as caught:
        connect().update_settings({"away_message": "   "}, ADMIN, FRIDAY_NOON)
    assert caught.value.details["field"] == "away_message"


def test_tracking_announces_each_change_once() -> None:
    channel = connect()
    channel.update_settings({"business_hours": OFFICE}, ADMIN, FRIDAY_NOON)
    [_, opened] = channel.track_hours(FRIDAY_NOON)
    assert isinstance(opened, ChannelHoursChanged)
    assert (opened.open, opened.occurred_at, opened.next_change_at) == (
        True,
        datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
        FRIDAY_CLOSE,
    )
    assert channel.track_hours(FRIDAY_NOON + timedelta(hours=1)) == []
    [_, closed] = channel.track_hours(FRIDAY_CLOSE + timedelta(seconds=30))
    assert isinstance(closed, ChannelHoursChanged)
    assert (closed.open, closed.occurred_at, closed.next_change_at) == (False, FRIDAY_CLOSE, MONDAY_OPEN)
    assert channel.track_hours(datetime(2026, 11, 28, 12, tzinfo=UTC)) == []  # still closed on Saturday


def test_the_same_change_announced_twice_has_the_same_id() -> None:
    one, two = connect(), connect()
    for channel in (one, two):
        channel.update_settings({"business_hours": OFFICE}, ADMIN, FRIDAY_NOON)
    first = one.track_hours(FRIDAY_CLOSE + timedelta(seconds=5))[1]
    second = two.track_hours(FRIDAY_CLOSE + timedelta(seconds=50))[1]
    assert isinstance(first, ChannelHoursChanged) and isinstance(second, ChannelHoursChanged)
    assert first.event_id == second.event_id


def test_a_channel_without_a_schedule_announces_nothing_and_removing_one_reopens_it() -> None:
    channel = connect()
    assert channel.track_hours(FRIDAY_CLOSE + timedelta(hours=1)) == []
    channel.update_settings({"business_hours": OFFICE}, ADMIN, FRIDAY_NOON)
    [_, closed] = channel.track_hours(FRIDAY_CLOSE + timedelta(hours=1))
    assert isinstance(closed, ChannelHoursChanged) and not closed.open
    channel.update_settings({"business_hours": None}, ADMIN, FRIDAY_CLOSE + timedelta(hours=2))
    [_, reopened] = channel.track_hours(FRIDAY_CLOSE + timedelta(hours=2))
    assert isinstance(reopened, ChannelHoursChanged)
    assert (reopened.open, reopened.next_change_at) == (True, None)


def test_the_stored_document_keeps_the_schedule_and_the_announced_state() -> None:
    channel = connect()
    channel.update_settings({"business_hours": OFFICE, "away_message": "Back Monday"}, ADMIN, FRIDAY_NOON)
    channel.track_hours(FRIDAY_NOON)
    doc: dict[str, Any] = channel_to_doc(channel)
    assert doc["settings"]["business_hours"]["holidays"] == ["2026-12-25"]  # plain JSON for either store
    back = channel_from_doc(doc)
    assert back.settings == channel.settings
    assert back.hours_open is True


# --- the service ----------------------------------------------------------------------------------


async def test_setting_hours_out_of_hours_announces_closed_at_once_and_the_job_announces_the_opening() -> (
    None
):
    h = Harness()
    h.now = FRIDAY_CLOSE + timedelta(hours=2)
    channel = await h.service._upsert_connected(
        tenant_id=ACME, provider=Provider.MESSENGER, account_id="acct_1", actor_id=ADMIN, credential=None
    )
    saved = await h.service.update_settings(ACME, channel.id, {"business_hours": OFFICE}, ADMIN)
    assert saved.hours_open is False
    [closed] = h.of(ChannelHoursChanged)
    assert not closed.open
    assert h.of(ChannelSnapshot)[-1].business_hours == OFFICE

    assert await h.service.track_business_hours() == 0  # nothing changed since
    h.now = MONDAY_OPEN + timedelta(seconds=20)
    assert await h.service.track_business_hours() == 1
    assert await h.service.track_business_hours() == 0  # another replica's tick finds it announced
    opened = h.of(ChannelHoursChanged)[-1]
    assert (opened.open, opened.occurred_at) == (True, MONDAY_OPEN)


async def test_an_away_message_longer_than_the_providers_reply_is_refused() -> None:
    h = Harness()
    channel = await h.service._upsert_connected(
        tenant_id=ACME, provider=Provider.X, account_id="x_1", actor_id=ADMIN, credential=None
    )
    with pytest.raises(DomainError) as caught:
        # X counts a post reply's 280 by weight: CJK characters count two
        await h.service.update_settings(ACME, channel.id, {"away_message": "休" * 141}, ADMIN)
    assert caught.value.details["field"] == "away_message"
    saved = await h.service.update_settings(ACME, channel.id, {"away_message": "休" * 140}, ADMIN)
    assert saved.settings.away_message == "休" * 140


async def test_an_away_message_longer_than_the_channels_own_limit_is_refused() -> None:
    h = Harness()
    channel = await h.service._upsert_connected(
        tenant_id=ACME, provider=Provider.MESSENGER, account_id="p_1", actor_id=ADMIN, credential=None
    )
    await h.service.update_settings(ACME, channel.id, {"text_limit": 20}, ADMIN)
    with pytest.raises(DomainError) as caught:
        await h.service.update_settings(ACME, channel.id, {"away_message": "x" * 21}, ADMIN)
    assert caught.value.details["field"] == "away_message"


# --- team schedules ---------------------------------------------------------------------------------

EARLY = BusinessHours.model_validate(
    {"time_zone": "UTC", "intervals": [{"day": "mon", "start": "06:00", "end": "14:00"}]}
)


def team(team_id: str, hours: BusinessHours | None, deleted: bool = False) -> Team:
    return Team(id=team_id, tenant_id=ACME, name=team_id, business_hours=hours, deleted=deleted)


def test_of_several_teams_the_one_with_the_highest_role_gives_the_schedule() -> None:
    teams = {"t_a": team("t_a", OFFICE), "t_b": team("t_b", EARLY), "t_c": team("t_c", None)}
    access = Access(
        team_access={"t_a": ChannelRole.VIEWER, "t_b": ChannelRole.CONTRIBUTOR, "t_c": ChannelRole.SUPERVISOR}
    )
    assert team_hours_for(access, teams) == EARLY  # t_c supervises but has no schedule
    tie = Access(team_access={"t_b": ChannelRole.VIEWER, "t_a": ChannelRole.VIEWER})
    assert team_hours_for(tie, teams) == OFFICE  # equal roles: the lowest team id
    gone = {**teams, "t_b": team("t_b", EARLY, deleted=True)}
    assert team_hours_for(access, gone) == OFFICE
    assert team_hours_for(Access(all_teams_role=ChannelRole.SUPERVISOR), teams) is None


async def test_a_channel_takes_its_teams_schedule_unless_it_has_its_own() -> None:
    h = Harness()
    h.now = FRIDAY_NOON
    channel = await h.service._upsert_connected(
        tenant_id=ACME, provider=Provider.MESSENGER, account_id="acct_1", actor_id=ADMIN, credential=None
    )
    support = await h.service.create_team(ACME, "Support")
    await h.service.set_access(
        ACME, channel.id, Access(team_access={support.id: ChannelRole.CONTRIBUTOR}), ADMIN
    )
    assert h.of(ChannelSnapshot)[-1].business_hours is None

    await h.service.set_team_hours(ACME, support.id, OFFICE)
    assert h.of(ChannelSnapshot)[-1].business_hours == OFFICE
    assert h.of(ChannelHoursChanged)[-1].open is True  # Friday noon in Berlin

    await h.service.update_settings(ACME, channel.id, {"business_hours": EARLY}, ADMIN)
    assert h.of(ChannelSnapshot)[-1].business_hours == EARLY  # its own wins
    assert h.of(ChannelHoursChanged)[-1].open is False  # EARLY opens on Mondays only
    await h.service.set_team_hours(ACME, support.id, None)
    assert h.of(ChannelSnapshot)[-1].business_hours == EARLY
    await h.service.set_team_hours(ACME, support.id, OFFICE)
    await h.service.update_settings(ACME, channel.id, {"business_hours": None}, ADMIN)
    assert h.of(ChannelSnapshot)[-1].business_hours == OFFICE  # the team's again

    await h.service.delete_team(ACME, support.id)
    assert h.of(ChannelSnapshot)[-1].business_hours is None
    assert h.of(ChannelHoursChanged)[-1].open is True  # no schedule: always open


def test_the_stored_documents_keep_the_team_schedule() -> None:
    support = team("t_a", EARLY)
    assert team_from_doc(team_to_doc(support)).business_hours == EARLY
    channel = connect()
    channel.inherit_hours(EARLY, FRIDAY_NOON)
    assert channel_from_doc(channel_to_doc(channel)).team_hours == EARLY
