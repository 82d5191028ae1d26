"""Onboarding's part of ``parley store copy`` (parley_shared.storecopy): the collections of
:class:`~parley_onboarding.adapters.stores.MongoOnboardingStore` into the tables of
:class:`~parley_onboarding.adapters.postgres.PostgresOnboardingStore`, and the vault's sealed
credentials (``channel_credentials``) with them.

Channels, teams and WhatsApp onboardings are read at their newest claimed version, go through the
domain (``channel_from_doc`` and back with ``channel_to_doc``) and are written as the PostgreSQL
adapter's saves write them (its ``_body``: the document without its id and version, datetimes
tagged). Secrets are never decrypted: the credentials and the started Meta connections keep their
ciphertexts, sealed with the row's id as on MongoDB, so the same keys open them on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_shared.postgres import dumps_dated, jsonb
from parley_shared.storecopy import CopyPlan, Documents, Row, Table, newest_documents
from parley_shared.vault import MIGRATIONS as VAULT_MIGRATIONS
from pymongo.asynchronous.database import AsyncDatabase

from parley_onboarding.adapters.postgres import MIGRATIONS, _body
from parley_onboarding.adapters.stores import (
    channel_from_doc,
    channel_to_doc,
    onboarding_from_doc,
    onboarding_to_doc,
    team_from_doc,
    team_to_doc,
)


def channel_row(doc: dict[str, Any]) -> Row:
    """A ``channels`` row as ``PostgresOnboardingStore.save_channel`` writes it."""
    channel = channel_from_doc(doc)
    return (
        channel.id,
        channel.revision,
        channel.tenant_id,
        channel.provider.value,
        channel.account_id,
        channel.business_account_id,
        channel.status.value,
        channel.token_expires_at,
        jsonb(_body(channel_to_doc(channel))),
    )


async def _channels(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in newest_documents(db["channels"]):
        yield channel_row(doc)


async def _teams(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in newest_documents(db["teams"]):
        team = team_from_doc(doc)
        yield (team.id, team.revision, team.tenant_id, team.deleted, jsonb(_body(team_to_doc(team))))


async def _onboardings(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in newest_documents(db["whatsapp_onboardings"]):
        onboarding = onboarding_from_doc(doc)
        yield (
            onboarding.id,
            onboarding.revision,
            onboarding.tenant_id,
            onboarding.channel_id,
            jsonb(_body(onboarding_to_doc(onboarding))),
        )


async def _code_attempts(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["whatsapp_code_attempts"].find({}):
        yield (doc["onboarding_id"], int(doc["n"]), doc["at"])


async def _waba_claims(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["waba_claims"].find({}):
        yield (doc["_id"], doc["tenant_id"], doc["onboarding_id"], doc["claimed_at"])


def account_claim_row(doc: dict[str, Any]) -> Row:
    """An account's claim; a ``claimed_at`` that is not a time (older documents) becomes null, as
    the MongoDB adapter reads it."""
    claimed_at = doc.get("claimed_at")
    return (
        doc["_id"],
        doc["channel_id"],
        doc["tenant_id"],
        claimed_at if isinstance(claimed_at, datetime) else None,
    )


async def _account_claims(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["account_claims"].find({}):
        yield account_claim_row(doc)


def refresh_claim_row(doc: dict[str, Any]) -> Row:
    """``<channel id>:<grant digest>:<n>``: the digest is hex and ``n`` a number, so the channel
    id is whatever comes before them (it may hold ``:``)."""
    _, digest, n = doc["_id"].rsplit(":", 2)
    return (doc["channel_id"], digest, int(n), doc["at"])


async def _refresh_claims(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["token_refresh_claims"].find({}):
        yield refresh_claim_row(doc)


async def _connections(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    """Started Meta connections, their Page tokens still sealed (``_body`` as ``save_connection``)."""
    async for doc in db["meta_connections"].find({}):
        yield (doc["_id"], doc["tenant_id"], doc["created_at"], doc.get("expires_at"), jsonb(_body(doc)))


def credential_row(doc: dict[str, Any]) -> Row:
    """A vault row: the sealed document as it is, without its id (the row's key, and the associated
    data every ciphertext in it was sealed with)."""
    return (doc["_id"], jsonb(dumps_dated({k: v for k, v in doc.items() if k != "_id"})))


async def _credentials(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["channel_credentials"].find({}):
        yield credential_row(doc)


def _versioned(collection: str, table: str, values: tuple[str, ...], read: Any) -> Table:
    return Table(collection, table, key=("id",), values=values, read=read, versioned=True)


def copy_plan() -> CopyPlan:
    """Onboarding's tables (and the vault's) for ``parley store copy``."""
    return CopyPlan(
        service="onboarding",
        migrations=[*VAULT_MIGRATIONS, *MIGRATIONS],
        tables=[
            _versioned(
                "channels",
                "channels",
                (
                    "version",
                    "tenant_id",
                    "provider",
                    "account_id",
                    "business_account_id",
                    "status",
                    "token_expires_at",
                    "doc",
                ),
                _channels,
            ),
            _versioned("teams", "teams", ("version", "tenant_id", "deleted", "doc"), _teams),
            _versioned(
                "whatsapp_onboardings",
                "whatsapp_onboardings",
                ("version", "tenant_id", "channel_id", "doc"),
                _onboardings,
            ),
            Table(
                "whatsapp_code_attempts",
                "whatsapp_code_attempts",
                key=("onboarding_id", "n"),
                values=("at",),
                read=_code_attempts,
            ),
            Table(
                "waba_claims",
                "waba_claims",
                key=("id",),
                values=("tenant_id", "onboarding_id", "claimed_at"),
                read=_waba_claims,
            ),
            Table(
                "account_claims",
                "account_claims",
                key=("id",),
                values=("channel_id", "tenant_id", "claimed_at"),
                read=_account_claims,
            ),
            Table(
                "token_refresh_claims",
                "token_refresh_claims",
                key=("channel_id", "grant_digest", "n"),
                values=("at",),
                read=_refresh_claims,
            ),
            Table(
                "meta_connections",
                "meta_connections",
                key=("id",),
                values=("tenant_id", "created_at", "expires_at", "doc"),
                read=_connections,
            ),
            Table(
                "channel_credentials",
                "channel_credentials",
                key=("id",),
                values=("doc",),
                read=_credentials,
            ),
        ],
    )
