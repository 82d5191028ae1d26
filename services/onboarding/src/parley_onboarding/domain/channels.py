"""The channel aggregate (pure): identity, settings, access, token lifecycle, and its events.

Every change bumps ``revision`` and returns the events to publish: the full snapshot for the
compacted ``parley.channels.v1`` and a lifecycle event for ``parley.channel-events.v1``.
Credentials are not part of the aggregate: only their expiry and scopes are (the adapter keeps
the encrypted token beside it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from parley_events import (
    BusinessHours,
    ChannelConnected,
    ChannelDisconnected,
    ChannelHoursChanged,
    ChannelLifecycleEvent,
    ChannelReauthRequired,
    ChannelReconnected,
    ChannelRole,
    ChannelSettingsChanged,
    ChannelSnapshot,
    ChannelStatus,
    ChannelSubscriptionLost,
    ChannelSubscriptionRepaired,
    ChannelTokenExpiring,
    Event,
    Provider,
)
from parley_events.hours import current_period

from parley_onboarding.domain.errors import Conflict, DomainError
from parley_onboarding.domain.teams import Team

DISPLAY_NAME_MAX = 255
DEFAULT_AUTO_RESOLVE_S = 30 * 24 * 3600
X_APIS = ("activity", "account_activity")
"""X's delivery APIs a channel may use: the X Activity API, and the Account Activity API X ends on
2027-01-01. An X channel stored before the ``x_api`` setting existed was subscribed through the
second, and reads as it."""
SETTING_FIELDS = (
    "display_name",
    "auto_ownership",
    "auto_resolve_new_s",
    "auto_resolve_pending_s",
    "human_agent_tag",
    "text_limit",
    "business_hours",
    "away_message",
    "mark_read_on_open",
)
AWAY_MESSAGE_MAX = 4096
"""The snapshot's bound; the provider's own, smaller limits are checked by the service at save."""
ACCESS_FIELDS = ("user_access", "team_access", "all_users_role", "all_teams_role")


def channel_id_for(tenant_id: str, provider: Provider, account_id: str) -> str:
    """Deterministic: reconnecting the same account in the same tenant finds the same channel."""
    digest = hashlib.sha256(f"{tenant_id}\x1f{provider.value}\x1f{account_id}".encode()).hexdigest()[:24]
    return f"ch_{digest}"


@dataclass(frozen=True, slots=True)
class Settings:
    """What admins set per channel."""

    display_name: str | None = None
    auto_ownership: bool = True
    auto_resolve_new_s: int | None = DEFAULT_AUTO_RESOLVE_S
    auto_resolve_pending_s: int | None = DEFAULT_AUTO_RESOLVE_S
    human_agent_tag: bool = False
    text_limit: int | None = None
    mark_read_on_open: bool = False
    """WhatsApp: an agent who may reply opening a conversation marks its last customer message read."""
    x_api: str | None = None
    """X only: the delivery API its subscriptions use (None on an X channel: ``account_activity``)."""
    business_hours: BusinessHours | None = None
    """None: no schedule, always open (docs/onboarding.md, "Business hours")."""
    away_message: str | None = None
    """Sent once per conversation per closed period to a customer who writes out of hours."""

    def validated(self) -> Settings:
        if self.display_name is not None:
            name = self.display_name.strip()
            if name != self.display_name:
                return replace(self, display_name=name).validated()
            if not name:
                raise DomainError(
                    "INVALID_DISPLAY_NAME", "display_name cannot be blank", field="display_name"
                )
            if len(name) > DISPLAY_NAME_MAX:
                raise DomainError(
                    "INVALID_DISPLAY_NAME",
                    f"display_name is at most {DISPLAY_NAME_MAX} characters",
                    field="display_name",
                )
        for name, value in (
            ("auto_resolve_new_s", self.auto_resolve_new_s),
            ("auto_resolve_pending_s", self.auto_resolve_pending_s),
        ):
            if value is not None and value < 60:
                raise DomainError(
                    "INVALID_SETTING", f"{name} is at least 60 seconds, or null for off", field=name
                )
        if self.text_limit is not None and self.text_limit < 1:
            raise DomainError("INVALID_SETTING", "text_limit must be positive", field="text_limit")
        if self.away_message is not None:
            text = self.away_message.strip()
            if not text:
                raise DomainError(
                    "INVALID_SETTING", "away_message cannot be blank (null removes it)", field="away_message"
                )
            if len(text) > AWAY_MESSAGE_MAX:
                raise DomainError(
                    "INVALID_SETTING",
                    f"away_message is at most {AWAY_MESSAGE_MAX} characters",
                    field="away_message",
                    limit=AWAY_MESSAGE_MAX,
                )
            if text != self.away_message:
                return replace(self, away_message=text).validated()
        if self.x_api is not None and self.x_api not in X_APIS:
            raise DomainError("INVALID_SETTING", f"x_api is one of {', '.join(X_APIS)}", field="x_api")
        return self


@dataclass(frozen=True, slots=True)
class SendingRestriction:
    """The provider refuses the account's sends for now (Meta's 10/1893063: the Page is restricted).

    Parley hears of it only when a send is refused (policy's ``ChannelSendingRestricted``), never
    when it lifts: ``last_refused_at`` says how recent the news is.
    """

    since: datetime
    """The first refused send of this spell."""
    last_refused_at: datetime
    provider_code: int | None = None
    provider_subcode: int | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use the channel."""

    user_access: Mapping[str, ChannelRole] = field(default_factory=dict)
    team_access: Mapping[str, ChannelRole] = field(default_factory=dict)
    all_users_role: ChannelRole | None = None
    all_teams_role: ChannelRole | None = None


@dataclass
class Channel:
    """One connected account: a Facebook Page, an Instagram profile, an X handle or a WhatsApp number."""

    id: str
    tenant_id: str
    provider: Provider
    account_id: str
    status: ChannelStatus
    connected_by: str | None
    business_account_id: str | None = None
    settings: Settings = field(default_factory=Settings)
    access: Access = field(default_factory=Access)
    token_expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    expiry_warned_for: datetime | None = None
    connect_path: str | None = None
    """How the account was connected where a provider has several ways: an Instagram profile
    through its Facebook Page (``page``) or with Instagram Login (``instagram_login``)."""
    subscription_gap: tuple[str, ...] = ()
    """What the last subscription check found missing and could not restore (announced once, on
    the change from complete; empty while the subscriptions are whole)."""
    throughput_level: str | None = None
    """WhatsApp: the number's throughput level as the provider last reported it (None: unknown)."""
    coexistence: bool = False
    """WhatsApp: the number is also used in the WhatsApp Business app."""
    business_portfolio_id: str | None = None
    """WhatsApp: the business portfolio owning the WABA, whose numbers share one messaging limit
    (None: unknown)."""
    sending_restricted: SendingRestriction | None = None
    """The provider refused a send because the account may not send for now; cleared by a
    reconnect (a send refused after it records it again)."""
    account_name: str | None = None
    """The account's public name on its provider, which its address is made of: an Instagram
    username, an X handle (without ``@``), a WhatsApp number (E.164). None for a Facebook Page
    (its id is its address) and for a channel connected before it was recorded, until a reconnect."""
    hours_open: bool | None = None
    """The business-hours state last announced (``channel.hours_changed``); None: never announced."""
    team_hours: BusinessHours | None = None
    """The schedule the channel takes from its teams (:func:`team_hours_for`), in force while it
    has none of its own."""
    revision: int = 0

    @classmethod
    def connect(
        cls,
        *,
        tenant_id: str,
        provider: Provider,
        account_id: str,
        actor_id: str | None,
        at: datetime,
        display_name: str | None = None,
        business_account_id: str | None = None,
        token_expires_at: datetime | None = None,
        scopes: tuple[str, ...] = (),
        connect_path: str | None = None,
        x_api: str | None = None,
    ) -> tuple[Channel, list[Event]]:
        channel = cls(
            id=channel_id_for(tenant_id, provider, account_id),
            tenant_id=tenant_id,
            provider=provider,
            account_id=account_id,
            status=ChannelStatus.ACTIVE,
            connected_by=actor_id,
            business_account_id=business_account_id,
            settings=Settings(display_name=display_name, x_api=x_api).validated(),
            token_expires_at=token_expires_at,
            scopes=scopes,
            connect_path=connect_path,
        )
        channel.revision = 1
        event = ChannelConnected(
            **channel._base(at, actor_id), account_id=account_id, display_name=channel.settings.display_name
        )
        return channel, [channel.snapshot(), event]

    def update_settings(self, changes: Mapping[str, Any], actor_id: str, at: datetime) -> list[Event]:
        self._require_connected()
        unknown = set(changes) - set(SETTING_FIELDS)
        if unknown:
            raise DomainError("UNKNOWN_SETTING", f"unknown settings: {', '.join(sorted(unknown))}")
        updated = replace(self.settings, **changes).validated()
        changed = tuple(f for f in SETTING_FIELDS if getattr(updated, f) != getattr(self.settings, f))
        if not changed:
            return []
        self.settings = updated
        return self._changed(changed, actor_id, at)

    def set_access(self, access: Access, actor_id: str, at: datetime) -> list[Event]:
        self._require_connected()
        changed = tuple(f for f in ACCESS_FIELDS if getattr(access, f) != getattr(self.access, f))
        if not changed:
            return []
        self.access = access
        return self._changed(changed, actor_id, at)

    def use_x_api(self, api: str, actor_id: str, at: datetime) -> list[Event]:
        """Record the X delivery API the channel's subscriptions now use (the service subscribes
        through it first). Not in the snapshot: only onboarding acts on it."""
        self._require_connected()
        if self.provider is not Provider.X:
            raise DomainError("UNKNOWN_SETTING", "x_api is a setting of X channels", field="x_api")
        updated = replace(self.settings, x_api=api).validated()
        if updated.x_api == self.x_api:
            return []
        self.settings = updated
        return self._changed(("x_api",), actor_id, at)

    @property
    def x_api(self) -> str | None:
        """The X delivery API of an X channel (``account_activity`` if it predates the setting)."""
        if self.provider is not Provider.X:
            return None
        return self.settings.x_api or X_APIS[1]

    def check_token_expiry(self, now: datetime, lead: timedelta) -> list[Event]:
        """Warn once per expiry date when the token expires within ``lead``."""
        expires = self.token_expires_at
        if self.status is not ChannelStatus.ACTIVE or expires is None or expires - now > lead:
            return []
        if self.expiry_warned_for == expires:
            return []
        self.expiry_warned_for = expires
        self.revision += 1
        # the snapshot goes out too, so consumers see every revision
        return [self.snapshot(), ChannelTokenExpiring(**self._base(now, None), expires_at=expires)]

    @property
    def hours_in_force(self) -> BusinessHours | None:
        """The channel's own schedule, else its team's (None: always open)."""
        return self.settings.business_hours or self.team_hours

    def inherit_hours(self, hours: BusinessHours | None, at: datetime) -> list[Event]:
        """Take the schedule of the channel's teams (:func:`team_hours_for`); a new snapshot when
        the schedule in force changes."""
        self._require_connected()
        if hours == self.team_hours:
            return []
        before = self.hours_in_force
        self.team_hours = hours
        if self.hours_in_force == before:
            self.revision += 1  # kept for later (the channel's own schedule is in force)
            return [self.snapshot()]
        return self._changed(("business_hours",), None, at)

    def track_hours(self, now: datetime) -> list[Event]:
        """Announce the business hours' state when it differs from the one last announced (the
        hours job calls this at every tick; a channel with no schedule is always open).

        The event id names the channel and the instant the state began, so a replica that
        announces the same opening again (its save lost the race) publishes a duplicate the
        consumers drop."""
        if self.status is not ChannelStatus.ACTIVE:
            return []
        hours = self.hours_in_force
        is_open, since, until = current_period(hours, now)
        if self.hours_open is is_open or (hours is None and self.hours_open is None):
            return []
        self.hours_open = is_open
        self.revision += 1
        at = since or now
        state = "open" if is_open else "closed"
        return [
            self.snapshot(),
            ChannelHoursChanged(
                **{**self._base(at, None), "event_id": f"hours_{self.id}_{state}_{at:%Y%m%dT%H%M%S}"},
                open=is_open,
                next_change_at=until,
            ),
        ]

    def record_throughput(self, level: str | None, coexistence: bool) -> list[Event]:
        """The provider's word on how fast the number may send (WhatsApp): a new snapshot when it
        changed, nothing otherwise."""
        if (self.throughput_level, self.coexistence) == (level, coexistence):
            return []
        self.throughput_level = level
        self.coexistence = coexistence
        self.revision += 1
        return [self.snapshot()]

    def record_business_portfolio(self, business_portfolio_id: str) -> list[Event]:
        """The business portfolio that owns the number's account, read from the provider
        (WhatsApp): a new snapshot when it changed (policy then counts the messaging limit for
        the portfolio), nothing otherwise."""
        if self.business_portfolio_id == business_portfolio_id:
            return []
        self.business_portfolio_id = business_portfolio_id
        self.revision += 1
        return [self.snapshot()]

    def require_reauth(self, code: int | None, subcode: int | None, at: datetime, reason: str) -> list[Event]:
        """The provider rejected the token: the channel waits for a reconnect (idempotent).

        ``reason`` is the provider's reading of its code and subcode (its plugin's reauth_reason)."""
        if self.status in (ChannelStatus.REAUTH_REQUIRED, ChannelStatus.DISCONNECTED):
            return []
        self.status = ChannelStatus.REAUTH_REQUIRED
        self.revision += 1
        return [
            self.snapshot(),
            ChannelReauthRequired(
                **self._base(at, None),
                reason=reason,
                provider_code=code,
                provider_subcode=subcode,
            ),
        ]

    def reconnect(
        self, actor_id: str, at: datetime, token_expires_at: datetime | None, scopes: tuple[str, ...]
    ) -> list[Event]:
        """A fresh token restores the channel; settings, access and history are untouched."""
        self.status = ChannelStatus.ACTIVE
        self.token_expires_at = token_expires_at
        self.scopes = scopes
        self.expiry_warned_for = None
        self.connected_by = actor_id
        self.sending_restricted = None
        self.revision += 1
        return [self.snapshot(), ChannelReconnected(**self._base(at, actor_id))]

    def sends_refused(self, at: datetime, provider_code: int | None, provider_subcode: int | None) -> bool:
        """A send was refused because the provider restricts the account: record it (False: no
        change, as for a disconnected channel or news older than what is recorded)."""
        if self.status is ChannelStatus.DISCONNECTED:
            return False
        known = self.sending_restricted
        if known is not None and at <= known.last_refused_at:
            return False
        self.sending_restricted = SendingRestriction(
            since=known.since if known is not None else at,
            last_refused_at=at,
            provider_code=provider_code,
            provider_subcode=provider_subcode,
        )
        self.revision += 1
        return True

    def token_refreshed(self, token_expires_at: datetime | None) -> list[Event]:
        """The provider refreshed the channel's token: its new end (the snapshot says so)."""
        if self.status is not ChannelStatus.ACTIVE:
            return []
        self.token_expires_at = token_expires_at
        self.expiry_warned_for = None
        self.revision += 1
        return [self.snapshot()]

    def disconnect(self, actor_id: str, at: datetime) -> list[Event]:
        if self.status is ChannelStatus.DISCONNECTED:
            return []
        self.status = ChannelStatus.DISCONNECTED
        self.revision += 1
        return [self.snapshot(), ChannelDisconnected(**self._base(at, actor_id))]

    def _require_connected(self) -> None:
        """A disconnected channel is history: changing it would republish a channel nobody owns."""
        if self.status is ChannelStatus.DISCONNECTED:
            raise Conflict(
                "CHANNEL_DISCONNECTED",
                "this channel is disconnected; reconnect the account before changing it",
            )

    def snapshot(self) -> ChannelSnapshot:
        return ChannelSnapshot(
            channel_id=self.id,
            tenant_id=self.tenant_id,
            provider=self.provider,
            account_id=self.account_id,
            status=self.status,
            display_name=self.settings.display_name,
            auto_ownership=self.settings.auto_ownership,
            business_account_id=self.business_account_id,
            connect_path=self.connect_path,
            throughput_level=self.throughput_level,
            coexistence=self.coexistence,
            business_portfolio_id=self.business_portfolio_id,
            revision=self.revision,
            auto_resolve_new_s=self.settings.auto_resolve_new_s,
            auto_resolve_pending_s=self.settings.auto_resolve_pending_s,
            user_access=dict(self.access.user_access),
            team_access=dict(self.access.team_access),
            all_users_role=self.access.all_users_role,
            all_teams_role=self.access.all_teams_role,
            human_agent_tag=self.settings.human_agent_tag,
            text_limit=self.settings.text_limit,
            business_hours=self.hours_in_force,
            away_message=self.settings.away_message,
            mark_read_on_open=self.settings.mark_read_on_open,
        )

    def subscriptions_found(
        self,
        restored: tuple[str, ...],
        missing: tuple[str, ...],
        reason: str,
        at: datetime,
        actor_id: str | None = None,
        code: int | None = None,
        subcode: int | None = None,
    ) -> list[Event]:
        """What a subscription check found (a Page's, an Instagram account's, an X handle's).
        ``subscription_lost``
        goes out on the change from complete to a gap only (a check every hour during a gap
        announces nothing new); ``subscription_repaired`` for what a check restored, and when a
        gap announced before is closed."""
        if self.status is ChannelStatus.DISCONNECTED:
            return []
        was_lost = bool(self.subscription_gap)
        events: list[Event] = []
        back = restored or (self.subscription_gap if was_lost and not missing else ())
        if back:
            events.append(
                ChannelSubscriptionRepaired(
                    **{**self._base(at, actor_id), "event_id": f"subrep_{self.id}_{self.revision + 1}"},
                    restored=list(back),
                )
            )
        if missing and not was_lost:
            events.append(
                ChannelSubscriptionLost(
                    **{**self._base(at, actor_id), "event_id": f"sublost_{self.id}_{self.revision + 1}"},
                    missing=list(missing),
                    reason=reason,
                    provider_code=code,
                    provider_subcode=subcode,
                )
            )
        if not events:
            return []
        self.subscription_gap = tuple(missing)
        self.revision += 1
        return [self.snapshot(), *events]

    def _check_base(self, at: datetime, actor_id: str | None) -> dict[str, Any]:
        # a check changes no revision: the event is named by the channel and the check's time
        return {**self._base(at, actor_id), "event_id": f"chsub_{self.id}_{at.strftime('%Y%m%dT%H%M%S%f')}"}

    def _changed(self, changed: tuple[str, ...], actor_id: str | None, at: datetime) -> list[Event]:
        self.revision += 1
        return [self.snapshot(), ChannelSettingsChanged(**self._base(at, actor_id), changed=changed)]

    def _base(self, at: datetime, actor_id: str | None) -> dict[str, Any]:
        return {
            "event_id": f"chev_{self.id}_{self.revision}",
            "channel_id": self.id,
            "tenant_id": self.tenant_id,
            "provider": self.provider,
            "occurred_at": at,
            "actor_id": actor_id,
        }


def team_hours_for(access: Access, teams: Mapping[str, Team]) -> BusinessHours | None:
    """The schedule a channel takes from the teams its access names (``team_access``; the All
    Teams role names none): of those with a schedule, the team with the highest role on the
    channel, and between equal roles the lowest team id (stable: names change, ids do not)."""
    candidates = sorted(
        (-role.rank, team_id)
        for team_id, role in access.team_access.items()
        if (team := teams.get(team_id)) is not None and not team.deleted and team.business_hours is not None
    )
    return teams[candidates[0][1]].business_hours if candidates else None


def lifecycle_events(events: list[Event]) -> list[ChannelLifecycleEvent]:
    return [e for e in events if isinstance(e, ChannelLifecycleEvent)]
