"""MongoDB storage of onboarding's aggregates (version claims, see docs/storage.md)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from parley_events import ChannelRole, ChannelStatus, Provider
from parley_shared.mongo import MongoVersionedDocuments
from pymongo.errors import DuplicateKeyError

from parley_onboarding.domain.channels import Access, Channel, Settings
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


class OnboardingStores:
    """The collections onboarding owns."""

    def __init__(self, db: Any) -> None:
        self.channels = MongoVersionedDocuments(db["channels"])
        self.teams = MongoVersionedDocuments(db["teams"])
        self.whatsapp = MongoVersionedDocuments(db["whatsapp_onboardings"])
        self.connections = db["meta_connections"]
        self.credentials = db["channel_credentials"]
        # one document per WhatsApp code attempt, "<onboarding id>:<n>": the unique _id counts it
        self.code_attempts = db["whatsapp_code_attempts"]
        # one document per WhatsApp Business Account, _id = the WABA id: one tenant per WABA
        self.waba_claims = db["waba_claims"]
        # one document per claimed account: its unique _id lets exactly one channel hold an account
        self.account_claims = db["account_claims"]

    async def count_teams(self, tenant_id: str) -> int:
        """The tenant's teams that are not deleted (uses ``teams_by_tenant``)."""
        return int(await self.teams.collection.count_documents({"tenant_id": tenant_id, "deleted": False}))

    async def claim_waba(
        self, waba_id: str, tenant_id: str, onboarding_id: str, at: datetime
    ) -> dict[str, Any] | None:
        """Claim a WABA for a tenant (a unique ``_id`` insert); None when the tenant holds it now,
        else the claim of the tenant that does."""
        try:
            await self.waba_claims.insert_one(
                {"_id": waba_id, "tenant_id": tenant_id, "onboarding_id": onboarding_id, "claimed_at": at}
            )
            return None
        except DuplicateKeyError:
            holder = await self.waba_claims.find_one({"_id": waba_id})
        return None if holder is None or holder["tenant_id"] == tenant_id else dict(holder)

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

    async def ensure_indexes(self) -> None:
        for store in (self.channels, self.teams, self.whatsapp):
            await store.ensure_indexes()
        await self.channels.collection.create_index(
            [("tenant_id", 1), ("provider", 1)], name="channels_by_tenant"
        )
        await self.teams.collection.create_index([("tenant_id", 1)], name="teams_by_tenant")
        await self.connections.create_index([("created_at", 1)], name="connections_by_age")
        await self.connections.create_index([("expires_at", 1)], name="connections_by_expiry")

    async def prune_connections(self, now: datetime, ttl: timedelta) -> int:
        """Delete started Meta connections that expired (FerretDB 1.24 has no TTL indexes, so this
        runs on a timer and expired ones are refused on read); how many went."""
        expired = await self.connections.delete_many({"expires_at": {"$lte": now}})
        # documents written before connections carried expires_at
        legacy = await self.connections.delete_many(
            {"expires_at": {"$exists": False}, "created_at": {"$lte": now - ttl}}
        )
        return int(expired.deleted_count) + int(legacy.deleted_count)

    async def purge_channel_secrets(self, tenant_id: str, channel_id: str, account_id: str) -> int:
        """Delete every secret a disconnected channel leaves (its own credential is deleted by the
        credential store): the WhatsApp onboarding's system-user token, two-step PIN and code
        attempts, and the tenant's started Meta connections listing the account's Page token.
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

    async def claim_account(
        self, provider: Provider, account_id: str, channel_id: str, tenant_id: str, at: datetime
    ) -> tuple[bool, dict[str, Any] | None]:
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
            return False, (None if holder["channel_id"] == channel_id else holder)
        raise RuntimeError(f"the claim of {claim_id} keeps changing")

    async def release_account(self, provider: Provider, account_id: str, channel_id: str) -> bool:
        """Give up an account's claim if this channel holds it; whether a claim was deleted."""
        result = await self.account_claims.delete_one(
            {"_id": account_claim_id(provider, account_id), "channel_id": channel_id}
        )
        return bool(result.deleted_count)
