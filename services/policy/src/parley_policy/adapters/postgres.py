"""Policy's store on PostgreSQL: the ``PolicyStorePort``'s second adapter, and the template cache.

Same contract as :class:`~parley_policy.adapters.stores.PolicyStore` (MongoDB), tables in
migrations/0001_policy.sql. Where the MongoDB adapter's writes are unique-key inserts, these are
``INSERT ... ON CONFLICT DO NOTHING`` on the primary key. Two writes that MongoDB does as a read
then a replace are atomic here: a customer message updates its conversation under the row's lock
(a concurrent private-reply mark is never overwritten), and a rate slot is one counter per
channel-second raised by a conditional upsert rather than one insert per slot tried.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_events import (
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    MessageReceived,
)
from parley_shared.postgres import Pool, dumps, jsonb, migrate, migrations_in

from parley_policy.adapters.stores import TemplateUpdate, conversation_facts, inbound_document, template_after
from parley_policy.domain.decision import ConversationFacts, KnownLimit, TemplateInfo

MIGRATIONS = migrations_in("parley_policy.adapters", "policy")
INBOUND_ATTEMPTS = 3
"""A customer message's conversation is written at the second attempt at worst: the first may
find the row inserted by a concurrent first message, which the second then reads and locks."""


def _loaded(doc: dict[str, Any]) -> dict[str, Any]:
    """A conversation document with its datetimes back from JSON."""
    if doc.get("last_customer_message_at") is not None:
        doc["last_customer_message_at"] = datetime.fromisoformat(doc["last_customer_message_at"])
    doc["comments"] = {k: datetime.fromisoformat(v) for k, v in doc.get("comments", {}).items()}
    return doc


class PostgresPolicyStore:
    """The tables policy owns, on PostgreSQL."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def ensure_indexes(self) -> None:
        """Create the tables and indexes (the migrations not yet applied)."""
        await migrate(self.pool, MIGRATIONS)

    async def record_inbound(self, message: MessageReceived) -> bool:
        """Remember the customer's last message (and comments for private replies); True if newer."""
        async with self.pool.connection() as conn:
            for _ in range(INBOUND_ATTEMPTS):
                async with conn.transaction():
                    cursor = await conn.execute(
                        "SELECT doc FROM policy_conversations WHERE id = %s FOR UPDATE",
                        (message.conversation_id,),
                    )
                    row = await cursor.fetchone()
                    doc, newer = inbound_document({} if row is None else _loaded(row[0]), message)
                    params = (message.conversation_id, doc["last_customer_message_at"], jsonb(dumps(doc)))
                    if row is not None:
                        await conn.execute(
                            "UPDATE policy_conversations SET last_customer_message_at = %s, doc = %s"
                            " WHERE id = %s",
                            (params[1], params[2], params[0]),
                        )
                        return newer
                    cursor = await conn.execute(
                        "INSERT INTO policy_conversations (id, last_customer_message_at, doc)"
                        " VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
                        params,
                    )
                    if cursor.rowcount == 1:
                        return newer
                # a first message of the same conversation was inserted meanwhile: apply on top of it
        raise RuntimeError(f"could not record a message on {message.conversation_id}")

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT doc FROM policy_conversations WHERE id = %s", (conversation_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else _loaded(row[0])

    def facts(self, doc: dict[str, Any]) -> ConversationFacts:
        return conversation_facts(doc)

    async def mark_private_replied(self, conversation_id: str, comment_id: str) -> None:
        """Add the comment to those answered privately, once (a set, like ``$addToSet``)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE policy_conversations SET doc = jsonb_set(doc, '{private_replied}',"
                " COALESCE(doc->'private_replied', '[]'::jsonb) || jsonb_build_array(%s::text))"
                " WHERE id = %s"
                " AND NOT COALESCE(doc->'private_replied', '[]'::jsonb) @> jsonb_build_array(%s::text)",
                (comment_id, conversation_id, comment_id),
            )

    async def claim_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> bool:
        """The comment's one private reply, for ``reply_id``: True if it is this reply's (claimed
        now or earlier by the same reply), False if another reply holds it (the primary key)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO policy_private_replies (conversation_id, comment_id, reply_id)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (conversation_id, comment_id, reply_id),
            )
            if cursor.rowcount == 1:
                return True
            cursor = await conn.execute(
                "SELECT reply_id FROM policy_private_replies WHERE conversation_id = %s AND comment_id = %s",
                (conversation_id, comment_id),
            )
            row = await cursor.fetchone()
        return row is not None and str(row[0]) == reply_id

    async def release_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> None:
        """Give the comment's private reply back if ``reply_id`` holds it (its send failed)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM policy_private_replies"
                " WHERE conversation_id = %s AND comment_id = %s AND reply_id = %s",
                (conversation_id, comment_id, reply_id),
            )

    async def claim_decision(self, key: str, result: dict[str, Any]) -> dict[str, Any] | None:
        """Store a decision under its idempotency key; return the earlier one if there was one."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO policy_decisions (key, result) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, jsonb(dumps(result))),
            )
        if cursor.rowcount == 1:
            return None
        return await self.decision(key)

    async def mark_published(self, key: str) -> None:
        """The decision's events are on the broker: a retried request publishes nothing again."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE policy_decisions SET result = jsonb_set(result, '{published}', 'true')"
                " WHERE key = %s",
                (key,),
            )

    async def delivered(self, reply_id: str) -> str | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT provider_message_id FROM policy_deliveries WHERE reply_id = %s", (reply_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def record_delivery(self, reply_id: str, provider_message_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO policy_deliveries (reply_id, provider_message_id) VALUES (%s, %s)"
                " ON CONFLICT (reply_id) DO NOTHING",
                (reply_id, provider_message_id),
            )

    async def take_rate_slot(self, channel_id: str, second: int, limit: int, hint: int = 0) -> int | None:
        """Claim one of ``limit`` slots of this channel-second; the slot number, or None if all are taken.

        One counter per channel-second, raised only while below ``limit`` (the row lock orders
        concurrent takers): the n-th taker gets slot ``n - 1``. ``hint`` is where the MongoDB
        adapter starts trying its inserts; a counter needs none.
        """
        if limit < 1:
            return None
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO policy_rate_slots AS s (channel_id, second, taken) VALUES (%s, %s, 1)"
                " ON CONFLICT (channel_id, second) DO UPDATE SET taken = s.taken + 1 WHERE s.taken < %s"
                " RETURNING taken",
                (channel_id, second, limit),
            )
            row = await cursor.fetchone()
        return None if row is None else int(row[0]) - 1

    async def forget_slots_before(self, second: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM policy_rate_slots WHERE second < %s", (second,))

    async def claim_notice(self, notice_id: str, at: datetime) -> bool:
        """True the first time a window notice is claimed, across every replica."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO policy_window_notices (notice_id, at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (notice_id, at),
            )
        return cursor.rowcount == 1

    async def windows_due(
        self, due_before: datetime, since: datetime, page: int = 500
    ) -> list[dict[str, Any]]:
        """Conversations whose last customer message falls in [since, due_before], all of them,
        read ``page`` at a time in (time, id) order."""
        found: list[dict[str, Any]] = []
        after: tuple[datetime, str] | None = None
        async with self.pool.connection() as conn:
            while True:
                if after is None:
                    cursor = await conn.execute(
                        "SELECT id, last_customer_message_at, doc FROM policy_conversations"
                        " WHERE last_customer_message_at BETWEEN %s AND %s"
                        " ORDER BY last_customer_message_at, id LIMIT %s",
                        (since, due_before, page),
                    )
                else:
                    cursor = await conn.execute(
                        "SELECT id, last_customer_message_at, doc FROM policy_conversations"
                        " WHERE last_customer_message_at BETWEEN %s AND %s"
                        " AND (last_customer_message_at, id) > (%s, %s)"
                        " ORDER BY last_customer_message_at, id LIMIT %s",
                        (since, due_before, *after, page),
                    )
                rows = await cursor.fetchall()
                found.extend(_loaded(doc) for _, _, doc in rows)
                if len(rows) < page:
                    return found
                after = (rows[-1][1], rows[-1][0])

    async def business_initiated_recipients(self, scope: str, since: datetime) -> set[str]:
        """Customers reached outside the window since ``since`` in a messaging limit's scope."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT recipient_id FROM policy_business_initiated WHERE scope = %s AND at >= %s",
                (scope, since),
            )
            return {row[0] for row in await cursor.fetchall()}

    async def claim_reach(
        self, scope: str, recipient_id: str, at: datetime, since: datetime, limit: int
    ) -> bool:
        """Count a customer reached outside the window at ``at``, if the scope has room; across replicas.

        The count and the insert run under a transaction-scoped advisory lock on the scope, so two
        replicas racing for the last place take turns and the second finds none.
        """
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"policy-reach:{scope}",)
            )
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE recipient_id <> %s), count(*) FILTER (WHERE recipient_id = %s)"
                " FROM policy_business_initiated WHERE scope = %s AND at >= %s",
                (recipient_id, recipient_id, scope, since),
            )
            row = await cursor.fetchone()
            others, mine = (0, 0) if row is None else (int(row[0]), int(row[1]))
            if not mine and others >= limit:
                return False
            await conn.execute(
                "INSERT INTO policy_business_initiated (scope, recipient_id, at) VALUES (%s, %s, %s)"
                " ON CONFLICT (scope, recipient_id) DO UPDATE"
                " SET at = greatest(policy_business_initiated.at, excluded.at)",
                (scope, recipient_id, at),
            )
        return True

    async def carry_reach(self, from_scope: str, to_scope: str, since: datetime) -> int:
        """Count the customers ``from_scope`` holds since ``since`` in ``to_scope`` too, at their
        times (a customer held in both keeps one row, at the later time), under the target scope's
        lock as a claim is. How many rows were written."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"policy-reach:{to_scope}",)
            )
            cursor = await conn.execute(
                "INSERT INTO policy_business_initiated (scope, recipient_id, at)"
                " SELECT %s, recipient_id, at FROM policy_business_initiated WHERE scope = %s AND at >= %s"
                " ON CONFLICT (scope, recipient_id) DO UPDATE"
                " SET at = greatest(policy_business_initiated.at, excluded.at)"
                " WHERE policy_business_initiated.at < excluded.at",
                (to_scope, from_scope, since),
            )
            return max(cursor.rowcount, 0)

    async def record_messaging_limit(self, scope: str, limit: int | None, at: datetime) -> None:
        """The provider's messaging limit for the scope, unless a later one is already recorded."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO policy_messaging_limits (scope, messaging_limit, at) VALUES (%s, %s, %s)"
                " ON CONFLICT (scope) DO UPDATE"
                " SET messaging_limit = excluded.messaging_limit, at = excluded.at"
                " WHERE policy_messaging_limits.at < excluded.at",
                (scope, limit, at),
            )

    async def messaging_limit(self, scope: str) -> KnownLimit | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT messaging_limit FROM policy_messaging_limits WHERE scope = %s", (scope,)
            )
            row = await cursor.fetchone()
        return None if row is None else KnownLimit(row[0])

    async def decision(self, key: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT result FROM policy_decisions WHERE key = %s", (key,))
            row = await cursor.fetchone()
        return None if row is None else dict(row[0])

    async def parley_active(self, conversation_id: str) -> bool:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT parley_active FROM policy_thread_control WHERE id = %s", (conversation_id,)
            )
            row = await cursor.fetchone()
        return True if row is None else bool(row[0])

    async def record_thread_control(self, conversation_id: str, parley_active: bool, at: datetime) -> None:
        """One conditional upsert: a change older than the one kept leaves the row as it is."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO policy_thread_control (id, parley_active, at) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET parley_active = EXCLUDED.parley_active, at = EXCLUDED.at"
                " WHERE policy_thread_control.at <= EXCLUDED.at",
                (conversation_id, parley_active, at),
            )


class PostgresPolicyTemplates:
    """WhatsApp templates by channel (status, parameter count, category): kept in PostgreSQL and in
    memory for decisions (the same answers as :class:`~parley_policy.adapters.stores.PolicyTemplates`)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._by_channel: dict[str, dict[tuple[str, str], TemplateInfo]] = {}

    def of(self, channel_id: str) -> dict[tuple[str, str], TemplateInfo]:
        return self._by_channel.get(channel_id, {})

    async def load(self) -> None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT channel_id, name, language, status, parameter_count, category, quality"
                " FROM policy_templates"
            )
            for channel_id, name, language, status, count, category, quality in await cursor.fetchall():
                self._by_channel.setdefault(channel_id, {})[(name, language)] = TemplateInfo(
                    status, count, category, quality
                )

    async def record(self, update: ChannelTemplateStatusChanged) -> None:
        await self._save(update)

    async def record_category(self, update: ChannelTemplateCategoryChanged) -> None:
        await self._save(update)

    async def record_quality(self, update: ChannelTemplateQualityChanged) -> None:
        await self._save(update)

    async def _save(self, update: TemplateUpdate) -> None:
        name, language = update.template_name or "", update.language or ""
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT status, parameter_count, category, quality FROM policy_templates"
                " WHERE channel_id = %s AND name = %s AND language = %s FOR UPDATE",
                (update.channel_id, name, language),
            )
            row = await cursor.fetchone()
            info = template_after(TemplateInfo(*row) if row else None, update)
            await conn.execute(
                "INSERT INTO policy_templates"
                " (channel_id, name, language, status, parameter_count, category, quality)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (channel_id, name, language) DO UPDATE SET"
                " status = excluded.status, parameter_count = excluded.parameter_count,"
                " category = excluded.category, quality = excluded.quality",
                (
                    update.channel_id,
                    name,
                    language,
                    info.status,
                    info.parameter_count,
                    info.category,
                    info.quality,
                ),
            )
        self._by_channel.setdefault(update.channel_id, {})[(name, language)] = info
