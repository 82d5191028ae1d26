"""Service layer: the connection flows, settings, teams and token lifecycle.

Each operation loads aggregates, applies domain rules, saves with a version claim, then
publishes the events (snapshot on the compacted channels topic first, then the lifecycle event).
The store is the :class:`OnboardingStore` port; provider calls go through each provider's connect
flow (``parley_providers.base``: a PageConnector, AccountConnector or NumberConnector by provider,
from the registry), so nothing here names a provider's API.
"""

from __future__ import annotations

import hashlib
import inspect
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_events import (
    BusinessHours,
    ChannelSendingRestricted,
    ChannelSnapshot,
    ChannelStatus,
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    Event,
    NumberThroughputChanged,
    Provider,
    TeamSnapshot,
    TemplateCategoryChanged,
    TemplateQualityChanged,
    TemplateStatusChanged,
    WhatsAppStepChanged,
)
from parley_providers import ErrorKind, ProviderError, registry
from parley_providers.base import (
    AccountConnector,
    BusinessProfileManager,
    Connector,
    EmbeddedSignup,
    GrantedPage,
    LoginConnector,
    LoginSubscriptionCheck,
    MessageTemplate,
    NumberConnector,
    NumberThroughput,
    PageConnector,
    PortfolioCheck,
    RefreshStep,
    RotatingGrant,
    SignupRefusal,
    SubscriptionCheck,
    SubscriptionKeeper,
    SubscriptionOutcome,
    TemplateManager,
    ThroughputCheck,
    TokenCheck,
)
from parley_providers.rules import Counting
from parley_shared.channels import CLAIMING_STATUSES
from parley_shared.logging import get_logger
from parley_shared.mongo import VersionConflict
from parley_shared.vault import Credential, grant_digest

from parley_onboarding import metrics
from parley_onboarding.adapters.stores import AccountClaim, OnboardingStore
from parley_onboarding.domain.channels import Access, Channel, channel_id_for, team_hours_for
from parley_onboarding.domain.connections import PageConnection
from parley_onboarding.domain.errors import Conflict, DomainError
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import Step, StepRecord, WhatsAppOnboarding, check_pin
from parley_onboarding.settings import OnboardingSettings

Publish = Callable[[Event, str], Awaitable[None]]
Clock = Callable[[], datetime]

log = get_logger(__name__)

DELETED = "DELETED"
"""The status policy learns for a template deleted through Parley."""

PAGE_PATH, INSTAGRAM_LOGIN_PATH = "page", "instagram_login"
"""How an Instagram profile's channel is connected: through its Facebook Page, or with Instagram
Login (no Page; its own token, refreshed before its 60-day end)."""

STALE_CLAIM_AFTER = timedelta(minutes=10)
"""How old an account claim must be before a claim whose channel does not hold the account is
released for another tenant (younger ones may belong to a connect still saving its channel)."""


API_STEPS = {
    "profile-completed": "PATCH /v1/channels/{channel_id}/profile",
    "submit-templates": "POST /v1/channels/{channel_id}/templates",
}
"""Steps no one types in: the provider's API reaching them records them."""

PICTURE_MAX_BYTES = 5 * 1024 * 1024
"""The largest profile picture Parley passes on (WhatsApp: 5 MB)."""
REFRESH_LEASE = timedelta(minutes=2)
"""How long a claim on a refresh token is its holder's alone (a refresh is one HTTP call of at most
10 s): after it, a holder that stopped half-way is assumed gone and one other replica may take over."""
REFRESH_CLAIMS_KEPT = timedelta(days=1)
PORTFOLIO_READS_PER_ROUND = 50
"""Accounts whose business portfolio one round of :meth:`OnboardingService.record_business_portfolios`
asks the provider for (the ones asked longest ago first): a bounded burst of Graph calls."""
"""How long spent refresh tokens' claims are kept: far longer than any replica holds a stale read
of a credential, so a token once spent is never claimed (and spent) again."""


def check_away_message(provider: Provider, text: str, text_limit: int | None) -> None:
    """Refuse an away message longer than any of the provider's reply kinds allows (counted the
    provider's way: X's weighted length, WhatsApp's characters), or than the channel's own limit:
    it goes out through policy, which would refuse it at every send."""
    for rule in registry.reply_rules().values():
        if rule.provider is not provider:
            continue
        if rule.counting is Counting.CHARACTERS:
            length = len(text)
        elif rule.counting is Counting.UTF8_BYTES:
            length = len(text.encode())
        else:
            length = registry.length_counter(rule.counting)(text)
        limit = min(rule.text_limit, text_limit or rule.text_limit)
        if length > limit:
            raise DomainError(
                "INVALID_SETTING",
                f"away_message is {length} long; {provider.value} {rule.kind} replies allow {limit}",
                field="away_message",
                limit=limit,
            )


class NotFound(DomainError):
    """No such object in the caller's tenant."""

    status = 404


def utcnow() -> datetime:
    return datetime.now(UTC)


def _api_not_configured(api: str) -> DomainError:
    return DomainError(
        "X_API_NOT_CONFIGURED", f"this deployment cannot subscribe X channels through {api}", field="x_api"
    )


SIGNUP_REFUSALS: dict[str, tuple[str, str | None]] = {
    "token_invalid": ("SIGNUP_CODE_INVALID", "code"),
    "scopes_missing": ("SCOPES_MISSING", None),
    "account_not_granted": ("WABA_NOT_ACCESSIBLE", "waba_id"),
    "number_not_in_account": ("WABA_NUMBER_MISMATCH", "phone_number_id"),
}
"""Each reason the provider's answers refuse an Embedded Signup -> the API's code and field."""


def _unavailable(exc: ProviderError) -> bool:
    return exc.status >= 500 or exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.RETRYABLE)


def _provider_unavailable(exc: ProviderError) -> DomainError:
    """The provider failed or throttled mid-signup: nothing is active, the same request may be
    sent again (503, ``retryable``)."""
    error = DomainError(
        "PROVIDER_UNAVAILABLE",
        f"{exc.provider} could not answer now; send the same request again",
        retryable=True,
        provider_code=exc.code,
    )
    error.status = 503
    return error


def signup_onboarding_id(tenant_id: str, code: str) -> str:
    """The onboarding an Embedded Signup code makes: the same for a retry of the same request,
    so a retry resumes with the token the code was already traded for (a code is single-use)."""
    return "wa_" + hashlib.sha256(f"{tenant_id}\0{code}".encode()).hexdigest()[:20]


def _not_subscribed(check: SubscriptionOutcome) -> DomainError:
    error = DomainError(
        "SUBSCRIPTION_FAILED",
        f"the provider refused subscriptions: {', '.join(check.missing)}",
        missing=list(check.missing),
        reason=check.reason,
    )
    error.status = 502
    return error


TemplateUpdate = TemplateStatusChanged | TemplateCategoryChanged | TemplateQualityChanged
"""What ingest publishes about a WhatsApp template, addressed to its business account."""


def channel_template_event(
    update: TemplateUpdate, channel: Channel
) -> ChannelTemplateStatusChanged | ChannelTemplateCategoryChanged | ChannelTemplateQualityChanged:
    """The account-wide ``update`` told to one channel of the account; the id is the channel's and
    the update's, so a redelivered update is the same event."""
    common: dict[str, Any] = {
        "channel_id": channel.id,
        "tenant_id": channel.tenant_id,
        "provider": Provider.WHATSAPP,
        "occurred_at": update.provider_timestamp,
        "template_name": update.template_name,
        "language": update.language,
        "template_id": update.template_id,
    }
    if isinstance(update, TemplateCategoryChanged):
        return ChannelTemplateCategoryChanged(
            event_id=f"tplcat_{channel.id}_{update.event_id}",
            category=update.new_category,
            previous_category=update.previous_category,
            **common,
        )
    if isinstance(update, TemplateQualityChanged):
        return ChannelTemplateQualityChanged(
            event_id=f"tplq_{channel.id}_{update.event_id}",
            quality=update.new_quality_score,
            previous_quality=update.previous_quality_score,
            **common,
        )
    return ChannelTemplateStatusChanged(
        event_id=f"tplch_{channel.id}_{update.event_id}",
        status=update.status,
        reason=update.reason,
        category=update.category,
        **common,
    )


class OnboardingService:
    """Everything onboarding does, independent of HTTP."""

    def __init__(
        self,
        stores: OnboardingStore,
        connectors: Mapping[Provider, Connector],
        publish: Publish,
        settings: OnboardingSettings,
        clock: Clock = utcnow,
    ) -> None:
        self.stores = stores
        self.connectors = dict(connectors)
        self.publish = publish
        self.settings = settings
        self.clock = clock
        # when this replica last asked for each account's business portfolio (the least recent first)
        self._portfolio_tried: dict[str, datetime] = {}

    def _pages(self) -> PageConnector:
        """Meta's connect flow (Pages and their Instagram profiles)."""
        connector = self.connectors.get(Provider.MESSENGER)
        if not isinstance(connector, PageConnector):
            raise DomainError(
                "META_NOT_CONFIGURED", "Facebook and Instagram are not configured on this deployment"
            )
        return connector

    def _numbers(self) -> NumberConnector:
        """WhatsApp's connect flow (business numbers)."""
        connector = self.connectors.get(Provider.WHATSAPP)
        if not isinstance(connector, NumberConnector):
            raise DomainError("WHATSAPP_NOT_CONFIGURED", "WhatsApp is not configured on this deployment")
        return connector

    def _keeper(self, provider: Provider) -> SubscriptionKeeper | None:
        """The provider's connector when Parley keeps its accounts' subscriptions per delivery API."""
        connector = self.connectors.get(provider)
        return connector if isinstance(connector, SubscriptionKeeper) else None

    # --- publishing ---------------------------------------------------------------------------

    async def _emit(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ChannelSnapshot):
                await self.publish(event, f"{event.channel_id}:{event.revision}")
            elif isinstance(event, TeamSnapshot):
                await self.publish(event, f"{event.team_id}:{event.revision}")
            else:
                await self.publish(event, str(getattr(event, "event_id", uuid.uuid4().hex)))

    # --- channels ------------------------------------------------------------------------------

    async def channel(self, tenant_id: str, channel_id: str) -> Channel:
        channel = await self.stores.channel(channel_id)
        if channel is None or channel.tenant_id != tenant_id:
            raise NotFound("CHANNEL_NOT_FOUND", "no such channel")
        return channel

    async def channels(self, tenant_id: str) -> list[Channel]:
        return sorted(await self.stores.tenant_channels(tenant_id), key=lambda c: c.id)

    async def _change_channel(
        self, tenant_id: str, channel_id: str, change: Callable[[Channel], list[Event]]
    ) -> Channel:
        for _ in range(10):
            channel = await self.channel(tenant_id, channel_id)
            events = change(channel)
            if not events:
                return channel
            try:
                await self.stores.save_channel(channel)
            except VersionConflict:
                continue
            await self._emit(events)
            return channel
        raise Conflict("CONCURRENT_UPDATE", "the channel keeps changing; try again")

    async def _upsert_connected(
        self,
        *,
        tenant_id: str,
        provider: Provider,
        account_id: str,
        actor_id: str | None,
        credential: Credential | None,
        display_name: str | None = None,
        business_account_id: str | None = None,
        connect_path: str | None = None,
        x_api: str | None = None,
        throughput: NumberThroughput | None = None,
        business_portfolio_id: str | None = None,
        account_name: str | None = None,
    ) -> Channel:
        """Connect a new channel, or reconnect the existing one for the same account (a reconnect
        may change how it is connected: ``connect_path``; a WhatsApp number's ``throughput`` and
        its account's ``business_portfolio_id``, when read, are recorded on it; so is the
        account's public ``account_name``, which a reconnect brings up to date)."""
        now = self.clock()
        channel_id = channel_id_for(tenant_id, provider, account_id)
        await self._claim_account(tenant_id, provider, account_id)
        expires = credential.expires_at if credential else None
        scopes = credential.scopes if credential else ()
        for _ in range(10):
            existing = await self.stores.channel(channel_id)
            if existing is None:
                channel, events = Channel.connect(
                    tenant_id=tenant_id,
                    provider=provider,
                    account_id=account_id,
                    actor_id=actor_id,
                    at=now,
                    display_name=display_name,
                    business_account_id=business_account_id,
                    token_expires_at=expires,
                    scopes=scopes,
                    connect_path=connect_path,
                    x_api=x_api,
                )
            else:
                channel = existing
                if connect_path is not None:
                    channel.connect_path = connect_path
                    channel.business_account_id = business_account_id
                events = channel.reconnect(actor_id or "system", now, expires, scopes)
            if throughput is not None:
                channel.throughput_level = throughput.level
                channel.coexistence = throughput.coexistence
            if business_portfolio_id is not None:
                channel.business_portfolio_id = business_portfolio_id
            if account_name is not None:
                channel.account_name = account_name
            if throughput is not None or business_portfolio_id is not None:
                # the snapshot Channel.connect or reconnect built predates these fields
                events = [channel.snapshot() if isinstance(e, ChannelSnapshot) else e for e in events]
            try:
                await self.stores.save_channel(channel)
            except VersionConflict:
                continue
            if credential is not None:
                await self.stores.put_credential(
                    Credential(channel.id, credential.access_token, expires, scopes, credential.refresh_token)
                )
            await self._emit(events)
            return channel
        raise Conflict("CONCURRENT_UPDATE", "the channel keeps changing; try again")

    async def _claim_account(self, tenant_id: str, provider: Provider, account_id: str) -> bool:
        """Make this tenant's channel the one holder of the account, or refuse (409).

        Webhooks for an account can reach only one tenant. The claim is a unique ``_id`` insert,
        the one write FerretDB makes atomic, so of two tenants connecting an account at once
        exactly one wins. A claim whose channel no longer holds the account (a disconnect that
        stopped before releasing it, a connect that stopped before saving its channel) is
        released once it is older than :data:`STALE_CLAIM_AFTER`. Returns whether this call
        inserted the claim (False: the channel held it already).
        """
        channel_id = channel_id_for(tenant_id, provider, account_id)
        for _ in range(3):
            inserted, holder = await self.stores.claim_account(
                provider, account_id, channel_id, tenant_id, self.clock()
            )
            if holder is None:
                return inserted
            if not await self._stale_claim(holder):
                raise Conflict(
                    "ACCOUNT_CONNECTED_ELSEWHERE",
                    f"this {provider.value} account is connected to another Parley tenant",
                )
            log.warning(
                "stale account claim released",
                provider=provider.value,
                account_id=account_id,
                holder=holder.channel_id,
            )
            await self.stores.release_account(provider, account_id, holder.channel_id)
        raise Conflict("CONCURRENT_UPDATE", "the account's connection keeps changing; try again")

    async def _stale_claim(self, claim: AccountClaim) -> bool:
        claimed_at = claim.claimed_at
        if claimed_at is not None and self.clock() - claimed_at <= STALE_CLAIM_AFTER:
            # young claims may belong to a connect still saving its channel: never read it here
            # (reading rolls a half-saved channel forward, racing the writer's own save)
            return False
        holder = await self.stores.channel(claim.channel_id)
        return holder is None or holder.status not in CLAIMING_STATUSES

    async def ensure_account_claims(self) -> int:
        """Claim the accounts of channels that hold one but predate claims (run on start-up).

        Returns how many claims were created. Two channels holding one account (possible before
        claims) are logged: the first keeps the claim, the directory attributes the account to
        neither until one of them is disconnected.
        """
        created = 0
        async for channel in self.stores.channels_with_status(CLAIMING_STATUSES):
            inserted, holder = await self.stores.claim_account(
                channel.provider, channel.account_id, channel.id, channel.tenant_id, self.clock()
            )
            created += int(inserted)
            if holder is not None:
                log.error(
                    "two channels hold one account; disconnect one of them",
                    provider=channel.provider.value,
                    account_id=channel.account_id,
                    channels=sorted([channel.id, holder.channel_id]),
                )
        if created:
            log.info("account claims created for existing channels", created=created)
        return created

    async def register(
        self,
        *,
        tenant_id: str,
        provider: Provider,
        account_id: str,
        display_name: str | None,
        business_account_id: str | None,
        access_token: str | None,
        actor_id: str | None,
    ) -> Channel:
        """Create an active channel without OAuth (migrations, test set-up): `parley channels register`."""
        credential = Credential("", access_token, None) if access_token else None
        return await self._upsert_connected(
            tenant_id=tenant_id,
            provider=provider,
            account_id=account_id,
            actor_id=actor_id,
            credential=credential,
            display_name=display_name,
            business_account_id=business_account_id,
        )

    async def update_settings(
        self, tenant_id: str, channel_id: str, changes: dict[str, Any], actor_id: str
    ) -> Channel:
        changes = dict(changes)
        api = changes.pop("x_api", None)
        if api is not None:
            channel = await self.channel(tenant_id, channel_id)
            if channel.x_api != api:
                await self._switch_delivery_api(channel, api, actor_id)
        if not changes:
            return await self.channel(tenant_id, channel_id)
        if changes.get("away_message") is not None:
            channel = await self.channel(tenant_id, channel_id)
            text_limit = changes.get("text_limit", channel.settings.text_limit)
            check_away_message(channel.provider, str(changes["away_message"]).strip(), text_limit)
        channel = await self._change_channel(
            tenant_id, channel_id, lambda c: c.update_settings(changes, actor_id, self.clock())
        )
        if "business_hours" in changes:
            # a new schedule (or the team's, once the channel's own is removed) may open or close
            # the channel now: say so at once, not at the next tick
            channel = await self._change_channel(tenant_id, channel_id, lambda c: c.track_hours(self.clock()))
        return channel

    async def set_access(self, tenant_id: str, channel_id: str, access: Access, actor_id: str) -> Channel:
        teams = {t.id for t in await self.teams(tenant_id)}
        unknown = set(access.team_access) - teams
        if unknown:
            raise DomainError(
                "UNKNOWN_TEAM", f"no such team: {', '.join(sorted(unknown))}", field="team_access"
            )
        await self._change_channel(
            tenant_id, channel_id, lambda c: c.set_access(access, actor_id, self.clock())
        )
        await self._apply_team_hours(tenant_id, {channel_id})  # its teams may bring a schedule
        return await self.channel(tenant_id, channel_id)

    async def set_team_hours(self, tenant_id: str, team_id: str, hours: BusinessHours | None) -> Team:
        """A team's business hours; every channel that takes its schedule from the team gets it."""
        team = await self.change_team(tenant_id, team_id, lambda t: t.set_business_hours(hours))
        await self._apply_team_hours(tenant_id)
        return team

    async def _apply_team_hours(self, tenant_id: str, channel_ids: set[str] | None = None) -> None:
        """Give each connected channel of the tenant (or those named) the schedule of its teams
        (``team_hours_for``), and announce the opening or closing that causes at once."""
        teams = {t.id: t for t in await self.stores.tenant_teams(tenant_id)}
        for channel in await self.channels(tenant_id):
            if channel.status is ChannelStatus.DISCONNECTED or (
                channel_ids is not None and channel.id not in channel_ids
            ):
                continue
            if team_hours_for(channel.access, teams) == channel.team_hours:
                continue

            def inherit(c: Channel) -> list[Event]:
                return c.inherit_hours(team_hours_for(c.access, teams), self.clock())

            await self._change_channel(tenant_id, channel.id, inherit)
            await self._change_channel(tenant_id, channel.id, lambda c: c.track_hours(self.clock()))

    async def disconnect(self, tenant_id: str, channel_id: str, actor_id: str) -> Channel:
        """Disconnect: the snapshot withdraws the channel from its account in every directory, the
        app leaves the Page (Meta), then the account's claim is released and the credentials go.

        Repeating it finishes a disconnect that stopped half-way (the snapshot is published again).
        """
        emitted: list[Event] = []

        def change(channel: Channel) -> list[Event]:
            emitted[:] = channel.disconnect(actor_id, self.clock())
            return emitted

        channel = await self._change_channel(tenant_id, channel_id, change)
        if not emitted:
            await self._emit([channel.snapshot()])
        # unsubscribe before releasing the claim: once released, another tenant may subscribe the Page
        await self._unsubscribe(channel)
        await self.stores.release_account(channel.provider, channel.account_id, channel.id)
        await self.stores.delete_credential(channel_id)
        # and every other secret the channel leaves: WhatsApp token and PIN, connections' Page tokens
        await self.stores.purge_channel_secrets(tenant_id, channel_id, channel.account_id)
        if channel.provider is Provider.WHATSAPP and channel.business_account_id:
            # the WABA may move to another tenant once no channel of this one uses it
            await self.stores.release_waba(channel.business_account_id, tenant_id)
        return channel

    async def prune_connections(self) -> int:
        """Delete expired Meta connections (run on a timer: FerretDB has no TTL indexes)."""
        return await self.stores.prune_connections(
            self.clock(), timedelta(seconds=self.settings.connection_ttl_s)
        )

    async def _unsubscribe(self, channel: Channel) -> None:
        """Remove the app from the channel's Page unless another channel still needs the Page.

        A failure never stops the disconnect (the channel is already withdrawn everywhere): it is
        logged and counted, and the Page's webhooks then reach ingest and are attributed to nobody.
        """
        keeper = self._keeper(channel.provider)
        if keeper is not None and channel.x_api is not None:
            await self._unsubscribe_via(keeper, channel, channel.x_api)
            return
        pages = self.connectors.get(channel.provider)
        if not isinstance(pages, PageConnector):
            return  # WhatsApp: see docs/onboarding.md
        # a Messenger channel is its Page; an Instagram profile's channel keeps its Page's id
        page_id = (
            channel.account_id if channel.provider is Provider.MESSENGER else channel.business_account_id
        )
        if not page_id:
            return
        if await self.stores.page_in_use(page_id):
            log.info("page still serves another channel; app stays subscribed", channel_id=channel.id)
            return
        credential = await self.stores.credential(channel.id)
        outcome = "no_credential"
        if credential is not None:
            try:
                await pages.unsubscribe_page(page_id, credential.access_token)
                outcome = "unsubscribed"
            except ProviderError as exc:
                outcome = "failed"
                log.warning(
                    "could not unsubscribe the app from the page; disconnected anyway",
                    channel_id=channel.id,
                    provider_status=exc.status,
                    provider_code=exc.code,
                    kind=exc.kind.value,
                )
        if outcome == "no_credential":
            log.warning("no credential to unsubscribe the app from the page", channel_id=channel.id)
        metrics.PAGE_UNSUBSCRIBES.labels(provider=channel.provider.value, outcome=outcome).inc()

    # --- Meta: Facebook Pages and Instagram ----------------------------------------------------------

    async def start_meta_connection(
        self, tenant_id: str, actor_id: str, code: str, redirect_uri: str
    ) -> dict[str, Any]:
        """Exchange the OAuth code, check permissions and list what can be connected."""
        pages = self._pages()
        grant = await pages.grant(code, redirect_uri)
        now = self.clock()
        connection = PageConnection(
            id=f"conn_{uuid.uuid4().hex}",
            tenant_id=tenant_id,
            actor_id=actor_id,
            created_at=now,
            # kept only until activation or expiry (then deleted); the user token itself is never
            # stored: activation needs only its expiry and the Page tokens
            expires_at=now + timedelta(seconds=self.settings.connection_ttl_s),
            user_token_expires_at=grant.expires_at,
            granted=grant.granted,
            pages=grant.pages,
        )
        await self.stores.save_connection(connection)
        return await self._connection_view(pages, connection)

    async def meta_connection(self, tenant_id: str, connection_id: str) -> dict[str, Any]:
        """A started connection as ``start_meta_connection`` answered it (the console's page of
        granted Pages reads it again); no Page token is in it."""
        pages = self._pages()
        connection = await self.stores.connection(tenant_id, connection_id)
        if connection is None:
            raise NotFound("CONNECTION_NOT_FOUND", "no such connection; start again")
        if connection.expired(self.clock(), timedelta(seconds=self.settings.connection_ttl_s)):
            await self.stores.delete_connection(connection_id)
            raise DomainError("CONNECTION_EXPIRED", "this connection expired; start again")
        return await self._connection_view(pages, connection)

    async def _connection_view(self, pages: PageConnector, connection: PageConnection) -> dict[str, Any]:
        existing = {
            c.account_id
            for c in await self.channels(connection.tenant_id)
            if c.status.value != "disconnected"
        }
        return {
            "connection_id": connection.id,
            "missing_permissions": pages.missing_permissions(connection.granted, instagram=False),
            "missing_instagram_permissions": pages.missing_permissions(connection.granted, instagram=True),
            "pages": [
                {
                    "page_id": p.id,
                    "name": p.name,
                    "tasks": list(p.tasks),
                    "missing_tasks": pages.missing_page_tasks(p.tasks),
                    "connected": p.id in existing,
                    "instagram": (
                        {
                            "id": p.instagram_id,
                            "username": p.instagram_username,
                            "connected": p.instagram_id in existing,
                        }
                        if p.instagram_id
                        else None
                    ),
                }
                for p in connection.pages
            ],
        }

    def _page_access(self, pages: PageConnector, page: GrantedPage, what: str, field: str) -> None:
        """Refuse a Page on which the admin lacks the tasks Parley needs."""
        missing_tasks = pages.missing_page_tasks(page.tasks)
        if missing_tasks:
            raise DomainError(
                "PAGE_ACCESS_INSUFFICIENT",
                f"on page {what} you need full control, or the "
                f"{' and '.join(pages.required_page_tasks)} tasks (missing: {', '.join(missing_tasks)})",
                field=field,
                missing_tasks=missing_tasks,
            )

    async def activate_meta(
        self, tenant_id: str, actor_id: str, connection_id: str, page_ids: list[str], instagram_ids: list[str]
    ) -> list[Channel]:
        """Activate the selected Pages and Instagram profiles: one channel each."""
        pages = self._pages()
        connection = await self.stores.connection(tenant_id, connection_id)
        if connection is None:
            raise NotFound("CONNECTION_NOT_FOUND", "no such connection; start again")
        if connection.expired(self.clock(), timedelta(seconds=self.settings.connection_ttl_s)):
            await self.stores.delete_connection(connection_id)
            raise DomainError("CONNECTION_EXPIRED", "this connection expired; start again")
        granted = connection.granted
        missing = pages.missing_permissions(granted, instagram=False)
        if page_ids and missing:
            raise DomainError(
                "PERMISSIONS_MISSING", f"grant these permissions: {', '.join(missing)}", missing=missing
            )
        missing_ig = pages.missing_permissions(granted, instagram=True)
        if instagram_ids and missing_ig:
            raise DomainError(
                "PERMISSIONS_MISSING", f"grant these permissions: {', '.join(missing_ig)}", missing=missing_ig
            )
        chosen: list[GrantedPage] = []
        for page_id in page_ids:
            page = connection.page(page_id)
            if page is None:
                raise DomainError(
                    "PAGE_NOT_GRANTED", f"page {page_id} was not granted to Parley", field="page_ids"
                )
            self._page_access(pages, page, page.name, "page_ids")
            chosen.append(page)
        linked: list[GrantedPage] = []
        for instagram_id in instagram_ids:
            page = connection.page_of_instagram(instagram_id)
            if page is None:
                raise DomainError(
                    "INSTAGRAM_NOT_LINKED",
                    f"Instagram account {instagram_id} is not linked to a Facebook Page you granted; "
                    "link it to a Page in Instagram's settings first",
                    field="instagram_account_ids",
                )
            what = f"{page.name}, linked to Instagram account {instagram_id},"
            self._page_access(pages, page, what, "instagram_account_ids")
            linked.append(page)
        activated: list[Channel] = []
        # a channel runs on its Page token, and a Page token taken with a long-lived user token
        # has no expiry (developers.facebook.com/docs/facebook-login/guides/access-tokens/
        # get-long-lived): the user token's 60 days say nothing about the channel, so nothing is
        # warned about; a Page token Meta stops taking (password, app removed, access lost) is
        # caught by the provider's refusal (reauth_required)
        expires = None
        scopes = tuple(sorted(granted))
        for page in chosen:
            await self._claimed_then(
                tenant_id,
                Provider.MESSENGER,
                page.id,
                pages.subscribe_page(page.id, page.access_token),
            )
            activated.append(
                await self._upsert_connected(
                    tenant_id=tenant_id,
                    provider=Provider.MESSENGER,
                    account_id=page.id,
                    actor_id=actor_id,
                    credential=Credential("", page.access_token, expires, scopes),
                    display_name=page.name,
                )
            )
        for instagram_id, page in zip(instagram_ids, linked, strict=True):
            await self._claimed_then(
                tenant_id,
                Provider.INSTAGRAM,
                instagram_id,
                pages.subscribe_page(page.id, page.access_token),
            )
            activated.append(
                await self._upsert_connected(
                    tenant_id=tenant_id,
                    provider=Provider.INSTAGRAM,
                    account_id=instagram_id,
                    actor_id=actor_id,
                    credential=Credential("", page.access_token, expires, scopes),
                    display_name=page.instagram_username,
                    business_account_id=page.id,
                    connect_path=PAGE_PATH,
                    account_name=page.instagram_username,
                )
            )
        # the Page tokens now live in the channels' credentials: the connection's copies go
        await self.stores.delete_connection(connection_id)
        return activated

    async def _claimed_then(
        self, tenant_id: str, provider: Provider, account_id: str, subscribe: Awaitable[None]
    ) -> None:
        """Claim the account, then subscribe: a tenant that does not hold the account never
        subscribes the Page, so a disconnect elsewhere cannot unsubscribe it from under it."""
        try:
            inserted = await self._claim_account(tenant_id, provider, account_id)
        except BaseException:
            if inspect.iscoroutine(subscribe):
                subscribe.close()  # never awaited
            raise
        try:
            await subscribe
        except BaseException:
            if inserted:  # the claim was made for this connect only
                channel_id = channel_id_for(tenant_id, provider, account_id)
                await self.stores.release_account(provider, account_id, channel_id)
            raise

    # --- Instagram Login (no Page) ---------------------------------------------------------------

    def _instagram_login(self) -> LoginConnector:
        connector = self.connectors.get(Provider.INSTAGRAM)
        if not isinstance(connector, LoginConnector):
            raise DomainError(
                "INSTAGRAM_LOGIN_NOT_CONFIGURED",
                "Instagram Login is not configured on this deployment; connect the profile through its "
                "Facebook Page",
            )
        return connector

    async def connect_instagram_login(
        self, tenant_id: str, actor_id: str, code: str, redirect_uri: str
    ) -> Channel:
        """Business Login for Instagram: the professional account becomes a channel on its own
        60-day token (no Facebook Page), subscribed to its webhooks."""
        login = self._instagram_login()
        account = await login.login(code, redirect_uri)
        missing = login.missing_login_permissions(account.token.scopes)
        if missing:
            raise DomainError(
                "PERMISSIONS_MISSING", f"grant these permissions: {', '.join(missing)}", missing=missing
            )
        token = account.token
        await self._claimed_then(
            tenant_id,
            Provider.INSTAGRAM,
            account.id,
            login.subscribe_account(account.id, token.access_token),
        )
        return await self._upsert_connected(
            tenant_id=tenant_id,
            provider=Provider.INSTAGRAM,
            account_id=account.id,
            actor_id=actor_id,
            credential=Credential("", token.access_token, token.expires_at, tuple(sorted(token.scopes))),
            display_name=account.display_name,
            connect_path=INSTAGRAM_LOGIN_PATH,
            account_name=account.username,
        )

    async def refresh_login_tokens(self) -> int:
        """Refresh every Instagram-login token due (run on a timer): at least 24 hours old and
        within ``instagram_token_refresh_lead_s`` of its end. A refusal, or a token past its end,
        marks the channel for a reconnect with the provider's code. Returns how many were refreshed."""
        login = self.connectors.get(Provider.INSTAGRAM)
        if not isinstance(login, LoginConnector):
            return 0
        lead = timedelta(seconds=self.settings.instagram_token_refresh_lead_s)
        refreshed = 0
        for channel in await self.stores.channels_expiring_by(self.clock() + lead):
            if channel.connect_path != INSTAGRAM_LOGIN_PATH or channel.token_expires_at is None:
                continue
            step = login.refresh_step(channel.token_expires_at, self.clock(), lead)
            credential = await self.stores.credential(channel.id)
            if step is RefreshStep.WAIT or credential is None:
                metrics.TOKEN_REFRESHES.labels(provider=channel.provider.value, outcome="waiting").inc()
                continue
            # a token past its end is offered too: the provider's refusal gives the code to report
            try:
                token = await login.refresh(credential.access_token)
            except ProviderError as exc:
                if (
                    exc.status >= 500
                    or exc.status == 0
                    or exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.RETRYABLE)
                ):
                    metrics.TOKEN_REFRESHES.labels(
                        provider=channel.provider.value, outcome="unreachable"
                    ).inc()
                    continue  # the next run tries again
                log.warning(
                    "token refresh refused; the channel needs a reconnect",
                    channel_id=channel.id,
                    provider_code=exc.code,
                    provider_subcode=exc.subcode,
                )
                metrics.TOKEN_REFRESHES.labels(provider=channel.provider.value, outcome="refused").inc()
                await self.provider_rejected(channel.id, exc.code, exc.subcode)
                continue
            await self.stores.put_credential(
                Credential(channel.id, token.access_token, token.expires_at, credential.scopes)
            )

            def refreshed_to(c: Channel, end: datetime | None = token.expires_at) -> list[Event]:
                return c.token_refreshed(end)

            await self._change_channel(channel.tenant_id, channel.id, refreshed_to)
            metrics.TOKEN_REFRESHES.labels(provider=channel.provider.value, outcome="refreshed").inc()
            refreshed += 1
        return refreshed

    # --- refresh tokens that work once (X) -------------------------------------------------------

    async def refresh_rotating_tokens(self) -> int:
        """Refresh every token whose provider rotates refresh tokens (X) within
        ``x_token_refresh_lead_s`` of its end or past it (run on a timer, on every replica: each
        refresh token is claimed in the store before it is spent, so exactly one replica spends
        it). Returns how many this call refreshed."""
        now = self.clock()
        await self.stores.prune_token_refresh_claims(now - REFRESH_CLAIMS_KEPT)
        lead = timedelta(seconds=self.settings.x_token_refresh_lead_s)
        refreshed = 0
        for channel in await self.stores.channels_expiring_by(now + lead):
            grants = self.connectors.get(channel.provider)
            if isinstance(grants, RotatingGrant):
                refreshed += await self._refresh_grant(grants, channel, lead)
        return refreshed

    async def refresh_channel_token(self, channel_id: str) -> bool:
        """Refresh one channel's token now if its end is within the lead or past (a send found it
        expired); True when this call refreshed it."""
        channel = await self.stores.channel(channel_id)
        grants = self.connectors.get(channel.provider) if channel is not None else None
        if channel is None or channel.status is not ChannelStatus.ACTIVE:
            return False
        if not isinstance(grants, RotatingGrant):
            return False
        lead = timedelta(seconds=self.settings.x_token_refresh_lead_s)
        return bool(await self._refresh_grant(grants, channel, lead))

    async def _refresh_grant(self, grants: RotatingGrant, channel: Channel, lead: timedelta) -> int:
        """Claim the channel's refresh token, spend it, store the next one (1 if refreshed). The
        credential read here is the newest: a token another replica refreshed meanwhile is no
        longer due, and one it is refreshing now is claimed already."""
        channel_id, provider = channel.id, channel.provider.value
        credential = await self.stores.credential(channel_id)
        if credential is None or credential.expires_at is None or not credential.refresh_token:
            # authorized without offline.access: no refresh is possible, the expiry warning says so
            metrics.TOKEN_REFRESHES.labels(provider=provider, outcome="no_refresh_token").inc()
            return 0
        if grants.grant_refresh_step(credential.expires_at, self.clock(), lead) is not RefreshStep.REFRESH:
            metrics.TOKEN_REFRESHES.labels(provider=provider, outcome="waiting").inc()
            return 0
        digest = grant_digest(credential.refresh_token)
        attempt = await self.stores.claim_token_refresh(channel_id, digest, self.clock(), REFRESH_LEASE)
        if attempt is None:
            metrics.TOKEN_REFRESHES.labels(provider=provider, outcome="claimed_elsewhere").inc()
            return 0
        try:
            token = await grants.refresh_grant(credential.refresh_token)
        except ProviderError as exc:
            transient = exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.RETRYABLE)
            if transient or exc.status == 0 or exc.status >= 500:
                if exc.status != 0:
                    # the provider answered and did not take the token: it is still good, give it back
                    await self.stores.release_token_refresh(channel_id, digest, attempt)
                # no answer (a timeout): it may be spent; after the lease one takeover tries it
                metrics.TOKEN_REFRESHES.labels(provider=provider, outcome="unreachable").inc()
                log.warning(
                    "token refresh failed; tried again at the next run",
                    channel_id=channel_id,
                    provider_status=exc.status,
                    kind=exc.kind.value,
                )
                return 0
            reason = grants.grant_refusal_reason(exc.error_type)
            code, subcode = exc.code, exc.subcode
            log.warning(
                "token refresh refused; the channel needs a reconnect",
                channel_id=channel_id,
                provider_status=exc.status,
                provider_error=exc.error_type,
                reason=reason,
            )
            metrics.TOKEN_REFRESHES.labels(provider=provider, outcome="refused").inc()
            await self._change_channel(
                channel.tenant_id,
                channel_id,
                lambda c: c.require_reauth(code, subcode, self.clock(), reason),
            )
            return 0
        # the new refresh token replaces the spent one (a grant without rotation keeps its own),
        # unless a reconnect stored a newer grant while the refresh was on its way: that one wins
        refreshed = Credential(
            channel_id,
            token.access_token,
            token.expires_at,
            token.scopes or credential.scopes,
            token.refresh_token or credential.refresh_token,
        )
        if not await self.stores.replace_credential(refreshed, credential.refresh_token):
            metrics.TOKEN_REFRESHES.labels(provider=provider, outcome="superseded").inc()
            log.info(
                "token refreshed after a reconnect stored a newer grant; the newer one kept",
                channel_id=channel_id,
            )
            return 0

        def refreshed_to(c: Channel, end: datetime | None = token.expires_at) -> list[Event]:
            return c.token_refreshed(end)

        await self._change_channel(channel.tenant_id, channel_id, refreshed_to)
        metrics.TOKEN_REFRESHES.labels(provider=provider, outcome="refreshed").inc()
        return 1

    # --- X ---------------------------------------------------------------------------------

    async def connect_x(
        self, tenant_id: str, actor_id: str, code: str, redirect_uri: str, verifier: str
    ) -> Channel:
        """One handle per authorization: each X account is its own channel."""
        accounts = self.connectors.get(Provider.X)
        if not isinstance(accounts, AccountConnector):
            raise DomainError("X_NOT_CONFIGURED", "X is not configured on this deployment")
        account = await accounts.authorize(code, redirect_uri, verifier)
        keeper = self._keeper(Provider.X)
        api: str | None = None
        if keeper is None:
            await accounts.subscribe(account)
        else:
            # a reconnect keeps the channel's API; a new handle gets the deployment's first
            existing = await self.stores.channel(channel_id_for(tenant_id, Provider.X, account.id))
            api = (existing.x_api if existing is not None else None) or keeper.delivery_apis[0]
            if api not in keeper.delivery_apis:
                raise _api_not_configured(api)
            check = await keeper.subscribe_via(api, account.id, account.token.access_token)
            if not check.complete:
                raise _not_subscribed(check)
        token = account.token
        return await self._upsert_connected(
            tenant_id=tenant_id,
            provider=Provider.X,
            account_id=account.id,
            actor_id=actor_id,
            credential=Credential(
                "", token.access_token, token.expires_at, token.scopes, token.refresh_token
            ),
            display_name=account.display_name,
            x_api=api,
            account_name=account.username,
        )

    async def _switch_delivery_api(self, channel: Channel, api: str, actor_id: str) -> None:
        """Move an X channel to another delivery API: subscribe through the new one, record it, then
        remove the old one's subscriptions, so no message falls between them (while both deliver,
        a message arrives twice with one id and is kept once). Stopped before it is recorded, the
        channel is on the old API with the new one's subscriptions too (repeating the switch
        finishes it); a removal that fails after it is recorded is logged and counted, and what is
        left over delivers duplicates the normalizer drops. Nothing is lost either way."""
        if channel.x_api is None:
            raise DomainError("UNKNOWN_SETTING", "x_api is a setting of X channels", field="x_api")
        keeper = self._keeper(channel.provider)
        if keeper is None or api not in keeper.delivery_apis:
            raise _api_not_configured(api)
        credential = await self.stores.credential(channel.id)
        if credential is None or channel.status is not ChannelStatus.ACTIVE:
            raise Conflict("RECONNECT_REQUIRED", "reconnect the channel before switching its X API")
        check = await keeper.subscribe_via(api, channel.account_id, credential.access_token)
        if not check.complete:
            raise _not_subscribed(check)
        old = channel.x_api
        await self._change_channel(
            channel.tenant_id, channel.id, lambda c: c.use_x_api(api, actor_id, self.clock())
        )
        await self._unsubscribe_via(keeper, channel, old)

    async def _unsubscribe_via(self, keeper: SubscriptionKeeper, channel: Channel, api: str) -> None:
        """Remove the channel's subscriptions of ``api``; a failure is logged and counted, never raised
        (what stays subscribed delivers to nobody, or twice with one id while another API runs)."""
        outcome = "unsubscribed"
        try:
            await keeper.unsubscribe_via(api, channel.account_id)
        except (ProviderError, ValueError) as exc:
            outcome = "failed"
            log.warning(
                "could not remove the account's subscriptions; going on",
                channel_id=channel.id,
                api=api,
                error=str(exc),
            )
        metrics.PAGE_UNSUBSCRIBES.labels(provider=channel.provider.value, outcome=outcome).inc()

    # --- subscription checks -------------------------------------------------------------

    async def check_kept_subscriptions(self) -> int:
        """The periodic check: every channel whose provider keeps subscriptions per account, one
        listing per provider and API; what is missing is re-created. Returns the channels checked."""
        groups: dict[tuple[Provider, str], list[Channel]] = {}
        async for channel in self.stores.channels_with_status((ChannelStatus.ACTIVE,)):
            if channel.x_api is not None and self._keeper(channel.provider) is not None:
                groups.setdefault((channel.provider, channel.x_api), []).append(channel)
        checked = 0
        for (provider, api), channels in groups.items():
            checked += await self._check_channels(provider, api, channels, actor_id=None)
        return checked

    async def repair_channel_subscriptions(
        self, tenant_id: str, channel_id: str, actor_id: str
    ) -> SubscriptionOutcome | None:
        """An admin's check of one channel (None: its provider's subscriptions are not checked)."""
        channel = await self.channel(tenant_id, channel_id)
        if channel.x_api is None or self._keeper(channel.provider) is None:
            return None
        if channel.status is not ChannelStatus.ACTIVE:
            raise Conflict("RECONNECT_REQUIRED", "only an active channel's subscriptions are checked")
        keeper = self._keeper(channel.provider)
        if keeper is not None and channel.x_api not in keeper.delivery_apis:
            raise _api_not_configured(channel.x_api)
        found: list[SubscriptionOutcome] = []
        await self._check_channels(channel.provider, channel.x_api, [channel], actor_id, found)
        return found[0] if found else None

    async def _check_channels(
        self,
        provider: Provider,
        api: str,
        channels: list[Channel],
        actor_id: str | None,
        found: list[SubscriptionOutcome] | None = None,
    ) -> int:
        keeper = self._keeper(provider)
        assert keeper is not None
        tokens: dict[str, str] = {}
        by_account = {c.account_id: c for c in channels}
        for channel in channels:
            credential = await self.stores.credential(channel.id)
            if credential is not None:
                tokens[channel.account_id] = credential.access_token
        try:
            checks = await keeper.repair(api, tokens)
        except (ProviderError, ValueError) as exc:
            metrics.SUBSCRIPTION_CHECKS.labels(provider=provider.value, outcome="failed").inc(len(tokens))
            log.warning("could not check subscriptions", provider=provider.value, api=api, error=str(exc))
            if found is not None:
                raise
            return 0
        now = self.clock()
        for check in checks:
            checked = by_account.get(check.account_id)
            if checked is None:
                continue
            channel = checked
            if found is not None:
                found.append(check)
            outcome = "lost" if check.missing else "repaired" if check.restored else "complete"
            metrics.SUBSCRIPTION_CHECKS.labels(provider=provider.value, outcome=outcome).inc()
            if check.restored or check.missing:
                log.warning(
                    "channel subscriptions were incomplete",
                    channel_id=channel.id,
                    restored=list(check.restored),
                    missing=list(check.missing),
                    reason=check.reason,
                )

            def record(c: Channel, check: SubscriptionOutcome = check) -> list[Event]:
                # lost on the change from complete only; repaired when it is whole again
                reason = check.reason or "provider_refused"
                return c.subscriptions_found(check.restored, check.missing, reason, now, actor_id)

            try:
                await self._change_channel(channel.tenant_id, channel.id, record)
            except DomainError:
                continue  # gone or changing meanwhile: the next check tells
        return len(checks)

    # --- WhatsApp --------------------------------------------------------------------------------------

    async def whatsapp(self, tenant_id: str, onboarding_id: str) -> WhatsAppOnboarding:
        onboarding = await self.stores.onboarding(onboarding_id)
        if onboarding is None or onboarding.tenant_id != tenant_id:
            raise NotFound("ONBOARDING_NOT_FOUND", "no such WhatsApp onboarding")
        return onboarding

    async def start_whatsapp(self, tenant_id: str) -> WhatsAppOnboarding:
        onboarding = WhatsAppOnboarding(id=f"wa_{uuid.uuid4().hex[:20]}", tenant_id=tenant_id, revision=1)
        await self.stores.save_onboarding(onboarding)
        return onboarding

    async def _save_step(self, onboarding: WhatsAppOnboarding, record: StepRecord | None) -> None:
        try:
            await self.stores.save_onboarding(onboarding)
        except VersionConflict as exc:
            raise Conflict("CONCURRENT_UPDATE", "the onboarding changed meanwhile; reload it") from exc
        if record is not None:
            await self.publish(
                WhatsAppStepChanged(
                    event_id=f"wastep_{onboarding.id}_{onboarding.revision}",
                    onboarding_id=onboarding.id,
                    tenant_id=onboarding.tenant_id,
                    step=record.step.value,
                    next_actor=record.next_actor.value,
                    expected_wait=record.expected_wait,
                    occurred_at=record.at,
                    channel_id=onboarding.channel_id,
                ),
                f"wastep_{onboarding.id}_{onboarding.revision}",
            )

    async def whatsapp_step(
        self, tenant_id: str, onboarding_id: str, action: str, body: dict[str, Any], actor_id: str
    ) -> WhatsAppOnboarding:
        """Apply one step of the onboarding; provider calls happen where Meta is involved."""
        onboarding = await self.whatsapp(tenant_id, onboarding_id)
        numbers = self._numbers()
        now = self.clock()
        if action == "verify-code":
            pin = check_pin(body.get("pin"), numbers.rules)
            code = str(body.get("code", ""))
            return await self._verify_code(numbers, onboarding, code, actor_id, now, pin)
        if action == "request-code":
            highest = await self.stores.highest_code_attempt(onboarding.id)
            record = onboarding.code_requested(actor_id, now, numbers.rules, highest)
            token = await self._whatsapp_token(onboarding)
            assert onboarding.phone_number_id is not None
            await numbers.request_code(onboarding.phone_number_id, token, voice=onboarding.landline)
            await self._save_step(onboarding, record)
            return onboarding
        steps: dict[str, Callable[[], StepRecord]] = {
            "sign-agreement": lambda: onboarding.sign_agreement(actor_id, now),
            "accept-terms": lambda: onboarding.accept_terms(actor_id, now),
            "submit-details": lambda: onboarding.submit_details(
                phone_number=str(body.get("phone_number", "")),
                landline=bool(body.get("landline", False)),
                business_manager_id=str(body.get("business_manager_id", "")),
                display_name=str(body.get("display_name", "")),
                by=actor_id,
                at=now,
                rules=numbers.rules,
            ),
            "account-created": lambda: onboarding.account_created(
                phone_number_id=str(body.get("phone_number_id", "")),
                waba_id=str(body.get("waba_id", "")),
                by=actor_id,
                at=now,
            ),
            "approve-business-manager": lambda: onboarding.approve_business_manager_request(actor_id, now),
            "business-verified": lambda: onboarding.business_verified(actor_id, now),
            "request-badge": lambda: onboarding.badge_requested(actor_id, now),
            "badge-decided": lambda: onboarding.badge_decided(bool(body.get("approved")), actor_id, now),
        }
        if action in API_STEPS:
            raise Conflict(
                "STEP_BY_API",
                f"the {action} step is reached when the provider accepts it: {API_STEPS[action]}",
                current_step=onboarding.step.value,
            )
        if action not in steps:
            raise NotFound("UNKNOWN_STEP", f"no step {action!r}")
        required = ("phone_number_id", "waba_id", "access_token")
        if action == "account-created" and not all(body.get(k) for k in required):
            raise DomainError("MISSING_FIELDS", "phone_number_id, waba_id and access_token are required")
        record = steps[action]()
        if action == "account-created":
            await self._confirm_waba(numbers, onboarding, str(body["access_token"]), now)
            await self.stores.save_whatsapp_token(onboarding.id, str(body["access_token"]))
        await self._save_step(onboarding, record)
        return onboarding

    async def _confirm_waba(
        self, numbers: NumberConnector, onboarding: WhatsAppOnboarding, token: str, now: datetime
    ) -> None:
        """Before anything is stored: Meta must list the number under the WABA for this token, and
        the WABA must belong to no other tenant (security #13 finding 7)."""
        waba_id, number_id = onboarding.waba_id, onboarding.phone_number_id
        assert waba_id is not None
        assert number_id is not None
        try:
            listed = await numbers.number_ids(waba_id, token)
        except ProviderError as exc:
            if exc.status >= 500 or exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.RETRYABLE):
                raise
            raise DomainError(
                "WABA_NOT_ACCESSIBLE",
                f"Meta refused to list the phone numbers of WhatsApp Business Account {waba_id} "
                "with this token",
                field="waba_id",
                provider_code=exc.code,
            ) from exc
        if number_id not in listed:
            raise DomainError(
                "WABA_NUMBER_MISMATCH",
                f"phone number {number_id} is not a number of WhatsApp Business Account {waba_id}",
                field="phone_number_id",
            )
        elsewhere = await self.stores.waba_connected_elsewhere(waba_id, onboarding.tenant_id)
        if elsewhere or await self.stores.claim_waba(waba_id, onboarding.tenant_id, onboarding.id, now):
            raise Conflict(
                "WABA_CLAIMED_ELSEWHERE",
                f"WhatsApp Business Account {waba_id} belongs to another Parley tenant",
                field="waba_id",
            )

    async def _whatsapp_token(self, onboarding: WhatsAppOnboarding) -> str:
        token = await self.stores.whatsapp_token(onboarding.id)
        if token is None:
            raise DomainError("MISSING_CREDENTIALS", "the account-created step did not store a token")
        return token

    async def _verify_code(
        self,
        numbers: NumberConnector,
        onboarding: WhatsAppOnboarding,
        code: str,
        actor_id: str,
        now: datetime,
        pin_given: str | None = None,
    ) -> WhatsAppOnboarding:
        onboarding.check_code_attempt(code, now, numbers.rules)
        token = await self._whatsapp_token(onboarding)
        assert onboarding.phone_number_id is not None
        assert onboarding.waba_id is not None
        # the WABA claimed at account-created may have been released since (a disconnect of the
        # tenant's last channel on it): claim it again, or refuse if another tenant took it
        if await self.stores.claim_waba(onboarding.waba_id, onboarding.tenant_id, onboarding.id, now):
            raise Conflict(
                "WABA_CLAIMED_ELSEWHERE",
                f"WhatsApp Business Account {onboarding.waba_id} belongs to another Parley tenant",
                field="waba_id",
            )
        # count the attempt before Meta is asked: claiming a number is a unique insert, so
        # concurrent attempts cannot exceed the allowance (conditional updates are no lock on
        # FerretDB, docs/storage.md)
        attempt = await self.stores.claim_code_attempt(onboarding.id, onboarding.attempt_numbers, now)
        if attempt is None:
            raise DomainError("TOO_MANY_ATTEMPTS", "every attempt on this code was used; ask for a new one")
        try:
            accepted = await numbers.verify_code(onboarding.phone_number_id, token, code)
        except ProviderError:
            # Meta did not judge the code (an outage, a timeout, a refused token): the attempt is
            # given back, or a few failures would use up the code and, through the resends, the
            # whole onboarding
            await self.stores.release_code_attempt(onboarding.id, attempt)
            raise
        if not accepted:
            left = await self._code_rejected(onboarding, attempt)
            raise DomainError("WRONG_CODE", "that code is not right", attempts_left=left)
        # reload: concurrent wrong attempts may have saved the onboarding meanwhile
        onboarding = await self.whatsapp(onboarding.tenant_id, onboarding.id)
        assert onboarding.phone_number_id is not None
        verified = onboarding.phone_verified(actor_id, now)
        await self._save_step(onboarding, verified)
        # register the number for Cloud API messaging with its two-step verification PIN
        digits = numbers.rules.pin_digits
        pin = pin_given or f"{secrets.randbelow(10**digits):0{digits}d}"
        await numbers.register(onboarding.phone_number_id, token, pin)
        await self.stores.save_whatsapp_pin(onboarding.id, pin)
        throughput = await self._number_throughput(numbers, onboarding.phone_number_id, token)
        portfolio = await self._business_portfolio(numbers, onboarding.waba_id, token)
        channel = await self._upsert_connected(
            tenant_id=onboarding.tenant_id,
            provider=Provider.WHATSAPP,
            account_id=onboarding.phone_number_id,
            actor_id=actor_id,
            credential=Credential("", token, None),
            display_name=onboarding.display_name,
            business_account_id=onboarding.waba_id,
            throughput=throughput,
            business_portfolio_id=portfolio,
            account_name=onboarding.phone_number,
        )
        activated = onboarding.activated(channel.id, actor_id, now)
        await self._save_step(onboarding, activated)
        return onboarding

    def _signup(self) -> tuple[NumberConnector, EmbeddedSignup]:
        """WhatsApp's connect flow, which must have Embedded Signup."""
        numbers = self._numbers()
        if not isinstance(numbers, EmbeddedSignup):
            raise DomainError(
                "EMBEDDED_SIGNUP_NOT_SUPPORTED", "this deployment's WhatsApp has no Embedded Signup"
            )
        return numbers, numbers

    def embedded_signup_config(self) -> dict[str, Any]:
        """What the browser launching Embedded Signup needs (the app id and the configuration id);
        never the secret."""
        self._signup()
        return {
            "app_id": self.settings.meta_app_id,
            "config_id": self.settings.whatsapp_embedded_signup_config_id,
        }

    async def embedded_signup(
        self,
        tenant_id: str,
        actor_id: str,
        *,
        code: str,
        waba_id: str,
        phone_number_id: str,
        pin: str | None = None,
    ) -> tuple[WhatsAppOnboarding, Channel]:
        """Connect the number a business chose in Embedded Signup.

        The code becomes the business token (server to server); the WABA and number the browser
        reported are hints until the provider confirms them for that token. Then, in order: the
        WABA and the number are claimed for this tenant (refused if another holds them), the
        token is sealed, the app is subscribed to the WABA's webhooks, the number is registered
        with its PIN (the one given, else a generated one, sealed), and the channel is activated
        with its throughput and portfolio. A failure after the exchange leaves the channel
        inactive; the same request again resumes where it stopped.
        """
        numbers, signup = self._signup()
        rules = numbers.rules
        for name, value in (("waba_id", waba_id), ("phone_number_id", phone_number_id)):
            if not (value.isascii() and value.isdigit()):
                raise DomainError("INVALID_ID", f"{name} is Meta's numeric id", field=name)
        pin_given = check_pin(pin, rules)
        now = self.clock()
        onboarding_id = signup_onboarding_id(tenant_id, code)
        onboarding = await self.stores.onboarding(onboarding_id)
        if onboarding is not None and onboarding.step is Step.ACTIVATED and onboarding.channel_id:
            return onboarding, await self.channel(tenant_id, onboarding.channel_id)
        if onboarding is not None and (onboarding.waba_id, onboarding.phone_number_id) != (
            waba_id,
            phone_number_id,
        ):
            raise DomainError(
                "SIGNUP_MISMATCH",
                "this code was used for another WhatsApp Business Account or number",
                field="phone_number_id",
            )
        # a retry finds the token its first try traded the code for (the code works once)
        token = await self.stores.whatsapp_token(onboarding_id)
        try:
            if token is None:
                token = await self._exchange_signup_code(signup, code)
        except ProviderError as exc:
            raise _provider_unavailable(exc) from exc
        try:
            checked = await signup.check_signup(token, waba_id, phone_number_id)
        except ProviderError as exc:
            if _unavailable(exc):
                # kept sealed for the retry only: a refused signup's token is never stored
                await self.stores.save_whatsapp_token(onboarding_id, token)
                raise _provider_unavailable(exc) from exc
            raise
        if isinstance(checked, SignupRefusal):
            api_code, field = SIGNUP_REFUSALS[checked.reason]
            details: dict[str, Any] = {"reason": checked.reason}
            if field:
                details["field"] = field
            if checked.missing:
                details["missing"] = list(checked.missing)
            raise DomainError(api_code, checked.detail, **details)
        # the takeover rules of the step-by-step path: one tenant per WABA, one channel per number
        elsewhere = await self.stores.waba_connected_elsewhere(waba_id, tenant_id)
        if elsewhere or await self.stores.claim_waba(waba_id, tenant_id, onboarding_id, now):
            raise Conflict(
                "WABA_CLAIMED_ELSEWHERE",
                f"WhatsApp Business Account {waba_id} belongs to another Parley tenant",
                field="waba_id",
            )
        await self._claim_account(tenant_id, Provider.WHATSAPP, phone_number_id)
        await self.stores.save_whatsapp_token(onboarding_id, token)
        if onboarding is None:
            onboarding = WhatsAppOnboarding(id=onboarding_id, tenant_id=tenant_id, revision=1)
            phone = checked.display_phone_number
            record = onboarding.signed_up(
                phone_number_id=phone_number_id,
                waba_id=waba_id,
                phone_number="+" + "".join(ch for ch in phone if ch.isdigit()) if phone else None,
                display_name=checked.verified_name,
                by=actor_id,
                at=now,
            )
            await self._save_step(onboarding, record)
        pin_value = await self.stores.whatsapp_pin(onboarding_id)
        if pin_value is None:
            pin_value = pin_given or f"{secrets.randbelow(10**rules.pin_digits):0{rules.pin_digits}d}"
            # sealed before Meta sees it: a retry after a lost answer registers with the same PIN
            await self.stores.save_whatsapp_pin(onboarding_id, pin_value)
        try:
            await signup.subscribe_app(waba_id, token)
            await numbers.register(phone_number_id, token, pin_value)
        except ProviderError as exc:
            if _unavailable(exc):
                raise _provider_unavailable(exc) from exc
            raise
        throughput = await self._number_throughput(numbers, phone_number_id, token)
        portfolio = await self._business_portfolio(numbers, waba_id, token)
        channel = await self._upsert_connected(
            tenant_id=tenant_id,
            provider=Provider.WHATSAPP,
            account_id=phone_number_id,
            actor_id=actor_id,
            credential=Credential("", token, checked.token_expires_at, checked.scopes),
            display_name=onboarding.display_name,
            business_account_id=waba_id,
            throughput=throughput,
            business_portfolio_id=portfolio,
        )
        activated = onboarding.activated(channel.id, actor_id, now)
        await self._save_step(onboarding, activated)
        log.info("whatsapp number connected through embedded signup", channel_id=channel.id)
        return onboarding, channel

    @staticmethod
    async def _exchange_signup_code(numbers: EmbeddedSignup, code: str) -> str:
        try:
            return await numbers.exchange_signup_code(code)
        except ProviderError as exc:
            if _unavailable(exc):
                raise
            raise DomainError(
                "SIGNUP_CODE_INVALID",
                "Meta did not accept the signup code (used, expired or not this app's); run the signup again",
                field="code",
                provider_code=exc.code,
                provider_subcode=exc.subcode,
            ) from exc

    @staticmethod
    async def _number_throughput(
        numbers: NumberConnector, number_id: str, token: str
    ) -> NumberThroughput | None:
        """The number's throughput level and coexistence (policy's send rate for it); None when
        the connector cannot tell or the provider would not say: the number is connected anyway
        and sends at the provider's default rate."""
        if not isinstance(numbers, ThroughputCheck):
            return None
        try:
            return await numbers.throughput(number_id, token)
        except ProviderError as exc:
            log.warning(
                "could not read the number's throughput", number_id=number_id, error_kind=exc.kind.value
            )
            return None

    @staticmethod
    async def _business_portfolio(numbers: NumberConnector, waba_id: str | None, token: str) -> str | None:
        """The business portfolio owning the account (policy counts the messaging limit for it);
        None when the connector cannot tell or the provider would not say: the number is connected
        anyway and its limit is counted for its account alone."""
        if not waba_id or not isinstance(numbers, PortfolioCheck):
            return None
        try:
            return await numbers.business_portfolio(waba_id, token)
        except ProviderError as exc:
            log.warning("could not read the account's business portfolio", error_kind=exc.kind.value)
            return None

    async def _code_rejected(self, onboarding: WhatsAppOnboarding, attempt: int) -> int:
        """Record a wrong code under the attempt number claimed for it; the attempts left."""
        for _ in range(10):
            current = await self.whatsapp(onboarding.tenant_id, onboarding.id)
            left = current.code_rejected(attempt)
            try:
                await self.stores.save_onboarding(current)
            except VersionConflict:
                continue
            return left
        raise Conflict("CONCURRENT_UPDATE", "the onboarding changed meanwhile; reload it")

    # --- templates and business profile -------------------------------------------------------

    async def _managed(self, tenant_id: str, channel_id: str, kind: type[Any]) -> tuple[Channel, Any, str]:
        """The channel, its provider's template or profile manager, and its token."""
        channel = await self.channel(tenant_id, channel_id)
        manager = self.connectors.get(channel.provider)
        if not isinstance(manager, kind):
            what = "templates" if kind is TemplateManager else "a business profile"
            raise DomainError("NOT_SUPPORTED", f"{channel.provider.value} channels have no {what} to manage")
        credential = await self.stores.credential(channel_id)
        if credential is None:
            raise DomainError("MISSING_CREDENTIALS", "the channel has no token; reconnect it")
        return channel, manager, credential.access_token

    async def _business_account(
        self, tenant_id: str, channel_id: str
    ) -> tuple[Channel, TemplateManager, str, str]:
        channel, found, token = await self._managed(tenant_id, channel_id, TemplateManager)
        manager: TemplateManager = found
        if not channel.business_account_id:
            raise DomainError("NO_BUSINESS_ACCOUNT", "the channel names no business account")
        return channel, manager, token, channel.business_account_id

    async def _advance(
        self, channel_id: str, step: Callable[[WhatsAppOnboarding], StepRecord | None]
    ) -> None:
        """Record the onboarding step the provider's API just reached, if the channel has an
        onboarding at the step before it (a concurrent change is retried on a fresh copy)."""
        for _ in range(5):
            onboarding = await self.stores.onboarding_of_channel(channel_id)
            if onboarding is None:
                return
            record = step(onboarding)
            if record is None:
                return
            try:
                await self._save_step(onboarding, record)
            except Conflict:
                continue
            return

    async def _template_event(
        self,
        channel: Channel,
        template: MessageTemplate,
        status: str,
        actor_id: str | None,
        occurred_at: datetime,
    ) -> None:
        """Tell the consumers of every channel of the business account (templates are the
        account's) what the template now is."""
        assert channel.business_account_id is not None
        channels = await self.stores.channels_of_business_account(
            channel.tenant_id, channel.provider, channel.business_account_id
        )
        for each in channels:
            event_id = f"tplch_{each.id}_{template.id}_{status}_{int(occurred_at.timestamp() * 1000)}"
            await self.publish(
                ChannelTemplateStatusChanged(
                    event_id=event_id,
                    channel_id=each.id,
                    tenant_id=each.tenant_id,
                    provider=each.provider,
                    occurred_at=occurred_at,
                    actor_id=actor_id,
                    template_name=template.name,
                    language=template.language,
                    status=status,
                    template_id=template.id or None,
                    category=template.category,
                    parameter_count=template.parameter_count,
                    quality=template.quality_score,
                ),
                event_id,
            )

    async def templates(self, tenant_id: str, channel_id: str) -> list[MessageTemplate]:
        """The business account's templates with the provider's status."""
        _, manager, token, account = await self._business_account(tenant_id, channel_id)
        listed: list[MessageTemplate] = await manager.templates(account, token)
        return listed

    async def sync_templates(self, tenant_id: str, channel_id: str, actor_id: str) -> list[MessageTemplate]:
        """List the business account's templates and tell the consumers of its channels each one's
        status, category and parameter count: templates made outside Parley (WhatsApp Manager)
        get their count checked by policy from then on. Finding any reaches the onboarding's
        "templates submitted" step, as submitting one through Parley does."""
        channel, manager, token, account = await self._business_account(tenant_id, channel_id)
        listed: list[MessageTemplate] = await manager.templates(account, token)
        now = self.clock()
        for template in listed:
            await self._template_event(channel, template, template.status, actor_id, now)
        await self._advance(channel_id, lambda o: o.templates_listed(len(listed), actor_id, now))
        return listed

    async def create_template(
        self, tenant_id: str, channel_id: str, body: Mapping[str, Any], actor_id: str
    ) -> MessageTemplate:
        """Submit a template for the provider's review; policy learns its parameter count now and
        its status as the reviews come."""
        channel, manager, token, account = await self._business_account(tenant_id, channel_id)
        components = [dict(c) for c in body.get("components") or []]
        name, category = str(body.get("name", "")), str(body.get("category", "")).upper()
        language = str(body.get("language", ""))
        parameter_format = body.get("parameter_format")
        if not language:
            raise DomainError("INVALID_TEMPLATE", "language is required", field="language")
        problem = manager.template_problem(name, category, components, parameter_format)
        if problem is not None:
            raise DomainError("INVALID_TEMPLATE", problem[1], field=problem[0])
        template = await manager.create_template(
            account,
            token,
            name=name,
            language=language,
            category=category,
            components=components,
            parameter_format=parameter_format,
        )
        now = self.clock()
        await self._template_event(channel, template, template.status, actor_id, now)
        await self._advance(channel_id, lambda o: o.template_created(actor_id, now))
        return template

    async def delete_template(
        self, tenant_id: str, channel_id: str, name: str, template_id: str | None, actor_id: str
    ) -> list[MessageTemplate]:
        """Delete every language of ``name`` (or the one template ``template_id`` names); policy
        refuses them from the next send. The deleted templates are returned."""
        channel, manager, token, account = await self._business_account(tenant_id, channel_id)
        listed = [
            t
            for t in await manager.templates(account, token)
            if t.name == name and (template_id is None or t.id == template_id)
        ]
        if not listed:
            raise NotFound("TEMPLATE_NOT_FOUND", f"no template {name!r} on this business account")
        await manager.delete_template(account, token, name, template_id)
        now = self.clock()
        for template in listed:
            await self._template_event(channel, template, DELETED, actor_id, now)
        return listed

    async def business_profile(self, tenant_id: str, channel_id: str) -> dict[str, Any]:
        channel, manager, token = await self._managed(tenant_id, channel_id, BusinessProfileManager)
        profile: dict[str, Any] = await manager.business_profile(channel.account_id, token)
        return profile

    async def update_business_profile(
        self,
        tenant_id: str,
        channel_id: str,
        fields: Mapping[str, Any],
        picture: tuple[bytes, str] | None,
        actor_id: str,
    ) -> dict[str, Any]:
        """Save the profile's fields and picture with the provider; the onboarding's profile step
        follows. The profile as the provider then gives it is returned."""
        channel, manager, token = await self._managed(tenant_id, channel_id, BusinessProfileManager)
        problem = manager.profile_problem(fields)
        if problem is not None:
            raise DomainError("INVALID_PROFILE", problem[1], field=problem[0])
        if picture is not None:
            data, content_type = picture
            if content_type not in manager.picture_types:
                raise DomainError(
                    "INVALID_PROFILE",
                    f"a picture is {' or '.join(sorted(manager.picture_types))}",
                    field="picture",
                )
            if not data or len(data) > PICTURE_MAX_BYTES:
                raise DomainError("INVALID_PROFILE", "a picture has 1 byte to 5 MB", field="picture")
        if not fields and picture is None:
            raise DomainError("INVALID_PROFILE", "nothing to change")
        await manager.update_business_profile(channel.account_id, token, fields, picture)
        now = self.clock()
        await self._advance(channel_id, lambda o: o.profile_saved(actor_id, now))
        profile: dict[str, Any] = await manager.business_profile(channel.account_id, token)
        return profile

    async def on_template_update(self, update: TemplateUpdate) -> None:
        """Ingest saw Meta's review, category change or quality rating of a template: tell the
        consumers of every channel of the business account (templates are the account's)."""
        channels = await self.stores.channels_of_business_account(
            update.tenant_id, Provider.WHATSAPP, update.business_account_id
        )
        for channel in channels:
            event = channel_template_event(update, channel)
            await self.publish(event, event.event_id)

    async def on_number_throughput(self, update: NumberThroughputChanged) -> int:
        """Meta changed a number's throughput: read it again for the tenant's active numbers of
        that business account (the webhook names the number by its display number, which Parley
        does not keep) and record it where it changed; how many channels changed."""
        numbers = self.connectors.get(Provider.WHATSAPP)
        if not isinstance(numbers, NumberConnector) or not isinstance(numbers, ThroughputCheck):
            return 0  # WhatsApp not configured here, or its connector cannot tell
        changed = 0
        channels = await self.stores.channels_of_business_account(
            update.tenant_id, Provider.WHATSAPP, update.business_account_id
        )
        for channel in channels:
            credential = await self.stores.credential(channel.id)
            if channel.status is not ChannelStatus.ACTIVE or credential is None:
                continue
            throughput = await self._number_throughput(numbers, channel.account_id, credential.access_token)
            if throughput is None:
                continue
            level, coexistence = throughput.level, throughput.coexistence

            def record(
                current: Channel, level: str | None = level, shared: bool = coexistence
            ) -> list[Event]:
                return current.record_throughput(level, shared)

            after = await self._change_channel(channel.tenant_id, channel.id, record)
            changed += after.revision != channel.revision
        return changed

    async def on_sending_restricted(self, news: ChannelSendingRestricted) -> bool:
        """Policy's news that the provider refused a send because it restricts the account for
        now: recorded on the channel, where its administrators see it (the console's attention
        column). No event follows: nothing downstream reads it. False: nothing to record (no such
        channel in that tenant, disconnected, or older news than what is recorded)."""
        for _ in range(10):
            channel = await self.stores.channel(news.channel_id)
            if channel is None or channel.tenant_id != news.tenant_id:
                return False
            if not channel.sends_refused(news.occurred_at, news.provider_code, news.provider_subcode):
                return False
            try:
                await self.stores.save_channel(channel)
            except VersionConflict:
                continue
            return True
        raise Conflict("CONCURRENT_UPDATE", "the channel keeps changing; try again")

    async def record_business_portfolios(self) -> int:
        """Read the business portfolio of active WhatsApp numbers that name none (connected before
        Parley read it) and publish each channel's snapshot with it, so policy counts their
        messaging limit for the portfolio. Run on a timer on every replica: idempotent (a number
        that has its portfolio is skipped, and the same portfolio recorded twice changes nothing),
        bounded (:data:`PORTFOLIO_READS_PER_ROUND` accounts a round, the ones tried longest ago
        first), and a read the provider refuses is logged and tried again next round. Returns how
        many channels gained their portfolio."""
        numbers = self.connectors.get(Provider.WHATSAPP)
        if not isinstance(numbers, NumberConnector) or not isinstance(numbers, PortfolioCheck):
            return 0  # WhatsApp not configured here, or its connector cannot tell
        lacking = [
            channel
            async for channel in self.stores.channels_with_status((ChannelStatus.ACTIVE,))
            if channel.provider is Provider.WHATSAPP
            and channel.business_account_id
            and not channel.business_portfolio_id
        ]
        never = datetime.min.replace(tzinfo=UTC)
        lacking.sort(key=lambda c: self._portfolio_tried.get(c.business_account_id or "", never))
        portfolios: dict[str, str | None] = {}  # each account asked once a round
        recorded = 0
        for channel in lacking:
            account = channel.business_account_id or ""
            if account not in portfolios:
                if len(portfolios) >= PORTFOLIO_READS_PER_ROUND:
                    break
                credential = await self.stores.credential(channel.id)
                if credential is None:
                    continue
                self._portfolio_tried[account] = self.clock()
                portfolios[account] = await self._business_portfolio(
                    numbers, account, credential.access_token
                )
            portfolio = portfolios[account]
            if portfolio is None:
                continue

            def record(current: Channel, portfolio: str = portfolio) -> list[Event]:
                return current.record_business_portfolio(portfolio)

            after = await self._change_channel(channel.tenant_id, channel.id, record)
            recorded += after.revision != channel.revision
        return recorded

    # --- token lifecycle --------------------------------------------------------------------------

    async def track_business_hours(self) -> int:
        """Announce every active channel's business hours opening or closing (run on a timer on
        every replica: the state announced is saved on the channel with its revision, so of two
        replicas at the same change one saves and publishes, the other finds it done). Returns how
        many changes this call announced."""
        announced = 0
        async for found in self.stores.channels_with_status((ChannelStatus.ACTIVE,)):
            if found.hours_in_force is None and found.hours_open is None:
                continue
            emitted: list[Event] = []

            def track(channel: Channel, out: list[Event] = emitted) -> list[Event]:
                out[:] = channel.track_hours(self.clock())
                return out

            await self._change_channel(found.tenant_id, found.id, track)
            announced += 1 if emitted else 0
        return announced

    async def check_token_expiry(self) -> int:
        """Publish token_expiring for channels whose token expires within the lead time (once each)."""
        lead = timedelta(seconds=self.settings.token_expiry_lead_s)
        horizon = self.clock() + lead
        warned = 0
        for expiring in await self.stores.channels_expiring_by(horizon):
            if await self.renews_token(expiring):
                continue  # its token is renewed every two hours; a refused renewal says reauth_required
            emitted: list[Event] = []

            def check(channel: Channel, out: list[Event] = emitted) -> list[Event]:
                out[:] = channel.check_token_expiry(self.clock(), lead)
                return out

            await self._change_channel(expiring.tenant_id, expiring.id, check)
            warned += 1 if emitted else 0
        return warned

    async def renews_token(self, channel: Channel) -> bool:
        """Whether onboarding renews the channel's token itself before its end (the refresh job:
        its provider rotates grants and the channel holds a refresh token, as X's with
        ``offline.access``): such a token's near end is no news to announce, nor for the console
        to show; a renewal the provider refuses makes the channel ``reauth_required``."""
        if not isinstance(self.connectors.get(channel.provider), RotatingGrant):
            return False
        credential = await self.stores.credential(channel.id)
        return credential is not None and bool(credential.refresh_token)

    async def provider_rejected(self, channel_id: str, code: int | None, subcode: int | None) -> None:
        """A provider call failed with a token or permission error: the channel needs a reconnect."""
        channel = await self.stores.channel(channel_id)
        if channel is None:
            return
        await self._change_channel(
            channel.tenant_id,
            channel_id,
            lambda c: c.require_reauth(
                code, subcode, self.clock(), registry.reauth_reason(c.provider, code, subcode)
            ),
        )

    async def check_channel_token(self, tenant_id: str, channel_id: str) -> Channel:
        """Ask the provider whether the channel's token still works (where its connector can tell:
        Meta's and WhatsApp's, not X's)."""
        channel = await self.channel(tenant_id, channel_id)
        credential = await self.stores.credential(channel_id)
        checker = self.connectors.get(channel.provider)
        if credential is None or not isinstance(checker, TokenCheck):
            return channel
        refusal = await checker.token_refusal(credential.access_token)
        if refusal is not None:
            await self.provider_rejected(channel_id, refusal.code, refusal.subcode)
        return await self.channel(tenant_id, channel_id)

    # --- webhook subscription health ----------------------------------------------------------------

    def _subscription_target(self, channel: Channel) -> tuple[SubscriptionCheck, str] | None:
        """The connector that can check the channel's webhook subscription and the account it is
        held by (an Instagram profile connected through its Page: the Page; one connected with
        Instagram Login: the account itself, through the connector's login check), or None."""
        connector = self.connectors.get(channel.provider)
        if channel.connect_path == INSTAGRAM_LOGIN_PATH:
            # no Page: the account's own subscription, on the Instagram API's host
            if not isinstance(connector, LoginSubscriptionCheck):
                return None
            return connector.login_subscriptions, channel.account_id
        checker = connector
        if not isinstance(checker, SubscriptionCheck):
            return None
        if channel.provider is Provider.INSTAGRAM and channel.business_account_id:
            return checker, channel.business_account_id
        return checker, channel.account_id

    async def check_subscriptions(self) -> int:
        """Check every active channel's webhook subscription (run on a timer); an account several
        channels share (a Page and its Instagram profile) is checked once. Returns how many
        accounts were repaired or found lost."""
        groups: dict[tuple[int, str], list[Channel]] = {}
        async for channel in self.stores.channels_with_status({ChannelStatus.ACTIVE}):
            target = self._subscription_target(channel)
            if target is not None:
                groups.setdefault((id(target[0]), target[1]), []).append(channel)
        changed = 0
        for channels in groups.values():
            try:
                outcome, _ = await self._check_subscription(channels, actor_id=None)
            except ProviderError:
                continue  # the provider did not answer (logged and counted): the next check tries
            changed += outcome in ("repaired", "lost")
        return changed

    async def check_one_channel_subscriptions(
        self, tenant_id: str, channel_id: str, actor_id: str
    ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """An admin's check of one channel, whichever way its provider keeps subscriptions: the
        outcome, what was missing and what was restored."""
        kept = await self.repair_channel_subscriptions(tenant_id, channel_id, actor_id)
        if kept is not None:
            outcome = "lost" if kept.missing else "repaired" if kept.restored else "complete"
            return outcome, kept.restored + kept.missing, kept.restored
        outcome, missing = await self.check_channel_subscription(tenant_id, channel_id, actor_id)
        return outcome, missing, missing if outcome == "repaired" else ()

    async def check_channel_subscription(
        self, tenant_id: str, channel_id: str, actor_id: str
    ) -> tuple[str, tuple[str, ...]]:
        """An admin's check of one channel's webhook subscription (and of the tenant's other
        active channels on the same account): the outcome and what was missing."""
        channel = await self.channel(tenant_id, channel_id)
        target = self._subscription_target(channel)
        if target is None:
            raise DomainError(
                "SUBSCRIPTION_CHECK_UNSUPPORTED",
                f"Parley cannot check the webhook subscription of a {channel.provider.value} channel",
            )
        if channel.status is not ChannelStatus.ACTIVE:
            raise Conflict("CHANNEL_NOT_ACTIVE", "only an active channel's subscription can be checked")
        sharing = [
            c
            for c in await self.channels(tenant_id)
            if c.id != channel.id
            and c.status is ChannelStatus.ACTIVE
            and self._subscription_target(c) == target
        ]
        return await self._check_subscription([channel, *sharing], actor_id=actor_id)

    async def _check_subscription(
        self, channels: list[Channel], actor_id: str | None
    ) -> tuple[str, tuple[str, ...]]:
        """Read the subscription of the channels' account, restore what is missing, tell each
        channel's consumers; the outcome and what was missing. A provider that does not answer
        raises its ProviderError (counted as ``unreachable``)."""
        target = self._subscription_target(channels[0])
        assert target is not None
        checker, account_id = target
        provider = channels[0].provider.value
        credential = None
        for channel in channels:
            credential = await self.stores.credential(channel.id)
            if credential is not None:
                break
        if credential is None:
            log.warning("no credential to check the webhook subscription", account_id=account_id)
            metrics.SUBSCRIPTION_CHECKS.labels(provider=provider, outcome="no_credential").inc()
            return "no_credential", ()
        token = credential.access_token
        missing: tuple[str, ...] = ()
        try:
            missing = await checker.missing_subscriptions(account_id, token)
            if not missing:
                # complete: a gap announced before (an admin fixed it in Meta) is announced closed
                if any(c.subscription_gap for c in channels):  # else nothing to record: no write
                    await self._subscriptions_found(channels, (), (), "", actor_id)
                metrics.SUBSCRIPTION_CHECKS.labels(provider=provider, outcome="complete").inc()
                return "complete", ()
            await checker.restore_subscriptions(account_id, token)
            still = await checker.missing_subscriptions(account_id, token)
        except ProviderError as exc:
            if exc.status >= 500 or exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.RETRYABLE):
                log.warning(
                    "webhook subscription check failed; tried again at the next check",
                    account_id=account_id,
                    provider_status=exc.status,
                    kind=exc.kind.value,
                )
                metrics.SUBSCRIPTION_CHECKS.labels(provider=provider, outcome="unreachable").inc()
                raise
            reason = {
                ErrorKind.REAUTH_REQUIRED: "token_invalid",
                ErrorKind.PERMISSION_MISSING: "permission_missing",
            }.get(exc.kind, "provider_refused")
            # the provider refused before saying what is missing: the gap is the whole subscription
            await self._subscriptions_found(
                channels, (), missing or ("unknown",), reason, actor_id, exc.code, exc.subcode
            )
            if exc.kind is ErrorKind.REAUTH_REQUIRED:
                for channel in channels:
                    await self.provider_rejected(channel.id, exc.code, exc.subcode)
            metrics.SUBSCRIPTION_CHECKS.labels(provider=provider, outcome="lost").inc()
            return "lost", missing
        if still:
            await self._subscriptions_found(channels, (), still, "not_restored", actor_id)
            metrics.SUBSCRIPTION_CHECKS.labels(provider=provider, outcome="lost").inc()
            return "lost", missing
        await self._subscriptions_found(channels, missing, (), "", actor_id)
        log.warning("webhook subscription repaired", account_id=account_id, restored=list(missing))
        metrics.SUBSCRIPTION_CHECKS.labels(provider=provider, outcome="repaired").inc()
        return "repaired", missing

    async def _subscriptions_found(
        self,
        channels: list[Channel],
        restored: tuple[str, ...],
        missing: tuple[str, ...],
        reason: str,
        actor_id: str | None,
        code: int | None = None,
        subcode: int | None = None,
    ) -> None:
        """Record on each channel what a check found: ``subscription_lost`` goes out when a gap
        opens (not again every hour while it lasts), ``subscription_repaired`` for what was
        restored and when a gap closes (the channel keeps the gap)."""
        now = self.clock()

        def record(c: Channel) -> list[Event]:
            return c.subscriptions_found(restored, missing, reason, now, actor_id, code, subcode)

        for channel in channels:
            try:
                await self._change_channel(channel.tenant_id, channel.id, record)
            except DomainError:
                continue  # gone or changing meanwhile: the next check tells
        if missing:
            log.error(
                "webhook subscription lost; an admin must act",
                channels=[c.id for c in channels],
                missing=list(missing),
                reason=reason,
                provider_code=code,
            )

    # --- teams ------------------------------------------------------------------------------------

    async def teams(self, tenant_id: str) -> list[Team]:
        return sorted(await self.stores.tenant_teams(tenant_id), key=lambda t: t.name)

    async def team(self, tenant_id: str, team_id: str) -> Team:
        team = await self.stores.team(team_id)
        if team is None or team.tenant_id != tenant_id or team.deleted:
            raise NotFound("TEAM_NOT_FOUND", "no such team")
        return team

    async def create_team(self, tenant_id: str, name: str) -> Team:
        team = Team.create(tenant_id, name)
        limit = self.settings.max_teams_per_tenant
        if await self.stores.count_teams(tenant_id) >= limit:
            raise Conflict(
                "TEAM_LIMIT_REACHED", f"a tenant may have {limit} teams; delete one first", limit=limit
            )
        await self.stores.save_team(team)
        await self._emit([team.snapshot()])
        return team

    async def change_team(self, tenant_id: str, team_id: str, change: Callable[[Team], bool]) -> Team:
        for _ in range(10):
            team = await self.team(tenant_id, team_id)
            if not change(team):
                return team
            try:
                await self.stores.save_team(team)
            except VersionConflict:
                continue
            await self._emit([team.snapshot()])
            return team
        raise Conflict("CONCURRENT_UPDATE", "the team keeps changing; try again")

    async def delete_team(self, tenant_id: str, team_id: str) -> None:
        await self.change_team(tenant_id, team_id, lambda team: team.delete())
        # channels that granted access to the team lose that grant (a disconnected channel refuses
        # changes; its grant names a deleted team, which gives nobody anything)
        for channel in await self.channels(tenant_id):
            if team_id in channel.access.team_access and channel.status is not ChannelStatus.DISCONNECTED:
                access = Access(
                    user_access=channel.access.user_access,
                    team_access={k: v for k, v in channel.access.team_access.items() if k != team_id},
                    all_users_role=channel.access.all_users_role,
                    all_teams_role=channel.access.all_teams_role,
                )

                def drop_grant(c: Channel, a: Access = access) -> list[Event]:
                    return c.set_access(a, "system", self.clock())

                await self._change_channel(tenant_id, channel.id, drop_grant)
        await self._apply_team_hours(tenant_id)  # a deleted team's schedule is no channel's any more
