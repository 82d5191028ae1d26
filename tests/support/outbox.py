"""Routing's outbox on PostgreSQL, for the tests of its commits and relays."""

from __future__ import annotations

import psycopg
from parley_events import MessageReceived
from parley_shared.store import Store

from tests.unit.factories import message


def batch(*ns_and_ids: tuple[int, str]) -> list[MessageReceived]:
    """Normalized messages ``n`` of conversations ``id``, in the order given."""
    return [message(n, conversation_id=c) for n, c in ns_and_ids]


async def outbox(store: Store) -> list[str]:
    """The event ids left in ``conversation_outbox``."""
    async with store.postgres.connection() as conn:
        cursor = await conn.execute("SELECT event_id FROM conversation_outbox ORDER BY event_id")
        return [row[0] for row in await cursor.fetchall()]


async def let_outbox_leases_run_out(url: str) -> None:
    """Routing's outbox leases, as they are once their time has passed: what a process committed
    or claimed and then died holding (migrations/0003_outbox_claims.sql). Moves them into the
    past instead of waiting (no timed tests)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE conversations SET outbox_claimed_until = now() - interval '1 second'"
            " WHERE outbox_claimed_until IS NOT NULL"
        )
