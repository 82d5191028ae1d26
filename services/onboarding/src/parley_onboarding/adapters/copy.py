"""Onboarding's part of ``parley store copy`` (parley_shared.storecopy): the collections of
:class:`~parley_onboarding.adapters.stores.MongoOnboardingStore` into the tables of
:class:`~parley_onboarding.adapters.postgres.PostgresOnboardingStore`, and the vault's sealed
credentials (``channel_credentials``) with them.

Channels, teams and WhatsApp onboardings are read at their newest claimed version, go through the
domain (``channel_from_doc``) and become the rows the PostgreSQL adapter's saves write
(``channel_row``, ``team_row``, ``onboarding_row``: the columns, and the document without its id
and version, datetimes tagged). Secrets are never decrypted: the credentials and the started Meta
connections keep their ciphertexts, sealed with the row's id as on MongoDB, so the same keys open
them on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_shared.postgres import dumps_dated, jsonb
from parley_shared.storecopy import CopyPlan, Row, Table, each, fields
from parley_shared.vault import MIGRATIONS as VAULT_MIGRATIONS

from parley_onboarding.adapters.postgres import (
    MIGRATIONS,
    _body,
    channel_row,
    onboarding_row,
    team_row,
)
from parley_onboarding.adapters.stores import channel_from_doc, onboarding_from_doc, team_from_doc

_CHANNEL = (
    "version",
    "tenant_id",
    "provider",
    "account_id",
    "business_account_id",
    "status",
    "token_expires_at",
    "doc",
)


def _channel_row(doc: dict[str, Any]) -> Row:
    return channel_row(channel_from_doc(doc))


def _team_row(doc: dict[str, Any]) -> Row:
    return team_row(team_from_doc(doc))


def _onboarding_row(doc: dict[str, Any]) -> Row:
    return onboarding_row(onboarding_from_doc(doc))


def _code_attempt_row(doc: dict[str, Any]) -> Row:
    return (doc["onboarding_id"], int(doc["n"]), doc["at"])


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


def refresh_claim_row(doc: dict[str, Any]) -> Row:
    """``<channel id>:<grant digest>:<n>``: the digest is hex and ``n`` a number, so the channel
    id is whatever comes before them (it may hold ``:``)."""
    _, digest, n = doc["_id"].rsplit(":", 2)
    return (doc["channel_id"], digest, int(n), doc["at"])


def _connection_row(doc: dict[str, Any]) -> Row:
    """A started Meta connection, its Page tokens still sealed (``_body`` as ``save_connection``)."""
    return (doc["_id"], doc["tenant_id"], doc["created_at"], doc.get("expires_at"), jsonb(_body(doc)))


def credential_row(doc: dict[str, Any]) -> Row:
    """A vault row: the sealed document as it is, without its id (the row's key, and the associated
    data every ciphertext in it was sealed with)."""
    return (doc["_id"], jsonb(dumps_dated({k: v for k, v in doc.items() if k != "_id"})))


def copy_plan() -> CopyPlan:
    """Onboarding's tables (and the vault's) for ``parley store copy``."""
    return CopyPlan(
        service="onboarding",
        migrations=[*VAULT_MIGRATIONS, *MIGRATIONS],
        tables=[
            Table("channels", ("id",), _CHANNEL, each(_channel_row), versioned=True),
            Table(
                "teams", ("id",), ("version", "tenant_id", "deleted", "doc"), each(_team_row), versioned=True
            ),
            Table(
                "whatsapp_onboardings",
                ("id",),
                ("version", "tenant_id", "channel_id", "doc"),
                each(_onboarding_row),
                versioned=True,
            ),
            Table("whatsapp_code_attempts", ("onboarding_id", "n"), ("at",), each(_code_attempt_row)),
            Table(
                "waba_claims",
                ("id",),
                ("tenant_id", "onboarding_id", "claimed_at"),
                each(fields("_id", "tenant_id", "onboarding_id", "claimed_at")),
            ),
            Table(
                "account_claims", ("id",), ("channel_id", "tenant_id", "claimed_at"), each(account_claim_row)
            ),
            Table(
                "token_refresh_claims", ("channel_id", "grant_digest", "n"), ("at",), each(refresh_claim_row)
            ),
            Table(
                "meta_connections",
                ("id",),
                ("tenant_id", "created_at", "expires_at", "doc"),
                each(_connection_row),
            ),
            Table("channel_credentials", ("id",), ("doc",), each(credential_row)),
        ],
    )
