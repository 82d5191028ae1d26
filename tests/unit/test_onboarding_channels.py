"""The channel aggregate (domain/channels.py): connect, settings, access, token lifecycle, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import (
    ChannelConnected,
    ChannelDisconnected,
    ChannelReauthRequired,
    ChannelReconnected,
    ChannelRole,
    ChannelSettingsChanged,
    ChannelSnapshot,
    ChannelStatus,
    ChannelTokenExpiring,
    Provider,
)
from parley_onboarding.domain.channels import (
    ACCESS_FIELDS,
    DEFAULT_AUTO_RESOLVE_S,
    DISPLAY_NAME_MAX,
    SETTING_FIELDS,
    Access,
    Channel,
    channel_id_for,
    lifecycle_events,
)
from parley_onboarding.domain.errors import Conflict, DomainError
from parley_providers import registry
from parley_providers.meta.errors import reauth_reason

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TENANT = "ten_acme"
PAGE = "104512345678901"
ADMIN = "usr_admin"
LEAD = timedelta(days=7)


def connect(**overrides: Any) -> Channel:
    kwargs: dict[str, Any] = {
        "tenant_id": TENANT,
        "provider": Provider.MESSENGER,
        "account_id": PAGE,
        "actor_id": ADMIN,
        "at": T0,
        "display_name": "Acme Support",
    }
    kwargs.update(overrides)
    channel, _ = Channel.connect(**kwargs)
    return channel


# --- identity -----------------------------------------------------------------------------------


def test_channel_id_is_deterministic() -> None:
    first = channel_id_for(TENANT, Provider.MESSENGER, PAGE)
    assert first == channel_id_for(TENANT, Provider.MESSENGER, PAGE)
    assert first.startswith("ch_")
    assert len(first) == len("ch_") + 24


@pytest.mark.parametrize(
    ("tenant", "provider", "account"),
    [
        pytest.param("ten_other", Provider.MESSENGER, PAGE, id="other-tenant"),
        pytest.param(TENANT, Provider.INSTAGRAM, PAGE, id="other-provider"),
        pytest.param(TENANT, Provider.MESSENGER, "999", id="other-account"),
    ],
)
def test_channel_id_differs_per_tenant_provider_and_account(
    tenant: str, provider: Provider, account: str
) -> None:
    assert channel_id_for(tenant, provider, account) != channel_id_for(TENANT, Provider.MESSENGER, PAGE)


def test_channel_id_separator_avoids_collisions() -> None:
    assert channel_id_for("a", Provider.X, "bc") != channel_id_for("ab", Provider.X, "c")


# --- connect ------------------------------------------------------------------------------------


def test_connect_returns_snapshot_then_connected() -> None:
    channel, events = Channel.connect(
        tenant_id=TENANT,
        provider=Provider.MESSENGER,
        account_id=PAGE,
        actor_id=ADMIN,
        at=T0,
        display_name="Acme Support",
        business_account_id="waba_1",
        token_expires_at=T0 + timedelta(days=60),
        scopes=("pages_messaging",),
    )
    assert channel.id == channel_id_for(TENANT, Provider.MESSENGER, PAGE)
    assert channel.revision == 1
    assert channel.status is ChannelStatus.ACTIVE
    assert channel.connected_by == ADMIN
    assert channel.token_expires_at == T0 + timedelta(days=60)
    assert channel.scopes == ("pages_messaging",)
    assert channel.expiry_warned_for is None

    assert [type(e) for e in events] == [ChannelSnapshot, ChannelConnected]
    snapshot, connected = events
    assert isinstance(snapshot, ChannelSnapshot)
    assert isinstance(connected, ChannelConnected)
    assert snapshot.channel_id == channel.id
    assert snapshot.revision == 1
    assert snapshot.status is ChannelStatus.ACTIVE
    assert snapshot.display_name == "Acme Support"
    assert snapshot.business_account_id == "waba_1"
    assert connected.channel_id == channel.id
    assert connected.tenant_id == TENANT
    assert connected.provider is Provider.MESSENGER
    assert connected.account_id == PAGE
    assert connected.display_name == "Acme Support"
    assert connected.actor_id == ADMIN
    assert connected.occurred_at == T0
    assert connected.event_id == f"chev_{channel.id}_1"


def test_connect_defaults() -> None:
    channel = connect(display_name=None)
    assert channel.settings.display_name is None
    assert channel.settings.auto_ownership is True
    assert channel.settings.auto_resolve_new_s == DEFAULT_AUTO_RESOLVE_S == 30 * 24 * 3600
    assert channel.settings.auto_resolve_pending_s == DEFAULT_AUTO_RESOLVE_S
    assert channel.settings.human_agent_tag is False
    assert channel.settings.text_limit is None
    assert channel.settings.mark_read_on_open is False  # a customer's message is read only when asked
    assert channel.access == Access()


def test_connect_twice_gives_same_id_and_event_ids() -> None:
    _, first = Channel.connect(tenant_id=TENANT, provider=Provider.X, account_id="42", actor_id=None, at=T0)
    _, second = Channel.connect(tenant_id=TENANT, provider=Provider.X, account_id="42", actor_id=None, at=T0)
    assert first == second


def test_display_name_of_max_length_accepted() -> None:
    assert DISPLAY_NAME_MAX == 255
    channel = connect(display_name="a" * 255)
    assert channel.settings.display_name == "a" * 255
    assert channel.snapshot().display_name == "a" * 255


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="spaces"),
        pytest.param("\t\n", id="whitespace"),
        pytest.param("a" * 256, id="too-long"),
    ],
)
def test_invalid_display_name_refused_on_connect(name: str) -> None:
    with pytest.raises(DomainError) as exc:
        connect(display_name=name)
    assert exc.value.code == "INVALID_DISPLAY_NAME"
    assert exc.value.details == {"field": "display_name"}


def test_display_name_with_surrounding_spaces_never_breaks_the_snapshot() -> None:
    name = " " + "a" * DISPLAY_NAME_MAX + " "
    outcome: DomainError | ChannelSnapshot
    try:
        outcome = connect(display_name=name).snapshot()
    except DomainError as exc:
        outcome = exc
    # either refused as a domain error, or accepted with a name the snapshot can carry
    if isinstance(outcome, DomainError):
        assert outcome.code == "INVALID_DISPLAY_NAME"
    else:
        assert outcome.display_name is not None
        assert len(outcome.display_name) <= DISPLAY_NAME_MAX


# --- settings -----------------------------------------------------------------------------------


def test_update_settings_names_changed_fields() -> None:
    channel = connect()
    events = channel.update_settings(
        {"display_name": "Acme Help", "auto_ownership": False, "human_agent_tag": False},
        ADMIN,
        T0 + timedelta(minutes=1),
    )
    assert channel.revision == 2
    assert [type(e) for e in events] == [ChannelSnapshot, ChannelSettingsChanged]
    snapshot, changed = events
    assert isinstance(snapshot, ChannelSnapshot)
    assert isinstance(changed, ChannelSettingsChanged)
    # human_agent_tag was already False: not named
    assert changed.changed == ("display_name", "auto_ownership")
    assert changed.actor_id == ADMIN
    assert changed.occurred_at == T0 + timedelta(minutes=1)
    assert changed.event_id == f"chev_{channel.id}_2"
    assert snapshot.revision == 2
    assert snapshot.display_name == "Acme Help"
    assert snapshot.auto_ownership is False


def test_update_settings_changed_follows_field_order() -> None:
    channel = connect()
    events = channel.update_settings({"text_limit": 500, "display_name": "Other"}, ADMIN, T0)
    changed = events[1]
    assert isinstance(changed, ChannelSettingsChanged)
    assert changed.changed == ("display_name", "text_limit")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="empty"),
        pytest.param({"display_name": "Acme Support"}, id="same-name"),
        pytest.param({"auto_ownership": True, "text_limit": None}, id="same-defaults"),
        pytest.param({"auto_resolve_new_s": DEFAULT_AUTO_RESOLVE_S}, id="same-auto-resolve"),
    ],
)
def test_update_settings_without_change_is_a_no_op(changes: dict[str, Any]) -> None:
    channel = connect()
    before = channel.settings
    assert channel.update_settings(changes, ADMIN, T0) == []
    assert channel.revision == 1
    assert channel.settings == before


def test_unknown_setting_refused() -> None:
    channel = connect()
    with pytest.raises(DomainError) as exc:
        channel.update_settings({"display_name": "X", "colour": "red", "access_token": "x"}, ADMIN, T0)
    assert exc.value.code == "UNKNOWN_SETTING"
    assert "access_token" in exc.value.message
    assert "colour" in exc.value.message
    assert channel.settings.display_name == "Acme Support"
    assert channel.revision == 1


@pytest.mark.parametrize("setting", ["auto_resolve_new_s", "auto_resolve_pending_s"])
@pytest.mark.parametrize("value", [0, 1, 59, -60])
def test_auto_resolve_below_a_minute_refused(setting: str, value: int) -> None:
    channel = connect()
    before = channel.settings
    with pytest.raises(DomainError) as exc:
        channel.update_settings({setting: value}, ADMIN, T0)
    assert exc.value.code == "INVALID_SETTING"
    assert exc.value.details == {"field": setting}
    assert channel.settings == before
    assert channel.revision == 1


@pytest.mark.parametrize("setting", ["auto_resolve_new_s", "auto_resolve_pending_s"])
@pytest.mark.parametrize("value", [60, 3600, None])
def test_auto_resolve_of_a_minute_or_off_accepted(setting: str, value: int | None) -> None:
    channel = connect()
    events = channel.update_settings({setting: value}, ADMIN, T0)
    assert getattr(channel.settings, setting) == value
    snapshot = events[0]
    assert isinstance(snapshot, ChannelSnapshot)
    assert getattr(snapshot, setting) == value
    changed = events[1]
    assert isinstance(changed, ChannelSettingsChanged)
    assert changed.changed == (setting,)


@pytest.mark.parametrize("value", [0, -1])
def test_text_limit_must_be_positive(value: int) -> None:
    channel = connect()
    with pytest.raises(DomainError) as exc:
        channel.update_settings({"text_limit": value}, ADMIN, T0)
    assert exc.value.code == "INVALID_SETTING"


@pytest.mark.parametrize("name", ["", "  ", "a" * 256])
def test_update_settings_display_name_rules(name: str) -> None:
    channel = connect()
    with pytest.raises(DomainError) as exc:
        channel.update_settings({"display_name": name}, ADMIN, T0)
    assert exc.value.code == "INVALID_DISPLAY_NAME"
    assert channel.settings.display_name == "Acme Support"
    assert channel.revision == 1


def test_display_name_can_be_cleared() -> None:
    channel = connect()
    events = channel.update_settings({"display_name": None}, ADMIN, T0)
    assert channel.settings.display_name is None
    changed = events[1]
    assert isinstance(changed, ChannelSettingsChanged)
    assert changed.changed == ("display_name",)


# --- access -------------------------------------------------------------------------------------

FULL_ACCESS = Access(
    user_access={"usr_1": ChannelRole.VIEWER, "usr_2": ChannelRole.SUPERVISOR},
    team_access={"team_1": ChannelRole.CONTRIBUTOR},
    all_users_role=ChannelRole.VIEWER,
    all_teams_role=ChannelRole.CONTRIBUTOR,
)


def test_set_access_names_changed_fields() -> None:
    channel = connect()
    events = channel.set_access(FULL_ACCESS, ADMIN, T0)
    assert channel.access == FULL_ACCESS
    assert channel.revision == 2
    snapshot, changed = events
    assert isinstance(snapshot, ChannelSnapshot)
    assert isinstance(changed, ChannelSettingsChanged)
    assert changed.changed == ACCESS_FIELDS
    assert changed.event_id == f"chev_{channel.id}_2"
    assert snapshot.user_access == {"usr_1": ChannelRole.VIEWER, "usr_2": ChannelRole.SUPERVISOR}
    assert snapshot.team_access == {"team_1": ChannelRole.CONTRIBUTOR}
    assert snapshot.all_users_role is ChannelRole.VIEWER
    assert snapshot.all_teams_role is ChannelRole.CONTRIBUTOR


def test_set_access_partial_change() -> None:
    channel = connect()
    channel.set_access(FULL_ACCESS, ADMIN, T0)
    new = Access(
        user_access=dict(FULL_ACCESS.user_access),
        team_access={},
        all_users_role=FULL_ACCESS.all_users_role,
        all_teams_role=None,
    )
    events = channel.set_access(new, ADMIN, T0)
    changed = events[1]
    assert isinstance(changed, ChannelSettingsChanged)
    assert changed.changed == ("team_access", "all_teams_role")
    assert channel.revision == 3


def test_set_access_without_change_is_a_no_op() -> None:
    channel = connect()
    channel.set_access(FULL_ACCESS, ADMIN, T0)
    equal_copy = Access(
        user_access=dict(FULL_ACCESS.user_access),
        team_access=dict(FULL_ACCESS.team_access),
        all_users_role=FULL_ACCESS.all_users_role,
        all_teams_role=FULL_ACCESS.all_teams_role,
    )
    assert channel.set_access(equal_copy, ADMIN, T0) == []
    assert channel.revision == 2
    assert connect().set_access(Access(), ADMIN, T0) == []


# --- token expiry -------------------------------------------------------------------------------


def test_no_warning_before_the_lead_time() -> None:
    channel = connect(token_expires_at=T0 + timedelta(days=30))
    assert channel.check_token_expiry(T0, LEAD) == []
    assert channel.check_token_expiry(T0 + timedelta(days=23) - timedelta(seconds=1), LEAD) == []
    assert channel.revision == 1
    assert channel.expiry_warned_for is None


def test_warns_once_within_the_lead_time() -> None:
    expires = T0 + timedelta(days=30)
    channel = connect(token_expires_at=expires)
    at = expires - LEAD  # exactly at the lead
    events = channel.check_token_expiry(at, LEAD)
    assert len(events) == 2
    assert isinstance(events[0], ChannelSnapshot)
    assert events[0].revision == channel.revision
    warning = events[1]
    assert isinstance(warning, ChannelTokenExpiring)
    assert warning.expires_at == expires
    assert warning.occurred_at == at
    assert warning.actor_id is None
    assert warning.channel_id == channel.id
    assert warning.event_id == f"chev_{channel.id}_2"
    assert channel.revision == 2
    assert channel.expiry_warned_for == expires
    # once per expiry date
    assert channel.check_token_expiry(at + timedelta(days=1), LEAD) == []
    assert channel.check_token_expiry(expires + timedelta(days=1), LEAD) == []
    assert channel.revision == 2


def test_already_expired_token_warns() -> None:
    channel = connect(token_expires_at=T0 - timedelta(days=1))
    assert len(channel.check_token_expiry(T0, LEAD)) == 2


def test_no_warning_without_expiry() -> None:
    channel = connect(token_expires_at=None)
    assert channel.check_token_expiry(T0, LEAD) == []
    assert channel.revision == 1


@pytest.mark.parametrize("make_inactive", ["reauth", "disconnect"])
def test_no_warning_when_not_active(make_inactive: str) -> None:
    channel = connect(token_expires_at=T0 + timedelta(days=1))
    if make_inactive == "reauth":
        channel.require_reauth(190, 463, T0, registry.reauth_reason(channel.provider, 190, 463))
    else:
        channel.disconnect(ADMIN, T0)
    revision = channel.revision
    assert channel.check_token_expiry(T0, LEAD) == []
    assert channel.revision == revision
    assert channel.expiry_warned_for is None


def test_new_expiry_after_reconnect_warns_again() -> None:
    first_expiry = T0 + timedelta(days=3)
    channel = connect(token_expires_at=first_expiry)
    assert len(channel.check_token_expiry(T0, LEAD)) == 2
    channel.reconnect(ADMIN, T0 + timedelta(days=1), first_expiry + timedelta(days=60), ("pages_messaging",))
    assert channel.expiry_warned_for is None
    later = first_expiry + timedelta(days=60) - timedelta(days=2)
    events = channel.check_token_expiry(later, LEAD)
    assert len(events) == 2
    assert isinstance(events[0], ChannelSnapshot)
    assert events[0].revision == channel.revision
    warning = events[1]
    assert isinstance(warning, ChannelTokenExpiring)
    assert warning.expires_at == first_expiry + timedelta(days=60)
    assert channel.check_token_expiry(later, LEAD) == []


def test_reconnect_with_same_expiry_warns_again() -> None:
    expires = T0 + timedelta(days=3)
    channel = connect(token_expires_at=expires)
    assert len(channel.check_token_expiry(T0, LEAD)) == 2
    channel.reconnect(ADMIN, T0, expires, ())
    assert len(channel.check_token_expiry(T0, LEAD)) == 2


# --- reauth -------------------------------------------------------------------------------------

REASONS = [
    pytest.param(190, 463, "token_expired", id="190-463-expired"),
    pytest.param(190, 460, "password_changed", id="190-460-password"),
    pytest.param(190, 458, "app_removed", id="190-458-app-removed"),
    pytest.param(190, 459, "checkpoint", id="190-459-checkpoint"),
    pytest.param(190, 464, "unconfirmed_user", id="190-464-unconfirmed"),
    pytest.param(190, 467, "token_invalid", id="190-467-invalid"),
    pytest.param(190, 492, "page_access_lost", id="190-492-page-access"),
    pytest.param(190, 999, "token_invalid", id="190-unknown-subcode"),
    pytest.param(190, None, "token_invalid", id="190-no-subcode"),
    pytest.param(10, None, "permission_revoked", id="10"),
    pytest.param(10, 463, "permission_revoked", id="10-subcode-ignored"),
    pytest.param(200, None, "permission_revoked", id="200"),
    pytest.param(250, None, "permission_revoked", id="250"),
    pytest.param(299, None, "permission_revoked", id="299"),
    pytest.param(300, None, "provider_rejected_token", id="300"),
    pytest.param(199, None, "provider_rejected_token", id="199"),
    pytest.param(102, None, "provider_rejected_token", id="102"),
    pytest.param(None, None, "provider_rejected_token", id="none"),
    pytest.param(None, 463, "provider_rejected_token", id="subcode-without-code"),
]


@pytest.mark.parametrize(("code", "subcode", "reason"), REASONS)
def test_reauth_reason(code: int | None, subcode: int | None, reason: str) -> None:
    assert reauth_reason(code, subcode) == reason


@pytest.mark.parametrize(("code", "subcode", "reason"), REASONS)
def test_require_reauth(code: int | None, subcode: int | None, reason: str) -> None:
    channel = connect()
    at = T0 + timedelta(hours=1)
    events = channel.require_reauth(
        code, subcode, at, registry.reauth_reason(channel.provider, code, subcode)
    )
    assert channel.status is ChannelStatus.REAUTH_REQUIRED
    assert channel.revision == 2
    assert [type(e) for e in events] == [ChannelSnapshot, ChannelReauthRequired]
    snapshot, event = events
    assert isinstance(snapshot, ChannelSnapshot)
    assert isinstance(event, ChannelReauthRequired)
    assert snapshot.status is ChannelStatus.REAUTH_REQUIRED
    assert snapshot.revision == 2
    assert event.reason == reason
    assert event.provider_code == code
    assert event.provider_subcode == subcode
    assert event.actor_id is None
    assert event.occurred_at == at
    assert event.event_id == f"chev_{channel.id}_2"


def test_require_reauth_is_idempotent() -> None:
    channel = connect()
    channel.require_reauth(190, 463, T0, registry.reauth_reason(channel.provider, 190, 463))
    assert channel.require_reauth(190, 460, T0, registry.reauth_reason(channel.provider, 190, 460)) == []
    assert channel.status is ChannelStatus.REAUTH_REQUIRED
    assert channel.revision == 2


def test_require_reauth_on_disconnected_channel_is_ignored() -> None:
    channel = connect()
    channel.disconnect(ADMIN, T0)
    assert channel.require_reauth(190, 463, T0, registry.reauth_reason(channel.provider, 190, 463)) == []
    assert channel.status is ChannelStatus.DISCONNECTED
    assert channel.revision == 2


# --- reconnect ----------------------------------------------------------------------------------


def test_reconnect_keeps_settings_and_access_and_restores_active() -> None:
    channel = connect(token_expires_at=T0 + timedelta(days=2), scopes=("old",))
    channel.update_settings(
        {"display_name": "Kept", "auto_resolve_new_s": None, "text_limit": 300}, ADMIN, T0
    )
    channel.set_access(FULL_ACCESS, ADMIN, T0)
    channel.check_token_expiry(T0, LEAD)
    channel.require_reauth(190, 463, T0, registry.reauth_reason(channel.provider, 190, 463))
    settings, access, revision = channel.settings, channel.access, channel.revision

    at = T0 + timedelta(days=1)
    new_expiry = T0 + timedelta(days=61)
    events = channel.reconnect("usr_other_admin", at, new_expiry, ("pages_messaging", "pages_read"))
    assert channel.status is ChannelStatus.ACTIVE
    assert channel.settings == settings
    assert channel.access == access
    assert channel.token_expires_at == new_expiry
    assert channel.scopes == ("pages_messaging", "pages_read")
    assert channel.expiry_warned_for is None
    assert channel.connected_by == "usr_other_admin"
    assert channel.revision == revision + 1
    assert [type(e) for e in events] == [ChannelSnapshot, ChannelReconnected]
    snapshot, reconnected = events
    assert isinstance(snapshot, ChannelSnapshot)
    assert isinstance(reconnected, ChannelReconnected)
    assert snapshot.status is ChannelStatus.ACTIVE
    assert snapshot.display_name == "Kept"
    assert snapshot.auto_resolve_new_s is None
    assert snapshot.text_limit == 300
    assert snapshot.user_access == dict(FULL_ACCESS.user_access)
    assert snapshot.revision == revision + 1
    assert reconnected.actor_id == "usr_other_admin"
    assert reconnected.occurred_at == at
    assert reconnected.event_id == f"chev_{channel.id}_{revision + 1}"


def test_reconnect_after_disconnect_restores_active() -> None:
    channel = connect()
    channel.disconnect(ADMIN, T0)
    channel.reconnect(ADMIN, T0, None, ())
    assert channel.status is ChannelStatus.ACTIVE
    assert channel.revision == 3


# --- disconnect ---------------------------------------------------------------------------------


def test_disconnect_is_idempotent() -> None:
    channel = connect()
    at = T0 + timedelta(hours=2)
    events = channel.disconnect(ADMIN, at)
    assert channel.status is ChannelStatus.DISCONNECTED
    assert channel.revision == 2
    assert [type(e) for e in events] == [ChannelSnapshot, ChannelDisconnected]
    snapshot, disconnected = events
    assert isinstance(snapshot, ChannelSnapshot)
    assert snapshot.status is ChannelStatus.DISCONNECTED
    assert disconnected.actor_id == ADMIN
    assert disconnected.occurred_at == at
    assert disconnected.event_id == f"chev_{channel.id}_2"

    assert channel.disconnect(ADMIN, at + timedelta(hours=1)) == []
    assert channel.revision == 2
    assert channel.status is ChannelStatus.DISCONNECTED


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update_settings({"display_name": "Taken over"}, ADMIN, T0),
        lambda c: c.update_settings({"auto_ownership": False}, ADMIN, T0),
        lambda c: c.set_access(Access(all_users_role=ChannelRole.CONTRIBUTOR), ADMIN, T0),
        lambda c: c.set_access(Access(), ADMIN, T0),  # even a change that changes nothing
    ],
    ids=["display_name", "auto_ownership", "access", "access-unchanged"],
)
def test_a_disconnected_channel_refuses_settings_and_access_changes(change: Any) -> None:
    channel = connect()
    channel.disconnect(ADMIN, T0)
    before = channel.snapshot()
    with pytest.raises(Conflict) as refused:
        change(channel)
    assert (refused.value.code, refused.value.status) == ("CHANNEL_DISCONNECTED", 409)
    # nothing changed, so nothing would be published
    assert channel.snapshot() == before


def test_a_reconnected_channel_accepts_changes_again() -> None:
    channel = connect()
    channel.disconnect(ADMIN, T0)
    channel.reconnect(ADMIN, T0, None, ())
    assert [type(e) for e in channel.update_settings({"display_name": "Back"}, ADMIN, T0)] == [
        ChannelSnapshot,
        ChannelSettingsChanged,
    ]


def test_disconnect_from_reauth_required() -> None:
    channel = connect()
    channel.require_reauth(190, 460, T0, registry.reauth_reason(channel.provider, 190, 460))
    assert len(channel.disconnect(ADMIN, T0)) == 2
    assert channel.status is ChannelStatus.DISCONNECTED


# --- snapshot and event ids ---------------------------------------------------------------------


def test_snapshot_carries_every_setting_and_access_field() -> None:
    channel = connect(business_account_id="waba_9", provider=Provider.WHATSAPP, account_id="pn_1")
    channel.update_settings(
        {
            "display_name": "Every Field",
            "auto_ownership": False,
            "auto_resolve_new_s": 120,
            "auto_resolve_pending_s": None,
            "human_agent_tag": True,
            "text_limit": 640,
            "mark_read_on_open": True,
        },
        ADMIN,
        T0,
    )
    channel.set_access(FULL_ACCESS, ADMIN, T0)
    snapshot = channel.snapshot()
    for name in SETTING_FIELDS:
        assert getattr(snapshot, name) == getattr(channel.settings, name), name
    for name in ACCESS_FIELDS:
        value = getattr(channel.access, name)
        expected = dict(value) if isinstance(value, dict) else value
        assert getattr(snapshot, name) == expected, name
    assert snapshot.channel_id == channel.id
    assert snapshot.tenant_id == TENANT
    assert snapshot.provider is Provider.WHATSAPP
    assert snapshot.mark_read_on_open is True
    assert snapshot.account_id == "pn_1"
    assert snapshot.business_account_id == "waba_9"
    assert snapshot.status is ChannelStatus.ACTIVE
    assert snapshot.revision == 3
    assert snapshot.key() == channel.id


def test_snapshot_never_carries_credentials() -> None:
    channel = connect(token_expires_at=T0, scopes=("pages_messaging",))
    dumped = channel.snapshot().model_dump()
    assert not {"access_token", "token", "scopes", "token_expires_at"} & set(dumped)


def test_snapshot_access_is_a_copy() -> None:
    channel = connect()
    channel.set_access(FULL_ACCESS, ADMIN, T0)
    snapshot = channel.snapshot()
    assert snapshot.user_access is not channel.access.user_access


def test_event_ids_deterministic_per_revision() -> None:
    def history() -> list[str]:
        channel = connect(token_expires_at=T0 + timedelta(days=1))
        events = [
            *channel.update_settings({"display_name": "Two"}, ADMIN, T0),
            *channel.set_access(FULL_ACCESS, ADMIN, T0),
            *channel.check_token_expiry(T0, LEAD),
            *channel.require_reauth(190, 463, T0, registry.reauth_reason(channel.provider, 190, 463)),
            *channel.reconnect(ADMIN, T0, None, ()),
            *channel.disconnect(ADMIN, T0),
        ]
        return [e.event_id for e in lifecycle_events(events)]

    ids = history()
    channel_id = channel_id_for(TENANT, Provider.MESSENGER, PAGE)
    assert ids == [f"chev_{channel_id}_{revision}" for revision in range(2, 8)]
    assert ids == history()
    assert len(set(ids)) == len(ids)


def test_lifecycle_events_drops_snapshots() -> None:
    _, events = Channel.connect(tenant_id=TENANT, provider=Provider.X, account_id="1", actor_id=None, at=T0)
    lifecycle = lifecycle_events(events)
    assert [type(e) for e in lifecycle] == [ChannelConnected]


def test_a_refused_send_records_the_restriction_until_a_reconnect() -> None:
    channel, _ = Channel.connect(
        tenant_id=TENANT, provider=Provider.MESSENGER, account_id=PAGE, actor_id=ADMIN, at=T0
    )
    assert channel.sending_restricted is None
    assert channel.sends_refused(T0 + timedelta(minutes=1), 10, 1893063)
    assert channel.revision == 2
    assert channel.sends_refused(T0 + timedelta(minutes=5), 10, 1893063)
    restriction = channel.sending_restricted
    assert restriction is not None
    # the spell's start is kept, the latest refusal is the newest news
    assert (restriction.since, restriction.last_refused_at) == (
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=5),
    )
    assert (restriction.provider_code, restriction.provider_subcode) == (10, 1893063)
    # older news (a redelivery, or a reply refused earlier and reported late) changes nothing
    assert not channel.sends_refused(T0 + timedelta(minutes=2), 10, 1893063)
    assert channel.sending_restricted == restriction and channel.revision == 3

    channel.reconnect(ADMIN, T0 + timedelta(hours=1), None, ())
    assert channel.sending_restricted is None
    channel.disconnect(ADMIN, T0 + timedelta(hours=2))
    assert not channel.sends_refused(T0 + timedelta(hours=3), 10, 1893063)
    assert channel.sending_restricted is None
