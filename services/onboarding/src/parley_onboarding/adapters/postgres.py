"""Onboarding's store on PostgreSQL: the ``OnboardingStore`` port's second adapter.

Same contract as :class:`~parley_onboarding.adapters.stores.MongoOnboardingStore`, tables in
migrations/0001_onboarding.sql. Channels, teams and WhatsApp onboardings keep the MongoDB
adapter's document in ``doc`` (its datetimes tagged, ``parley_shared.postgres.dumps_dated``) with
the fields queries filter on as columns. A save of version N is one upsert that updates only a row
below N, under the row's lock, so exactly one writer wins each version without the version claims
MongoDB needs; every "one holder" (an account, a WABA, a code attempt) is an
``INSERT ... ON CONFLICT DO NOTHING`` on a primary key. Secrets are sealed by the vault as on
MongoDB: the credentials in the vault's ``channel_credentials``, the Page tokens of a started
connection in its ``doc``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from datetime import datetime, timedelta
from typing import Any, LiteralString

from parley_events import ChannelStatus, Provider
from parley_shared.channels import CLAIMING_STATUSES
from parley_shared.mongo import VersionConflict
from parley_shared.postgres import Pool, dumps_dated, jsonb, migrate, migrations_in, undated
from parley_shared.vault import MIGRATIONS as VAULT_MIGRATIONS
from parley_shared.vault import Credential, PostgresCredentialStore, TokenVault
from psycopg import sql

from parley_onboarding.adapters.stores import (
    REFRESH_CLAIM_ATTEMPTS,
    AccountClaim,
    account_claim_id,
    channel_from_doc,
    channel_to_doc,
    connection_from_doc,
    connection_to_doc,
    onboarding_from_doc,
    onboarding_to_doc,
    team_from_doc,
    team_to_doc,
)
from parley_onboarding.domain.channels import Channel
from parley_onboarding.domain.connections import PageConnection
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import WhatsAppOnboarding

MIGRATIONS = migrations_in("parley_onboarding.adapters", "onboarding")
CHANNEL_PAGE = 500
"""Channels read per statement when every channel of some statuses is walked."""
CLAIM_ATTEMPTS = 5
"""Reads of an account's claim that a concurrent release may empty before this call inserts."""


def _body(doc: dict[str, Any]) -> bytes:
    """A document's JSON without what its row keeps as columns of its own (id, version)."""
    return dumps_dated({k: v for k, v in doc.items() if k not in ("_id", "version")})


def _doc(row_id: str, version: int | None, body: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = undated(body)
    doc["_id"] = row_id
    if version is not None:
        doc["version"] = version
    return doc


def channel_row(channel: Channel) -> tuple[Any, ...]:
    """The ``channels`` row of a channel: its columns, then its document (``parley store copy``
    writes the same row)."""
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


def team_row(team: Team) -> tuple[Any, ...]:
    """The ``teams`` row of a team."""
    return (team.id, team.revision, team.tenant_id, team.deleted, jsonb(_body(team_to_doc(team))))


def onboarding_row(onboarding: WhatsAppOnboarding) -> tuple[Any, ...]:
    """The ``whatsapp_onboardings`` row of a WhatsApp onboarding."""
    document = jsonb(_body(onboarding_to_doc(onboarding)))
    return (onboarding.id, onboarding.revision, onboarding.tenant_id, onboarding.channel_id, document)


class PostgresOnboardingStore:
    """The tables onboarding owns, on PostgreSQL (and the vault's ``channel_credentials``)."""

    def __init__(self, pool: Pool, vault: TokenVault) -> None:
        self.pool = pool
        self.vault = vault
        self.channel_credentials = PostgresCredentialStore(pool, vault)

    async def _rows(
        self, query: LiteralString | sql.Composed, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

    async def _rowcount(self, query: LiteralString, params: tuple[Any, ...]) -> int:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return cursor.rowcount

    async def _channels(
        self, where: LiteralString, params: tuple[Any, ...], limit: int | None = None
    ) -> list[Channel]:
        query = sql.SQL("SELECT id, version, doc FROM channels WHERE {} ORDER BY id LIMIT {}").format(
            sql.SQL(where), sql.Literal(limit)
        )
        rows = await self._rows(query, params)
        return [channel_from_doc(_doc(*row)) for row in rows]

    async def _save(self, query: LiteralString, doc_id: str, params: tuple[Any, ...]) -> None:
        """One versioned upsert; VersionConflict unless it inserted or raised the row's version."""
        if await self._rowcount(query, params) != 1:
            raise VersionConflict(doc_id)

    # --- channels

    async def channel(self, channel_id: str) -> Channel | None:
        found = await self._channels("id = %s", (channel_id,))
        return found[0] if found else None

    async def tenant_channels(self, tenant_id: str) -> list[Channel]:
        return await self._channels("tenant_id = %s", (tenant_id,))

    async def save_channel(self, channel: Channel) -> None:
        await self._save(
            "INSERT INTO channels AS c (id, version, tenant_id, provider, account_id,"
            " business_account_id, status, token_expires_at, doc)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, tenant_id = excluded.tenant_id,"
            " provider = excluded.provider, account_id = excluded.account_id,"
            " business_account_id = excluded.business_account_id, status = excluded.status,"
            " token_expires_at = excluded.token_expires_at, doc = excluded.doc"
            " WHERE c.version < excluded.version",
            channel.id,
            channel_row(channel),
        )

    async def channels_with_status(self, statuses: Collection[ChannelStatus]) -> AsyncIterator[Channel]:
        """Every channel in one of ``statuses``, read ``CHANNEL_PAGE`` at a time in id order."""
        values, after = [s.value for s in statuses], ""
        while page := await self._channels("status = ANY(%s) AND id > %s", (values, after), CHANNEL_PAGE):
            for channel in page:
                yield channel
            after = page[-1].id

    async def channels_expiring_by(self, horizon: datetime) -> list[Channel]:
        return await self._channels("status = 'active' AND token_expires_at <= %s", (horizon,))

    async def channels_of_business_account(
        self, tenant_id: str, provider: Provider, business_account_id: str
    ) -> list[Channel]:
        return await self._channels(
            "business_account_id = %s AND provider = %s AND tenant_id = %s",
            (business_account_id, provider.value, tenant_id),
        )

    async def page_in_use(self, page_id: str) -> bool:
        statuses = [s.value for s in CLAIMING_STATUSES]
        rows = await self._rows(
            "SELECT EXISTS (SELECT 1 FROM channels WHERE status = ANY(%s) AND ("
            " (provider = %s AND account_id = %s) OR (provider = %s AND business_account_id = %s)))",
            (statuses, Provider.MESSENGER.value, page_id, Provider.INSTAGRAM.value, page_id),
        )
        return bool(rows[0][0])

    async def waba_connected_elsewhere(self, waba_id: str, tenant_id: str) -> bool:
        rows = await self._rows(
            "SELECT EXISTS (SELECT 1 FROM channels WHERE business_account_id = %s AND provider = %s"
            " AND tenant_id <> %s AND status <> 'disconnected')",
            (waba_id, Provider.WHATSAPP.value, tenant_id),
        )
        return bool(rows[0][0])

    # --- who holds an account, a WABA

    async def claim_account(
        self, provider: Provider, account_id: str, channel_id: str, tenant_id: str, at: datetime
    ) -> tuple[bool, AccountClaim | None]:
        """Claim an account for a channel (a primary-key insert); ``(inserted, holder)``: ``holder``
        is None when the channel holds the claim now, else the claim of the channel holding it."""
        claim_id = account_claim_id(provider, account_id)
        for _ in range(CLAIM_ATTEMPTS):
            inserted = await self._rowcount(
                "INSERT INTO account_claims (id, channel_id, tenant_id, claimed_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                (claim_id, channel_id, tenant_id, at),
            )
            if inserted:
                return True, None
            rows = await self._rows(
                "SELECT channel_id, tenant_id, claimed_at FROM account_claims WHERE id = %s", (claim_id,)
            )
            if not rows:
                continue  # released in between: try again
            holder = AccountClaim(*rows[0])
            return False, (None if holder.channel_id == channel_id else holder)
        raise RuntimeError(f"the claim of {claim_id} keeps changing")

    async def release_account(self, provider: Provider, account_id: str, channel_id: str) -> bool:
        """Give up an account's claim if this channel holds it; whether a claim was deleted."""
        return bool(
            await self._rowcount(
                "DELETE FROM account_claims WHERE id = %s AND channel_id = %s",
                (account_claim_id(provider, account_id), channel_id),
            )
        )

    async def claim_waba(self, waba_id: str, tenant_id: str, onboarding_id: str, at: datetime) -> str | None:
        """Claim a WABA for a tenant; None when the tenant holds it now, else the tenant that does."""
        inserted = await self._rowcount(
            "INSERT INTO waba_claims (id, tenant_id, onboarding_id, claimed_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING",
            (waba_id, tenant_id, onboarding_id, at),
        )
        if inserted:
            return None
        rows = await self._rows("SELECT tenant_id FROM waba_claims WHERE id = %s", (waba_id,))
        return None if not rows or rows[0][0] == tenant_id else str(rows[0][0])

    async def release_waba(self, waba_id: str, tenant_id: str) -> bool:
        """Give up a WABA's claim unless a channel of the tenant that is not disconnected still
        uses the WABA (checked in the same statement); whether a claim was deleted."""
        return bool(
            await self._rowcount(
                "DELETE FROM waba_claims WHERE id = %s AND tenant_id = %s AND NOT EXISTS ("
                " SELECT 1 FROM channels WHERE business_account_id = %s AND provider = %s"
                " AND tenant_id = %s AND status <> 'disconnected')",
                (waba_id, tenant_id, waba_id, Provider.WHATSAPP.value, tenant_id),
            )
        )

    # --- teams

    async def team(self, team_id: str) -> Team | None:
        rows = await self._rows("SELECT id, version, doc FROM teams WHERE id = %s", (team_id,))
        return team_from_doc(_doc(*rows[0])) if rows else None

    async def tenant_teams(self, tenant_id: str) -> list[Team]:
        rows = await self._rows(
            "SELECT id, version, doc FROM teams WHERE tenant_id = %s AND NOT deleted ORDER BY id",
            (tenant_id,),
        )
        return [team_from_doc(_doc(*row)) for row in rows]

    async def save_team(self, team: Team) -> None:
        await self._save(
            "INSERT INTO teams AS t (id, version, tenant_id, deleted, doc) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, tenant_id = excluded.tenant_id,"
            " deleted = excluded.deleted, doc = excluded.doc WHERE t.version < excluded.version",
            team.id,
            team_row(team),
        )

    async def count_teams(self, tenant_id: str) -> int:
        """The tenant's teams that are not deleted."""
        rows = await self._rows(
            "SELECT count(*) FROM teams WHERE tenant_id = %s AND NOT deleted", (tenant_id,)
        )
        return int(rows[0][0])

    # --- WhatsApp onboardings

    async def onboarding(self, onboarding_id: str) -> WhatsAppOnboarding | None:
        rows = await self._rows(
            "SELECT id, version, doc FROM whatsapp_onboardings WHERE id = %s", (onboarding_id,)
        )
        return onboarding_from_doc(_doc(*rows[0])) if rows else None

    async def onboarding_of_channel(self, channel_id: str) -> WhatsAppOnboarding | None:
        rows = await self._rows(
            "SELECT id, version, doc FROM whatsapp_onboardings WHERE channel_id = %s LIMIT 1", (channel_id,)
        )
        return onboarding_from_doc(_doc(*rows[0])) if rows else None

    async def save_onboarding(self, onboarding: WhatsAppOnboarding) -> None:
        await self._save(
            "INSERT INTO whatsapp_onboardings AS w (id, version, tenant_id, channel_id, doc)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, tenant_id = excluded.tenant_id,"
            " channel_id = excluded.channel_id, doc = excluded.doc WHERE w.version < excluded.version",
            onboarding.id,
            onboarding_row(onboarding),
        )

    async def claim_code_attempt(self, onboarding_id: str, numbers: range, at: datetime) -> int | None:
        """Claim the first free attempt number of ``numbers`` (a primary-key insert each); None
        when every one is taken."""
        for n in numbers:
            if await self._rowcount(
                "INSERT INTO whatsapp_code_attempts (onboarding_id, n, at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (onboarding_id, n, at),
            ):
                return n
        return None

    async def release_code_attempt(self, onboarding_id: str, n: int) -> None:
        """Give back an attempt number Meta did not judge (it failed or was unreachable)."""
        await self._rowcount(
            "DELETE FROM whatsapp_code_attempts WHERE onboarding_id = %s AND n = %s", (onboarding_id, n)
        )

    async def highest_code_attempt(self, onboarding_id: str) -> int:
        """The highest attempt number claimed on the onboarding so far (0 when none)."""
        rows = await self._rows(
            "SELECT COALESCE(max(n), 0) FROM whatsapp_code_attempts WHERE onboarding_id = %s",
            (onboarding_id,),
        )
        return int(rows[0][0])

    # --- refresh tokens that work once (X)

    async def claim_token_refresh(
        self, channel_id: str, grant: str, at: datetime, lease: timedelta
    ) -> int | None:
        """A primary-key insert per attempt number: exactly one replica spends the refresh token."""
        for n in range(REFRESH_CLAIM_ATTEMPTS):
            if await self._rowcount(
                "INSERT INTO token_refresh_claims (channel_id, grant_digest, n, at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (channel_id, grant, n, at),
            ):
                return n
            rows = await self._rows(
                "SELECT at FROM token_refresh_claims WHERE channel_id = %s AND grant_digest = %s AND n = %s",
                (channel_id, grant, n),
            )
            if rows and rows[0][0] > at - lease:
                return None  # held, and its holder may still be refreshing
        return None

    async def release_token_refresh(self, channel_id: str, grant: str, attempt: int) -> None:
        await self._rowcount(
            "DELETE FROM token_refresh_claims WHERE channel_id = %s AND grant_digest = %s AND n = %s",
            (channel_id, grant, attempt),
        )

    async def prune_token_refresh_claims(self, before: datetime) -> int:
        return await self._rowcount("DELETE FROM token_refresh_claims WHERE at <= %s", (before,))

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
        doc = dumps_dated({field: self.vault.encrypt(secret, doc_id)})
        await self._rowcount(
            "INSERT INTO channel_credentials (id, doc) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
            (doc_id, jsonb(doc)),
        )

    async def save_whatsapp_token(self, onboarding_id: str, token: str) -> None:
        """The system user's token given at account-created (``whatsapp:<onboarding id>``)."""
        await self._seal(f"whatsapp:{onboarding_id}", "token", token)

    async def whatsapp_token(self, onboarding_id: str) -> str | None:
        doc_id = f"whatsapp:{onboarding_id}"
        rows = await self._rows("SELECT doc FROM channel_credentials WHERE id = %s", (doc_id,))
        return self.vault.decrypt(rows[0][0]["token"], doc_id) if rows else None

    async def save_whatsapp_pin(self, onboarding_id: str, pin: str) -> None:
        """The number's two-step verification PIN (``whatsapp-pin:<onboarding id>``)."""
        await self._seal(f"whatsapp-pin:{onboarding_id}", "pin", pin)

    async def whatsapp_pin(self, onboarding_id: str) -> str | None:
        doc_id = f"whatsapp-pin:{onboarding_id}"
        rows = await self._rows("SELECT doc FROM channel_credentials WHERE id = %s", (doc_id,))
        return self.vault.decrypt(rows[0][0]["pin"], doc_id) if rows else None

    async def purge_channel_secrets(self, tenant_id: str, channel_id: str, account_id: str) -> int:
        """Delete every secret a disconnected channel leaves (its own credential is deleted by
        :meth:`delete_credential`): the WhatsApp onboarding's system-user token, two-step PIN and
        code attempts, and the tenant's started Meta connections listing the account's Page
        token, in one transaction. How many rows went (attempts not counted, as on MongoDB)."""
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT id FROM whatsapp_onboardings WHERE channel_id = %s AND tenant_id = %s",
                (channel_id, tenant_id),
            )
            onboardings = [row[0] for row in await cursor.fetchall()]
            secrets = [f"{prefix}:{o}" for o in onboardings for prefix in ("whatsapp", "whatsapp-pin")]
            cursor = await conn.execute("DELETE FROM channel_credentials WHERE id = ANY(%s)", (secrets,))
            deleted = cursor.rowcount
            await conn.execute(
                "DELETE FROM whatsapp_code_attempts WHERE onboarding_id = ANY(%s)", (onboardings,)
            )
            cursor = await conn.execute(
                "DELETE FROM meta_connections WHERE tenant_id = %s"
                " AND (doc -> 'pages' @> %s OR doc -> 'pages' @> %s)",
                (
                    tenant_id,
                    jsonb(dumps_dated([{"id": account_id}])),
                    jsonb(dumps_dated([{"instagram_id": account_id}])),
                ),
            )
            return deleted + cursor.rowcount

    # --- started Page connections

    async def save_connection(self, connection: PageConnection) -> None:
        doc = connection_to_doc(connection, self.vault)
        await self._rowcount(
            "INSERT INTO meta_connections (id, tenant_id, created_at, expires_at, doc)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                connection.id,
                connection.tenant_id,
                connection.created_at,
                connection.expires_at,
                jsonb(_body(doc)),
            ),
        )

    async def connection(self, tenant_id: str, connection_id: str) -> PageConnection | None:
        rows = await self._rows(
            "SELECT id, doc FROM meta_connections WHERE id = %s AND tenant_id = %s",
            (connection_id, tenant_id),
        )
        return connection_from_doc(_doc(rows[0][0], None, rows[0][1]), self.vault) if rows else None

    async def delete_connection(self, connection_id: str) -> None:
        await self._rowcount("DELETE FROM meta_connections WHERE id = %s", (connection_id,))

    async def prune_connections(self, now: datetime, ttl: timedelta) -> int:
        """Delete started Meta connections that expired (those without ``expires_at``, written
        before connections carried it, after ``ttl``); how many went."""
        return await self._rowcount(
            "DELETE FROM meta_connections"
            " WHERE expires_at <= %s OR (expires_at IS NULL AND created_at <= %s)",
            (now, now - ttl),
        )

    async def ensure_indexes(self) -> None:
        """Create the tables and indexes: the vault's and onboarding's migrations not yet applied."""
        await migrate(self.pool, [*VAULT_MIGRATIONS, *MIGRATIONS])
