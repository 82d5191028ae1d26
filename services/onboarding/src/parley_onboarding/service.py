"""Service layer: the connection flows, settings, teams and token lifecycle.

Each operation loads aggregates, applies domain rules, saves with a version claim, then
publishes the events (snapshot on the compacted channels topic first, then the lifecycle event).
Provider calls go through the httpx clients in ``parley_providers``.
"""

from __future__ import annotations

import inspect
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_events import (
    ChannelSnapshot,
    ChannelStatus,
    ChannelTemplateStatusChanged,
    Event,
    Provider,
    TeamSnapshot,
    TemplateStatusChanged,
    WhatsAppStepChanged,
)
from parley_providers import ErrorKind, ProviderError, registry
from parley_providers.meta.client import GraphClient  # noqa: TID251 (connect flows: #14)
from parley_providers.meta.errors import INVALID_TOKEN  # noqa: TID251 (connect flows: #14)
from parley_providers.whatsapp import errors as whatsapp_errors  # noqa: TID251 (connect flows: #14)
from parley_providers.x.client import XClient  # noqa: TID251 (connect flows: #14)
from parley_shared.channels import CLAIMING_STATUSES
from parley_shared.logging import get_logger
from parley_shared.mongo import VersionConflict
from parley_shared.vault import Credential, MongoCredentialStore, TokenVault

from parley_onboarding import metrics
from parley_onboarding.adapters.stores import (
    OnboardingStores,
    channel_from_doc,
    channel_to_doc,
    onboarding_from_doc,
    onboarding_to_doc,
    team_from_doc,
    team_to_doc,
)
from parley_onboarding.domain.channels import Access, Channel, channel_id_for
from parley_onboarding.domain.errors import Conflict, DomainError
from parley_onboarding.domain.meta import REQUIRED_PAGE_TASKS, missing_page_tasks
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import StepRecord, WhatsAppOnboarding
from parley_onboarding.settings import OnboardingSettings

Publish = Callable[[Event, str], Awaitable[None]]
Clock = Callable[[], datetime]

log = get_logger(__name__)

STALE_CLAIM_AFTER = timedelta(minutes=10)
"""How old an account claim must be before a claim whose channel does not hold the account is
released for another tenant (younger ones may belong to a connect still saving its channel)."""


class NotFound(DomainError):
    """No such object in the caller's tenant."""

    status = 404


def utcnow() -> datetime:
    return datetime.now(UTC)


class OnboardingService:
    """Everything onboarding does, independent of HTTP."""

    def __init__(
        self,
        stores: OnboardingStores,
        vault: TokenVault,
        graph: GraphClient,
        x: XClient | None,
        publish: Publish,
        settings: OnboardingSettings,
        clock: Clock = utcnow,
    ) -> None:
        self.stores = stores
        self.credentials = MongoCredentialStore(stores.credentials, vault)
        self.vault = vault
        self.graph = graph
        self.x = x
        self.publish = publish
        self.settings = settings
        self.clock = clock

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
        doc = await self.stores.channels.get(channel_id)
        if doc is None or doc["tenant_id"] != tenant_id:
            raise NotFound("CHANNEL_NOT_FOUND", "no such channel")
        return channel_from_doc(doc)

    async def channels(self, tenant_id: str) -> list[Channel]:
        docs = await self.stores.channels.find({"tenant_id": tenant_id})
        return sorted((channel_from_doc(d) for d in docs), key=lambda c: c.id)

    async def _change_channel(
        self, tenant_id: str, channel_id: str, change: Callable[[Channel], list[Event]]
    ) -> Channel:
        for _ in range(10):
            channel = await self.channel(tenant_id, channel_id)
            events = change(channel)
            if not events:
                return channel
            try:
                await self.stores.channels.save(channel_to_doc(channel))
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
    ) -> Channel:
        """Connect a new channel, or reconnect the existing one for the same account."""
        now = self.clock()
        channel_id = channel_id_for(tenant_id, provider, account_id)
        await self._claim_account(tenant_id, provider, account_id)
        expires = credential.expires_at if credential else None
        scopes = credential.scopes if credential else ()
        for _ in range(10):
            doc = await self.stores.channels.get(channel_id)
            if doc is None:
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
                )
            else:
                channel = channel_from_doc(doc)
                events = channel.reconnect(actor_id or "system", now, expires, scopes)
            try:
                await self.stores.channels.save(channel_to_doc(channel))
            except VersionConflict:
                continue
            if credential is not None:
                await self.credentials.put(
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
                holder=holder["channel_id"],
            )
            await self.stores.release_account(provider, account_id, holder["channel_id"])
        raise Conflict("CONCURRENT_UPDATE", "the account's connection keeps changing; try again")

    async def _stale_claim(self, claim: dict[str, Any]) -> bool:
        claimed_at = claim.get("claimed_at")
        if isinstance(claimed_at, datetime) and self.clock() - claimed_at <= STALE_CLAIM_AFTER:
            # young claims may belong to a connect still saving its channel: never read it here
            # (reading rolls a half-saved channel forward, racing the writer's own save)
            return False
        doc = await self.stores.channels.get(claim["channel_id"])
        return doc is None or ChannelStatus(doc["status"]) not in CLAIMING_STATUSES

    async def ensure_account_claims(self) -> int:
        """Claim the accounts of channels that hold one but predate claims (run on start-up).

        Returns how many claims were created. Two channels holding one account (possible before
        claims) are logged: the first keeps the claim, the directory attributes the account to
        neither until one of them is disconnected.
        """
        created = 0
        statuses = [s.value for s in CLAIMING_STATUSES]
        async for doc in self.stores.channels.collection.find({"status": {"$in": statuses}}):
            provider = Provider(doc["provider"])
            inserted, holder = await self.stores.claim_account(
                provider, doc["account_id"], doc["_id"], doc["tenant_id"], self.clock()
            )
            created += int(inserted)
            if holder is not None:
                log.error(
                    "two channels hold one account; disconnect one of them",
                    provider=provider.value,
                    account_id=doc["account_id"],
                    channels=sorted([doc["_id"], holder["channel_id"]]),
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
        return await self._change_channel(
            tenant_id, channel_id, lambda c: c.update_settings(changes, actor_id, self.clock())
        )

    async def set_access(self, tenant_id: str, channel_id: str, access: Access, actor_id: str) -> Channel:
        teams = {t.id for t in await self.teams(tenant_id)}
        unknown = set(access.team_access) - teams
        if unknown:
            raise DomainError(
                "UNKNOWN_TEAM", f"no such team: {', '.join(sorted(unknown))}", field="team_access"
            )
        return await self._change_channel(
            tenant_id, channel_id, lambda c: c.set_access(access, actor_id, self.clock())
        )

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
        await self.credentials.delete(channel_id)
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
        if channel.provider is Provider.MESSENGER:
            page_id: str | None = channel.account_id
        elif channel.provider is Provider.INSTAGRAM:
            page_id = channel.business_account_id
        else:
            return  # X and WhatsApp: see docs/onboarding.md
        if not page_id:
            return
        statuses = {"$in": [s.value for s in CLAIMING_STATUSES]}
        users = await self.stores.channels.find(
            {"provider": Provider.MESSENGER.value, "account_id": page_id, "status": statuses}, limit=1
        ) or await self.stores.channels.find(
            {"provider": Provider.INSTAGRAM.value, "business_account_id": page_id, "status": statuses},
            limit=1,
        )
        if users:
            log.info("page still serves another channel; app stays subscribed", channel_id=channel.id)
            return
        credential = await self.credentials.get(channel.id)
        outcome = "no_credential"
        if credential is not None:
            try:
                await self.graph.unsubscribe_page(page_id, credential.access_token)
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
        short = await self.graph.exchange_code(code, redirect_uri)
        user_token = await self.graph.long_lived_token(short.access_token)
        permissions = await self.graph.permissions(user_token.access_token)
        granted = {name for name, status in permissions.items() if status == "granted"}
        pages = await self.graph.pages(user_token.access_token)
        connection_id = f"conn_{uuid.uuid4().hex}"
        await self.stores.connections.insert_one(
            {
                "_id": connection_id,
                "tenant_id": tenant_id,
                "actor_id": actor_id,
                "created_at": self.clock(),
                # kept only until activation or expiry (then deleted); the user token itself is
                # never stored: activation needs only its expiry and the Page tokens
                "expires_at": self.clock() + timedelta(seconds=self.settings.connection_ttl_s),
                "user_token_expires_at": user_token.expires_at,
                "granted": sorted(granted),
                "pages": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "tasks": list(p.tasks),
                        "token": self.vault.encrypt(p.access_token, connection_id),
                        "instagram_id": p.instagram_business_account_id,
                        "instagram_username": p.instagram_username,
                    }
                    for p in pages
                ],
            }
        )
        existing = {c.account_id for c in await self.channels(tenant_id) if c.status.value != "disconnected"}
        return {
            "connection_id": connection_id,
            "missing_permissions": sorted(set(self.settings.meta_permissions) - granted),
            "missing_instagram_permissions": sorted(set(self.settings.instagram_permissions) - granted),
            "pages": [
                {
                    "page_id": p.id,
                    "name": p.name,
                    "tasks": list(p.tasks),
                    "connected": p.id in existing,
                    "instagram": (
                        {
                            "id": p.instagram_business_account_id,
                            "username": p.instagram_username,
                            "connected": p.instagram_business_account_id in existing,
                        }
                        if p.instagram_business_account_id
                        else None
                    ),
                }
                for p in pages
            ],
        }

    async def activate_meta(
        self, tenant_id: str, actor_id: str, connection_id: str, page_ids: list[str], instagram_ids: list[str]
    ) -> list[Channel]:
        """Activate the selected Pages and Instagram profiles: one channel each."""
        session = await self.stores.connections.find_one({"_id": connection_id, "tenant_id": tenant_id})
        if session is None:
            raise NotFound("CONNECTION_NOT_FOUND", "no such connection; start again")
        expires_at = session.get("expires_at") or session["created_at"] + timedelta(
            seconds=self.settings.connection_ttl_s
        )
        if self.clock() > expires_at:
            await self.stores.connections.delete_one({"_id": connection_id})
            raise DomainError("CONNECTION_EXPIRED", "this connection expired; start again")
        granted = set(session["granted"])
        missing = sorted(set(self.settings.meta_permissions) - granted)
        if page_ids and missing:
            raise DomainError(
                "PERMISSIONS_MISSING", f"grant these permissions: {', '.join(missing)}", missing=missing
            )
        missing_ig = sorted(set(self.settings.instagram_permissions) - granted)
        if instagram_ids and missing_ig:
            raise DomainError(
                "PERMISSIONS_MISSING", f"grant these permissions: {', '.join(missing_ig)}", missing=missing_ig
            )
        pages = {p["id"]: p for p in session["pages"]}
        by_instagram = {p["instagram_id"]: p for p in session["pages"] if p.get("instagram_id")}
        for page_id in page_ids:
            page = pages.get(page_id)
            if page is None:
                raise DomainError(
                    "PAGE_NOT_GRANTED", f"page {page_id} was not granted to Parley", field="page_ids"
                )
            missing_tasks = missing_page_tasks(page["tasks"])
            if missing_tasks:
                raise DomainError(
                    "PAGE_ACCESS_INSUFFICIENT",
                    f"on page {page['name']} you need full control, or the "
                    f"{' and '.join(REQUIRED_PAGE_TASKS)} tasks (missing: {', '.join(missing_tasks)})",
                    field="page_ids",
                    missing_tasks=missing_tasks,
                )
        for instagram_id in instagram_ids:
            if instagram_id not in by_instagram:
                raise DomainError(
                    "INSTAGRAM_NOT_LINKED",
                    f"Instagram account {instagram_id} is not linked to a Facebook Page you granted; "
                    "link it to a Page in Instagram's settings first",
                    field="instagram_account_ids",
                )
            linked = by_instagram[instagram_id]
            missing_tasks = missing_page_tasks(linked["tasks"])
            if missing_tasks:
                raise DomainError(
                    "PAGE_ACCESS_INSUFFICIENT",
                    f"on page {linked['name']}, linked to Instagram account {instagram_id}, you need full "
                    f"control, or the {' and '.join(REQUIRED_PAGE_TASKS)} tasks "
                    f"(missing: {', '.join(missing_tasks)})",
                    field="instagram_account_ids",
                    missing_tasks=missing_tasks,
                )
        activated: list[Channel] = []
        # tracked: the long-lived user token's expiry (the admin's grant); see the onboarding note
        expires = session.get("user_token_expires_at")
        for page_id in page_ids:
            page = pages[page_id]
            token = self.vault.decrypt(page["token"], connection_id)
            await self._claimed_then(
                tenant_id,
                Provider.MESSENGER,
                page_id,
                self.graph.subscribe_page(page_id, token, list(self.settings.page_subscribed_fields)),
            )
            activated.append(
                await self._upsert_connected(
                    tenant_id=tenant_id,
                    provider=Provider.MESSENGER,
                    account_id=page_id,
                    actor_id=actor_id,
                    credential=Credential("", token, expires, tuple(sorted(granted))),
                    display_name=page["name"],
                )
            )
        for instagram_id in instagram_ids:
            page = by_instagram[instagram_id]
            token = self.vault.decrypt(page["token"], connection_id)
            await self._claimed_then(
                tenant_id,
                Provider.INSTAGRAM,
                instagram_id,
                self.graph.subscribe_page(page["id"], token, list(self.settings.page_subscribed_fields)),
            )
            activated.append(
                await self._upsert_connected(
                    tenant_id=tenant_id,
                    provider=Provider.INSTAGRAM,
                    account_id=instagram_id,
                    actor_id=actor_id,
                    credential=Credential("", token, expires, tuple(sorted(granted))),
                    display_name=page.get("instagram_username"),
                    business_account_id=page["id"],
                )
            )
        # the Page tokens now live in the channels' credentials: the connection's copies go
        await self.stores.connections.delete_one({"_id": connection_id})
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

    # --- X ---------------------------------------------------------------------------------

    async def connect_x(
        self, tenant_id: str, actor_id: str, code: str, redirect_uri: str, verifier: str
    ) -> Channel:
        """One handle per authorization: each X account is its own channel."""
        if self.x is None or not self.settings.x_webhook_id:
            raise DomainError("X_NOT_CONFIGURED", "X is not configured on this deployment")
        token = await self.x.exchange_code(code, redirect_uri, verifier)
        user = await self.x.me(token.access_token)
        await self.x.subscribe_account_activity(token.access_token, self.settings.x_webhook_id)
        return await self._upsert_connected(
            tenant_id=tenant_id,
            provider=Provider.X,
            account_id=user.id,
            actor_id=actor_id,
            credential=Credential(
                "", token.access_token, token.expires_at, token.scopes, token.refresh_token
            ),
            display_name=f"@{user.username}",
        )

    # --- WhatsApp --------------------------------------------------------------------------------------

    async def whatsapp(self, tenant_id: str, onboarding_id: str) -> WhatsAppOnboarding:
        doc = await self.stores.whatsapp.get(onboarding_id)
        if doc is None or doc["tenant_id"] != tenant_id:
            raise NotFound("ONBOARDING_NOT_FOUND", "no such WhatsApp onboarding")
        return onboarding_from_doc(doc)

    async def start_whatsapp(self, tenant_id: str) -> WhatsAppOnboarding:
        onboarding = WhatsAppOnboarding(id=f"wa_{uuid.uuid4().hex[:20]}", tenant_id=tenant_id, revision=1)
        await self.stores.whatsapp.save(onboarding_to_doc(onboarding))
        return onboarding

    async def _save_step(self, onboarding: WhatsAppOnboarding, record: StepRecord | None) -> None:
        try:
            await self.stores.whatsapp.save(onboarding_to_doc(onboarding))
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
        now = self.clock()
        if action == "verify-code":
            pin = body.get("pin")
            if pin is not None and not (
                isinstance(pin, str) and len(pin) == 6 and pin.isascii() and pin.isdigit()
            ):
                raise DomainError("INVALID_PIN", "the two-step verification PIN has 6 digits", field="pin")
            return await self._verify_code(onboarding, str(body.get("code", "")), actor_id, now, pin)
        if action == "request-code":
            highest = await self.stores.highest_code_attempt(onboarding.id)
            record = onboarding.code_requested(actor_id, now, highest)
            token = await self._whatsapp_token(onboarding)
            assert onboarding.phone_number_id is not None
            await self.graph.whatsapp_request_code(onboarding.phone_number_id, token, onboarding.code_method)
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
            ),
            "account-created": lambda: onboarding.account_created(
                phone_number_id=str(body.get("phone_number_id", "")),
                waba_id=str(body.get("waba_id", "")),
                by=actor_id,
                at=now,
            ),
            "approve-business-manager": lambda: onboarding.approve_business_manager_request(actor_id, now),
            "business-verified": lambda: onboarding.business_verified(actor_id, now),
            "profile-completed": lambda: onboarding.profile_completed(actor_id, now),
            "request-badge": lambda: onboarding.badge_requested(actor_id, now),
            "badge-decided": lambda: onboarding.badge_decided(bool(body.get("approved")), actor_id, now),
            "submit-templates": lambda: onboarding.templates_submitted(actor_id, now),
        }
        if action not in steps:
            raise NotFound("UNKNOWN_STEP", f"no step {action!r}")
        required = ("phone_number_id", "waba_id", "access_token")
        if action == "account-created" and not all(body.get(k) for k in required):
            raise DomainError("MISSING_FIELDS", "phone_number_id, waba_id and access_token are required")
        record = steps[action]()
        if action == "account-created":
            await self._confirm_waba(onboarding, str(body["access_token"]), now)
            await self.stores.credentials.replace_one(
                {"_id": f"whatsapp:{onboarding.id}"},
                {
                    "_id": f"whatsapp:{onboarding.id}",
                    "token": self.vault.encrypt(str(body["access_token"]), f"whatsapp:{onboarding.id}"),
                },
                upsert=True,
            )
        await self._save_step(onboarding, record)
        return onboarding

    async def _confirm_waba(self, onboarding: WhatsAppOnboarding, token: str, now: datetime) -> None:
        """Before anything is stored: Meta must list the number under the WABA for this token, and
        the WABA must belong to no other tenant (security #13 finding 7)."""
        waba_id, number_id = onboarding.waba_id, onboarding.phone_number_id
        assert waba_id is not None
        assert number_id is not None
        try:
            numbers = await self.graph.whatsapp_phone_numbers(waba_id, token)
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
        if number_id not in {n.id for n in numbers}:
            raise DomainError(
                "WABA_NUMBER_MISMATCH",
                f"phone number {number_id} is not a number of WhatsApp Business Account {waba_id}",
                field="phone_number_id",
            )
        elsewhere = await self.stores.channels.find(
            {
                "provider": Provider.WHATSAPP.value,
                "business_account_id": waba_id,
                "tenant_id": {"$ne": onboarding.tenant_id},
                "status": {"$ne": "disconnected"},
            }
        )
        if elsewhere or await self.stores.claim_waba(waba_id, onboarding.tenant_id, onboarding.id, now):
            raise Conflict(
                "WABA_CLAIMED_ELSEWHERE",
                f"WhatsApp Business Account {waba_id} belongs to another Parley tenant",
                field="waba_id",
            )

    async def _whatsapp_token(self, onboarding: WhatsAppOnboarding) -> str:
        doc = await self.stores.credentials.find_one({"_id": f"whatsapp:{onboarding.id}"})
        if doc is None:
            raise DomainError("MISSING_CREDENTIALS", "the account-created step did not store a token")
        return self.vault.decrypt(doc["token"], f"whatsapp:{onboarding.id}")

    async def _verify_code(
        self,
        onboarding: WhatsAppOnboarding,
        code: str,
        actor_id: str,
        now: datetime,
        pin_given: str | None = None,
    ) -> WhatsAppOnboarding:
        onboarding.check_code_attempt(code, now)
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
            await self.graph.whatsapp_verify_code(onboarding.phone_number_id, token, code)
        except ProviderError as exc:
            if exc.code == whatsapp_errors.WRONG_CODE:
                left = await self._code_rejected(onboarding, attempt)
                raise DomainError("WRONG_CODE", "that code is not right", attempts_left=left) from exc
            # Meta did not judge the code (an outage, a timeout, a refused token): the attempt is
            # given back, or a few failures would use up the code and, through the resends, the
            # whole onboarding
            await self.stores.release_code_attempt(onboarding.id, attempt)
            raise
        # reload: concurrent wrong attempts may have saved the onboarding meanwhile
        onboarding = await self.whatsapp(onboarding.tenant_id, onboarding.id)
        assert onboarding.phone_number_id is not None
        verified = onboarding.phone_verified(actor_id, now)
        await self._save_step(onboarding, verified)
        # register the number for Cloud API messaging with its two-step verification PIN
        pin = str(pin_given) if pin_given else f"{secrets.randbelow(1_000_000):06d}"
        await self.graph.whatsapp_register(onboarding.phone_number_id, token, pin)
        await self.stores.credentials.replace_one(
            {"_id": f"whatsapp-pin:{onboarding.id}"},
            {
                "_id": f"whatsapp-pin:{onboarding.id}",
                "pin": self.vault.encrypt(pin, f"whatsapp-pin:{onboarding.id}"),
            },
            upsert=True,
        )
        channel = await self._upsert_connected(
            tenant_id=onboarding.tenant_id,
            provider=Provider.WHATSAPP,
            account_id=onboarding.phone_number_id,
            actor_id=actor_id,
            credential=Credential("", token, None),
            display_name=onboarding.display_name,
            business_account_id=onboarding.waba_id,
        )
        activated = onboarding.activated(channel.id, actor_id, now)
        await self._save_step(onboarding, activated)
        return onboarding

    async def _code_rejected(self, onboarding: WhatsAppOnboarding, attempt: int) -> int:
        """Record a wrong code under the attempt number claimed for it; the attempts left."""
        for _ in range(10):
            current = await self.whatsapp(onboarding.tenant_id, onboarding.id)
            left = current.code_rejected(attempt)
            try:
                await self.stores.whatsapp.save(onboarding_to_doc(current))
            except VersionConflict:
                continue
            return left
        raise Conflict("CONCURRENT_UPDATE", "the onboarding changed meanwhile; reload it")

    async def on_template_status(self, update: TemplateStatusChanged) -> None:
        """Ingest saw Meta's template review: tell the channel's consumers."""
        docs = await self.stores.channels.find(
            {
                "tenant_id": update.tenant_id,
                "provider": Provider.WHATSAPP.value,
                "business_account_id": update.business_account_id,
            }
        )
        for doc in docs:
            await self.publish(
                ChannelTemplateStatusChanged(
                    event_id=f"tplch_{doc['_id']}_{update.event_id}",
                    channel_id=doc["_id"],
                    tenant_id=doc["tenant_id"],
                    provider=Provider.WHATSAPP,
                    occurred_at=update.provider_timestamp,
                    template_name=update.template_name,
                    language=update.language,
                    status=update.status,
                    reason=update.reason,
                ),
                f"tplch_{doc['_id']}_{update.event_id}",
            )

    # --- token lifecycle --------------------------------------------------------------------------

    async def check_token_expiry(self) -> int:
        """Publish token_expiring for channels whose token expires within the lead time (once each)."""
        lead = timedelta(seconds=self.settings.token_expiry_lead_s)
        horizon = self.clock() + lead
        warned = 0
        for doc in await self.stores.channels.find(
            {"status": "active", "token_expires_at": {"$lte": horizon}}
        ):
            emitted: list[Event] = []

            def check(channel: Channel, out: list[Event] = emitted) -> list[Event]:
                out[:] = channel.check_token_expiry(self.clock(), lead)
                return out

            await self._change_channel(doc["tenant_id"], doc["_id"], check)
            warned += 1 if emitted else 0
        return warned

    async def provider_rejected(self, channel_id: str, code: int | None, subcode: int | None) -> None:
        """A provider call failed with a token or permission error: the channel needs a reconnect."""
        doc = await self.stores.channels.get(channel_id)
        if doc is None:
            return
        await self._change_channel(
            doc["tenant_id"],
            channel_id,
            lambda c: c.require_reauth(
                code, subcode, self.clock(), registry.reauth_reason(c.provider, code, subcode)
            ),
        )

    async def check_channel_token(self, tenant_id: str, channel_id: str) -> Channel:
        """Ask the provider whether the channel's token still works (Meta channels)."""
        channel = await self.channel(tenant_id, channel_id)
        credential = await self.credentials.get(channel_id)
        if credential is None or channel.provider is Provider.X:
            return channel
        try:
            valid, _expires_at, _scopes = await self.graph.debug_token(credential.access_token)
        except ProviderError as exc:
            if exc.kind in (ErrorKind.REAUTH_REQUIRED, ErrorKind.PERMISSION_MISSING):
                await self.provider_rejected(channel_id, exc.code, exc.subcode)
                return await self.channel(tenant_id, channel_id)
            raise
        if not valid:
            code, subcode = INVALID_TOKEN, None
            try:
                # debug_token says only "invalid": a call with the token itself says why (code, subcode)
                await self.graph.permissions(credential.access_token)
            except ProviderError as exc:
                code, subcode = exc.code or INVALID_TOKEN, exc.subcode
            await self.provider_rejected(channel_id, code, subcode)
        return await self.channel(tenant_id, channel_id)

    # --- teams ------------------------------------------------------------------------------------

    async def teams(self, tenant_id: str) -> list[Team]:
        docs = await self.stores.teams.find({"tenant_id": tenant_id, "deleted": False})
        return sorted((team_from_doc(d) for d in docs), key=lambda t: t.name)

    async def team(self, tenant_id: str, team_id: str) -> Team:
        doc = await self.stores.teams.get(team_id)
        if doc is None or doc["tenant_id"] != tenant_id or doc.get("deleted"):
            raise NotFound("TEAM_NOT_FOUND", "no such team")
        return team_from_doc(doc)

    async def create_team(self, tenant_id: str, name: str) -> Team:
        team = Team.create(tenant_id, name)
        limit = self.settings.max_teams_per_tenant
        if await self.stores.count_teams(tenant_id) >= limit:
            raise Conflict(
                "TEAM_LIMIT_REACHED", f"a tenant may have {limit} teams; delete one first", limit=limit
            )
        await self.stores.teams.save(team_to_doc(team))
        await self._emit([team.snapshot()])
        return team

    async def change_team(self, tenant_id: str, team_id: str, change: Callable[[Team], bool]) -> Team:
        for _ in range(10):
            team = await self.team(tenant_id, team_id)
            if not change(team):
                return team
            try:
                await self.stores.teams.save(team_to_doc(team))
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
