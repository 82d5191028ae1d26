"""Onboarding's store: the port its service is typed against, and its MongoDB adapter.

Channels, teams and WhatsApp onboardings are saved by version claims (docs/storage.md); every
"one holder" (an account, a WABA, a code attempt) is a unique ``_id`` insert, atomic on MongoDB and
FerretDB alike. Secrets (channel credentials, WhatsApp tokens and PINs, the Page tokens of a
started connection) are encrypted by the adapter with the vault before they are written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from parley_events import ChannelRole, ChannelStatus, Provider
from parley_providers.base import GrantedPage
from parley_shared.channels import CLAIMING_STATUSES
from parley_shared.mongo import MongoVersionedDocuments
from parley_shared.vault import Credential, MongoCredentialStore, TokenVault
from pymongo.errors import DuplicateKeyError

from parley_onboarding.domain.channels import Access, Channel, Settings
from parley_onboarding.domain.connections import PageConnection
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import Actor, Step, StepRecord, WhatsAppOnboarding


def channel_to_doc(channel: Channel) -> dict[str, Any]:
    return {
        "_id": channel.id,
        "version": channel.revision,
        "tenant_id": channel.tenant_id,
        "provider": channel.provider.value,
        "account_id": channel.account_id,
        "business_account_id": channel.business_account_id,
        "status": channel.status.value,
        "connected_by": channel.connected_by,
        "settings": asdict(channel.settings),
        "access": {
            "user_access": {k: v.value for k, v in channel.access.user_access.items()},
            "team_access": {k: v.value for k, v in channel.access.team_access.items()},
            "all_users_role": channel.access.all_users_role.value if channel.access.all_users_role else None,
            "all_teams_role": channel.access.all_teams_role.value if channel.access.all_teams_role else None,
        },
        "token_expires_at": channel.token_expires_at,
        "scopes": list(channel.scopes),
        "expiry_warned_for": channel.expiry_warned_for,
        "connect_path": channel.connect_path,
        "subscription_gap": list(channel.subscription_gap),
        "throughput_level": channel.throughput_level,
        "coexistence": channel.coexistence,
        "business_portfolio_id": channel.business_portfolio_id,
    }


def channel_from_doc(doc: dict[str, Any]) -> Channel:
    access = doc.get("access", {})
    return Channel(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        provider=Provider(doc["provider"]),
        account_id=doc["account_id"],
        business_account_id=doc.get("business_account_id"),
        status=ChannelStatus(doc["status"]),
        connected_by=doc.get("connected_by"),
        settings=Settings(**doc.get("settings", {})),
        access=Access(
            user_access={k: ChannelRole(v) for k, v in access.get("user_access", {}).items()},
            team_access={k: ChannelRole(v) for k, v in access.get("team_access", {}).items()},
            all_users_role=ChannelRole(access["all_users_role"]) if access.get("all_users_role") else None,
            all_teams_role=ChannelRole(access["all_teams_role"]) if access.get("all_teams_role") else None,
        ),
        token_expires_at=doc.get("token_expires_at"),
        scopes=tuple(doc.get("scopes", [])),
        expiry_warned_for=doc.get("expiry_warned_for"),
        connect_path=doc.get("connect_path"),
        subscription_gap=tuple(doc.get("subscription_gap") or ()),
        throughput_level=doc.get("throughput_level"),
        coexistence=bool(doc.get("coexistence", False)),
        business_portfolio_id=doc.get("business_portfolio_id"),
        revision=doc["version"],
    )


def team_to_doc(team: Team) -> dict[str, Any]:
    return {
        "_id": team.id,
        "version": team.revision,
        "tenant_id": team.tenant_id,
        "name": team.name,
        "members": list(team.members),
        "deleted": team.deleted,
    }


def team_from_doc(doc: dict[str, Any]) -> Team:
    return Team(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        name=doc["name"],
        members=list(doc["members"]),
        revision=doc["version"],
        deleted=doc.get("deleted", False),
    )


def onboarding_to_doc(onboarding: WhatsAppOnboarding) -> dict[str, Any]:
    doc = {k: v for k, v in asdict(onboarding).items() if k not in ("id", "history", "revision", "step")}
    doc.update(
        _id=onboarding.id,
        version=onboarding.revision,
        step=onboarding.step.value,
        history=[
            {
                "step": r.step.value,
                "at": r.at,
                "by": r.by,
                "next_actor": r.next_actor.value,
                "expected_wait": r.expected_wait,
            }
            for r in onboarding.history
        ],
    )
    return doc


def onboarding_from_doc(doc: dict[str, Any]) -> WhatsAppOnboarding:
    fields = {k: v for k, v in doc.items() if k not in ("_id", "version", "step", "history")}
    return WhatsAppOnboarding(
        id=doc["_id"],
        step=Step(doc["step"]),
        revision=doc["version"],
        history=[
            StepRecord(
                step=Step(r["step"]),
                at=r["at"],
                by=r["by"],
                next_actor=Actor(r["next_actor"]),
                expected_wait=r["expected_wait"],
            )
            for r in doc.get("history", [])
        ],
        **fields,
    )


REFRESH_CLAIM_ATTEMPTS = 3
"""Claims on one refresh token at most: the first, and takeovers of a claim whose holder stopped."""


def account_claim_id(provider: Provider, account_id: str) -> str:
    """The ``_id`` of an account's claim: one per (provider, account id), whatever the tenant."""
    return f"{provider.value}:{account_id}"


# Every field that holds a vault ciphertext, as (collection, dotted path; a list on the path is
# walked element by element), the document's _id being the associated data of each. This is the one
# list `parley credentials rotate` walks (parley_shared.vault.rotate_sealed): a new kind of secret
# is added here or it is not rotated.
SEALED_FIELDS: tuple[tuple[str, str], ...] = (
    ("channel_credentials", "token"),  # channels' tokens; WhatsApp system-user tokens (whatsapp:<id>)
    ("channel_credentials", "refresh"),  # X refresh tokens
    ("channel_credentials", "pin"),  # WhatsApp two-step verification PINs (whatsapp-pin:<id>)
    ("meta_connections", "pages.token"),  # the Page tokens of a started Meta connection
    ("meta_connections", "user_token"),  # the user token (connections written before it was dropped)
)


def connection_to_doc(connection: PageConnection, vault: TokenVault) -> dict[str, Any]:
    """A started connection's document; each Page token sealed with the connection id."""
    return {
        "_id": connection.id,
        "tenant_id": connection.tenant_id,
        "actor_id": connection.actor_id,
        "created_at": connection.created_at,
        "expires_at": connection.expires_at,
        "user_token_expires_at": connection.user_token_expires_at,
        "granted": sorted(connection.granted),
        "pages": [
            {
                "id": p.id,
                "name": p.name,
                "tasks": list(p.tasks),
                "token": vault.encrypt(p.access_token, connection.id),
                "instagram_id": p.instagram_id,
                "instagram_username": p.instagram_username,
            }
            for p in connection.pages
        ],
    }


def connection_from_doc(doc: dict[str, Any], vault: TokenVault) -> PageConnection:
    return PageConnection(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        actor_id=doc["actor_id"],
        created_at=doc["created_at"],
        expires_at=doc.get("expires_at"),
        user_token_expires_at=doc.get("user_token_expires_at"),
        granted=frozenset(doc["granted"]),
        pages=tuple(
            GrantedPage(
                id=p["id"],
                name=p["name"],
                access_token=vault.decrypt(p["token"], doc["_id"]),
                tasks=tuple(p["tasks"]),
                instagram_id=p.get("instagram_id"),
                instagram_username=p.get("instagram_username"),
            )
            for p in doc["pages"]
        ),
    )


@dataclass(frozen=True)
class AccountClaim:
    """The channel holding an account: webhooks for the account reach this channel's tenant."""

    channel_id: str
    tenant_id: str
    claimed_at: datetime | None


def _claim_from_doc(doc: dict[str, Any]) -> AccountClaim:
    claimed_at = doc.get("claimed_at")
    return AccountClaim(
        doc["channel_id"], doc["tenant_id"], claimed_at if isinstance(claimed_at, datetime) else None
    )


class OnboardingStore(Protocol):
    """Every store operation onboarding's service uses (one port). The Mongo adapter is
    :class:`MongoOnboardingStore`; tests/support/fakes/onboarding.py keeps an in-memory one to the
    same contract. ``save_*`` of a version another writer saved first raises
    ``parley_shared.mongo.VersionConflict``."""

    # --- channels
    async def channel(self, channel_id: str) -> Channel | None: ...

    async def tenant_channels(self, tenant_id: str) -> list[Channel]: ...

    async def save_channel(self, channel: Channel) -> None: ...

    def channels_with_status(self, statuses: Collection[ChannelStatus]) -> AsyncIterator[Channel]:
        """Every channel in one of ``statuses``, of every tenant (read as it goes)."""
        ...

    async def channels_expiring_by(self, horizon: datetime) -> list[Channel]:
        """Active channels whose token expires at ``horizon`` or before."""
        ...

    async def channels_of_business_account(
        self, tenant_id: str, provider: Provider, business_account_id: str
    ) -> list[Channel]: ...

    async def page_in_use(self, page_id: str) -> bool:
        """Whether an active or reauth_required channel runs on the Page: its Messenger channel or
        an Instagram profile linked to it."""
        ...

    async def waba_connected_elsewhere(self, waba_id: str, tenant_id: str) -> bool:
        """Whether a WhatsApp channel of another tenant, not disconnected, is on the WABA."""
        ...

    # --- who holds an account, a WABA
    async def claim_account(
        self, provider: Provider, account_id: str, channel_id: str, tenant_id: str, at: datetime
    ) -> tuple[bool, AccountClaim | None]:
        """Claim an account for a channel; ``(inserted, holder)``: ``holder`` is None when the
        channel holds the claim now (``inserted``: this call made it), else the claim holding it."""
        ...

    async def release_account(self, provider: Provider, account_id: str, channel_id: str) -> bool: ...

    async def claim_waba(self, waba_id: str, tenant_id: str, onboarding_id: str, at: datetime) -> str | None:
        """Claim a WABA for a tenant; None when the tenant holds it now, else the tenant that does."""
        ...

    async def release_waba(self, waba_id: str, tenant_id: str) -> bool: ...

    # --- teams
    async def team(self, team_id: str) -> Team | None: ...

    async def tenant_teams(self, tenant_id: str) -> list[Team]:
        """The tenant's teams that are not deleted."""
        ...

    async def save_team(self, team: Team) -> None: ...

    async def count_teams(self, tenant_id: str) -> int: ...

    # --- WhatsApp onboardings
    async def onboarding(self, onboarding_id: str) -> WhatsAppOnboarding | None: ...

    async def onboarding_of_channel(self, channel_id: str) -> WhatsAppOnboarding | None:
        """The WhatsApp onboarding that activated the channel, if one did."""
        ...

    async def save_onboarding(self, onboarding: WhatsAppOnboarding) -> None: ...

    async def claim_code_attempt(self, onboarding_id: str, numbers: range, at: datetime) -> int | None: ...

    async def release_code_attempt(self, onboarding_id: str, n: int) -> None: ...

    async def highest_code_attempt(self, onboarding_id: str) -> int: ...

    # --- refresh tokens that work once (X)
    async def claim_token_refresh(
        self, channel_id: str, grant: str, at: datetime, lease: timedelta
    ) -> int | None:
        """Claim the one spending of a refresh token (``grant``: its digest, never the token): the
        attempt number this call holds, or None when another holds it. A claim older than
        ``lease`` (its holder stopped before finishing) is taken over by claiming the next attempt
        number, at most REFRESH_CLAIM_ATTEMPTS in all."""
        ...

    async def release_token_refresh(self, channel_id: str, grant: str, attempt: int) -> None:
        """Give back a claim whose refresh token the provider answered without taking (an outage)."""
        ...

    async def prune_token_refresh_claims(self, before: datetime) -> int:
        """Delete refresh claims made before ``before``; how many went."""
        ...

    # --- secrets
    async def put_credential(self, credential: Credential) -> None: ...

    async def replace_credential(self, credential: Credential, spent_refresh_token: str) -> bool:
        """Store a refreshed credential only if the stored one is still the spent grant's (a
        reconnect meanwhile wins); see ``CredentialStore.replace_grant``."""
        ...

    async def credential(self, channel_id: str) -> Credential | None: ...

    async def delete_credential(self, channel_id: str) -> None: ...

    async def save_whatsapp_token(self, onboarding_id: str, token: str) -> None: ...

    async def whatsapp_token(self, onboarding_id: str) -> str | None: ...

    async def save_whatsapp_pin(self, onboarding_id: str, pin: str) -> None: ...

    async def purge_channel_secrets(self, tenant_id: str, channel_id: str, account_id: str) -> int: ...

    # --- started Page connections
    async def save_connection(self, connection: PageConnection) -> None: ...

    async def connection(self, tenant_id: str, connection_id: str) -> PageConnection | None: ...

    async def delete_connection(self, connection_id: str) -> None: ...

    async def prune_connections(self, now: datetime, ttl: timedelta) -> int: ...

    async def ensure_indexes(self) -> None: ...


class MongoOnboardingStore:
    """The collections onboarding owns."""

    def __init__(self, db: Any, vault: TokenVault) -> None:
        self.vault = vault
        self.channels = MongoVersionedDocuments(db["channels"])
        self.teams = MongoVersionedDocuments(db["teams"])
        self.whatsapp = MongoVersionedDocuments(db["whatsapp_onboardings"])
        self.connections = db["meta_connections"]
        self.credentials = db["channel_credentials"]
        self.channel_credentials = MongoCredentialStore(self.credentials, vault)
        # one document per WhatsApp code attempt, "<onboarding id>:<n>": the unique _id counts it
        self.code_attempts = db["whatsapp_code_attempts"]
        # one document per WhatsApp Business Account, _id = the WABA id: one tenant per WABA
        self.waba_claims = db["waba_claims"]
        # one document per claimed account: its unique _id lets exactly one channel hold an account
        self.account_claims = db["account_claims"]
        # one document per spending of a refresh token, "<channel>:<digest>:<n>": one spender each
        self.refresh_claims = db["token_refresh_claims"]

    # --- channels

    async def channel(self, channel_id: str) -> Channel | None:
        doc = await self.channels.get(channel_id)
        return None if doc is None else channel_from_doc(doc)

    async def tenant_channels(self, tenant_id: str) -> list[Channel]:
        return [channel_from_doc(d) for d in await self.channels.find({"tenant_id": tenant_id})]

    async def save_channel(self, channel: Channel) -> None:
        await self.channels.save(channel_to_doc(channel))

    async def channels_with_status(self, statuses: Collection[ChannelStatus]) -> AsyncIterator[Channel]:
        query = {"status": {"$in": [s.value for s in statuses]}}
        async for doc in self.channels.collection.find(query):
            yield channel_from_doc(doc)

    async def channels_expiring_by(self, horizon: datetime) -> list[Channel]:
        docs = await self.channels.find({"status": "active", "token_expires_at": {"$lte": horizon}})
        return [channel_from_doc(d) for d in docs]

    async def channels_of_business_account(
        self, tenant_id: str, provider: Provider, business_account_id: str
    ) -> list[Channel]:
        docs = await self.channels.find(
            {"tenant_id": tenant_id, "provider": provider.value, "business_account_id": business_account_id}
        )
        return [channel_from_doc(d) for d in docs]

    async def page_in_use(self, page_id: str) -> bool:
        statuses = {"$in": [s.value for s in CLAIMING_STATUSES]}
        return bool(
            await self.channels.find(
                {"provider": Provider.MESSENGER.value, "account_id": page_id, "status": statuses}, limit=1
            )
            or await self.channels.find(
                {"provider": Provider.INSTAGRAM.value, "business_account_id": page_id, "status": statuses},
                limit=1,
            )
        )

    async def waba_connected_elsewhere(self, waba_id: str, tenant_id: str) -> bool:
        return bool(
            await self.channels.find(
                {
                    "provider": Provider.WHATSAPP.value,
                    "business_account_id": waba_id,
                    "tenant_id": {"$ne": tenant_id},
                    "status": {"$ne": "disconnected"},
                }
            )
        )

    # --- who holds an account, a WABA

    async def claim_account(
        self, provider: Provider, account_id: str, channel_id: str, tenant_id: str, at: datetime
    ) -> tuple[bool, AccountClaim | None]:
        """Claim an account for a channel by inserting its claim (a unique ``_id``: atomic on MongoDB
        and FerretDB alike, docs/storage.md).

        Returns ``(inserted, holder)``: ``holder`` is None when the channel holds the claim now
        (``inserted`` says whether this call made it), else the claim of the channel holding it.
        """
        claim_id = account_claim_id(provider, account_id)
        for _ in range(5):
            try:
                await self.account_claims.insert_one(
                    {"_id": claim_id, "channel_id": channel_id, "tenant_id": tenant_id, "claimed_at": at}
                )
                return True, None
            except DuplicateKeyError:
                holder = await self.account_claims.find_one({"_id": claim_id})
            if holder is None:
                continue  # released in between: try again
            return False, (None if holder["channel_id"] == channel_id else _claim_from_doc(holder))
        raise RuntimeError(f"the claim of {claim_id} keeps changing")

    async def release_account(self, provider: Provider, account_id: str, channel_id: str) -> bool:
        """Give up an account's claim if this channel holds it; whether a claim was deleted."""
        result = await self.account_claims.delete_one(
            {"_id": account_claim_id(provider, account_id), "channel_id": channel_id}
        )
        return bool(result.deleted_count)

    async def claim_waba(self, waba_id: str, tenant_id: str, onboarding_id: str, at: datetime) -> str | None:
        """Claim a WABA for a tenant (a unique ``_id`` insert); None when the tenant holds it now,
        else the tenant that does."""
        try:
            await self.waba_claims.insert_one(
                {"_id": waba_id, "tenant_id": tenant_id, "onboarding_id": onboarding_id, "claimed_at": at}
            )
            return None
        except DuplicateKeyError:
            holder = await self.waba_claims.find_one({"_id": waba_id})
        return None if holder is None or holder["tenant_id"] == tenant_id else str(holder["tenant_id"])

    async def release_waba(self, waba_id: str, tenant_id: str) -> bool:
        """Give up a WABA's claim unless a channel of the tenant that is not disconnected still
        uses the WABA; whether a claim was deleted."""
        in_use = await self.channels.collection.find_one(
            {
                "tenant_id": tenant_id,
                "provider": Provider.WHATSAPP.value,
                "business_account_id": waba_id,
                "status": {"$ne": "disconnected"},
            },
            {"_id": 1},
        )
        if in_use is not None:
            return False
        result = await self.waba_claims.delete_one({"_id": waba_id, "tenant_id": tenant_id})
        return bool(result.deleted_count)

    # --- teams

    async def team(self, team_id: str) -> Team | None:
        doc = await self.teams.get(team_id)
        return None if doc is None else team_from_doc(doc)

    async def tenant_teams(self, tenant_id: str) -> list[Team]:
        return [team_from_doc(d) for d in await self.teams.find({"tenant_id": tenant_id, "deleted": False})]

    async def save_team(self, team: Team) -> None:
        await self.teams.save(team_to_doc(team))

    async def count_teams(self, tenant_id: str) -> int:
        """The tenant's teams that are not deleted (uses ``teams_by_tenant``)."""
        return int(await self.teams.collection.count_documents({"tenant_id": tenant_id, "deleted": False}))

    # --- WhatsApp onboardings

    async def onboarding(self, onboarding_id: str) -> WhatsAppOnboarding | None:
        doc = await self.whatsapp.get(onboarding_id)
        return None if doc is None else onboarding_from_doc(doc)

    async def onboarding_of_channel(self, channel_id: str) -> WhatsAppOnboarding | None:
        found = await self.whatsapp.collection.find_one({"channel_id": channel_id}, {"_id": 1})
        return None if found is None else await self.onboarding(found["_id"])

    async def save_onboarding(self, onboarding: WhatsAppOnboarding) -> None:
        await self.whatsapp.save(onboarding_to_doc(onboarding))

    async def claim_code_attempt(self, onboarding_id: str, numbers: range, at: datetime) -> int | None:
        """Claim the first free attempt number of ``numbers`` (a unique insert each: atomic on
        MongoDB and FerretDB alike); None when every one is taken."""
        for n in numbers:
            try:
                await self.code_attempts.insert_one(
                    {"_id": f"{onboarding_id}:{n}", "onboarding_id": onboarding_id, "n": n, "at": at}
                )
            except DuplicateKeyError:
                continue
            return n
        return None

    async def release_code_attempt(self, onboarding_id: str, n: int) -> None:
        """Give back an attempt number Meta did not judge (it failed or was unreachable)."""
        await self.code_attempts.delete_one({"_id": f"{onboarding_id}:{n}"})

    async def highest_code_attempt(self, onboarding_id: str) -> int:
        """The highest attempt number claimed on the onboarding so far (0 when none)."""
        docs = self.code_attempts.find({"onboarding_id": onboarding_id}, {"n": 1})
        return max([int(doc["n"]) async for doc in docs], default=0)

    # --- refresh tokens that work once (X)

    async def claim_token_refresh(
        self, channel_id: str, grant: str, at: datetime, lease: timedelta
    ) -> int | None:
        """A unique ``_id`` insert per attempt number (atomic on MongoDB and FerretDB alike): of
        replicas refreshing one channel at once exactly one spends its refresh token."""
        for n in range(REFRESH_CLAIM_ATTEMPTS):
            claim_id = f"{channel_id}:{grant}:{n}"
            try:
                await self.refresh_claims.insert_one({"_id": claim_id, "channel_id": channel_id, "at": at})
                return n
            except DuplicateKeyError:
                held = await self.refresh_claims.find_one({"_id": claim_id})
                if held is not None and held["at"].replace(tzinfo=at.tzinfo) > at - lease:
                    return None  # held, and its holder may still be refreshing
        return None

    async def release_token_refresh(self, channel_id: str, grant: str, attempt: int) -> None:
        await self.refresh_claims.delete_one({"_id": f"{channel_id}:{grant}:{attempt}"})

    async def prune_token_refresh_claims(self, before: datetime) -> int:
        return int((await self.refresh_claims.delete_many({"at": {"$lte": before}})).deleted_count)

    # --- secrets

    async def put_credential(self, credential: Credential) -> None:
        await self.channel_credentials.put(credential)

    async def replace_credential(self, credential: Credential, spent_refresh_token: str) -> bool:
        return await self.channel_credentials.replace_grant(credential, spent_refresh_token)

    async def credential(self, channel_id: str) -> Credential | None:
        return await self.channel_credentials.get(channel_id)

    async def delete_credential(self, channel_id: str) -> None:
        await self.channel_credentials.delete(channel_id)

    async def _seal(self, doc_id: str, field: str, secret: str) -> None:
        doc = {"_id": doc_id, field: self.vault.encrypt(secret, doc_id)}
        await self.credentials.replace_one({"_id": doc_id}, doc, upsert=True)

    async def save_whatsapp_token(self, onboarding_id: str, token: str) -> None:
        """The system user's token given at account-created (``whatsapp:<onboarding id>``)."""
        await self._seal(f"whatsapp:{onboarding_id}", "token", token)

    async def whatsapp_token(self, onboarding_id: str) -> str | None:
        doc_id = f"whatsapp:{onboarding_id}"
        doc = await self.credentials.find_one({"_id": doc_id})
        return None if doc is None else self.vault.decrypt(doc["token"], doc_id)

    async def save_whatsapp_pin(self, onboarding_id: str, pin: str) -> None:
        """The number's two-step verification PIN (``whatsapp-pin:<onboarding id>``)."""
        await self._seal(f"whatsapp-pin:{onboarding_id}", "pin", pin)

    async def purge_channel_secrets(self, tenant_id: str, channel_id: str, account_id: str) -> int:
        """Delete every secret a disconnected channel leaves (its own credential is deleted by
        :meth:`delete_credential`): the WhatsApp onboarding's system-user token, two-step PIN and
        code attempts, and the tenant's started Meta connections listing the account's Page token.
        How many documents went."""
        deleted = 0
        for doc in await self.whatsapp.find({"tenant_id": tenant_id, "channel_id": channel_id}):
            ids = [f"whatsapp:{doc['_id']}", f"whatsapp-pin:{doc['_id']}"]
            deleted += int((await self.credentials.delete_many({"_id": {"$in": ids}})).deleted_count)
            await self.code_attempts.delete_many({"onboarding_id": doc["_id"]})
        for field in ("pages.id", "pages.instagram_id"):
            result = await self.connections.delete_many({"tenant_id": tenant_id, field: account_id})
            deleted += int(result.deleted_count)
        return deleted

    # --- started Page connections

    async def save_connection(self, connection: PageConnection) -> None:
        await self.connections.insert_one(connection_to_doc(connection, self.vault))

    async def connection(self, tenant_id: str, connection_id: str) -> PageConnection | None:
        doc = await self.connections.find_one({"_id": connection_id, "tenant_id": tenant_id})
        return None if doc is None else connection_from_doc(doc, self.vault)

    async def delete_connection(self, connection_id: str) -> None:
        await self.connections.delete_one({"_id": connection_id})

    async def prune_connections(self, now: datetime, ttl: timedelta) -> int:
        """Delete started Meta connections that expired (FerretDB 1.24 has no TTL indexes, so this
        runs on a timer and expired ones are refused on read); how many went."""
        expired = await self.connections.delete_many({"expires_at": {"$lte": now}})
        # documents written before connections carried expires_at (a null matches a missing field)
        legacy = await self.connections.delete_many({"expires_at": None, "created_at": {"$lte": now - ttl}})
        return int(expired.deleted_count) + int(legacy.deleted_count)

    async def ensure_indexes(self) -> None:
        for store in (self.channels, self.teams, self.whatsapp):
            await store.ensure_indexes()
        await self.channels.collection.create_index(
            [("tenant_id", 1), ("provider", 1)], name="channels_by_tenant"
        )
        await self.teams.collection.create_index([("tenant_id", 1)], name="teams_by_tenant")
        await self.connections.create_index([("created_at", 1)], name="connections_by_age")
        await self.connections.create_index([("expires_at", 1)], name="connections_by_expiry")
        await self.refresh_claims.create_index([("at", 1)], name="refresh_claims_by_age")
