"""The reports read model on PostgreSQL: the ``ReportStore`` port's second adapter.

A save of version N+1 is ``UPDATE ... WHERE id = ... AND version = N`` (or an insert that finds
no row, for version 1): exactly one writer wins each version (migrations/0001_reports.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from parley_shared.postgres import Pool, dumps_dated, jsonb, migrate, migrations_in, undated

from parley_reports.adapters.stores import OPEN_QUEUES, ConcurrentUpdate
from parley_reports.domain.buckets import Bucket, bucket_id
from parley_reports.domain.timing import ConversationTiming

MIGRATIONS = migrations_in("parley_reports.adapters", "reports")


class PostgresReportStore:
    """Buckets and timing states in two tables of the store's database."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def ensure_indexes(self) -> None:
        """Create the tables and indexes (the migrations not yet applied)."""
        await migrate(self.pool, MIGRATIONS)

    async def _save(self, table: str, columns: dict[str, Any], doc: dict[str, Any], version: int) -> bool:
        names = list(columns)
        values = [columns[n] for n in names]
        body = jsonb(dumps_dated(doc))
        async with self.pool.connection() as conn:
            if version == 0:
                cursor = await conn.execute(
                    f"INSERT INTO {table} ({', '.join(names)}, version, doc)"  # noqa: S608 (fixed names)
                    f" VALUES ({', '.join(['%s'] * len(names))}, 1, %s) ON CONFLICT (id) DO NOTHING",
                    (*values, body),
                )
            else:
                sets = ", ".join(f"{n} = %s" for n in names if n != "id")
                cursor = await conn.execute(
                    f"UPDATE {table} SET {sets}, version = %s, doc = %s"  # noqa: S608 (fixed names)
                    " WHERE id = %s AND version = %s",
                    (*[columns[n] for n in names if n != "id"], version + 1, body, columns["id"], version),
                )
            return cursor.rowcount == 1

    async def get_state(self, conversation_id: str) -> ConversationTiming | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT doc, version FROM report_conversations WHERE id = %s", (conversation_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else _state(row[0], row[1])

    async def save_state(self, state: ConversationTiming) -> None:
        if not await self._save(
            "report_conversations", state_columns(state), state.to_document(), state.version
        ):
            raise ConcurrentUpdate(state.conversation_id)
        state.version += 1

    async def get_bucket(self, channel_id: str, hour: datetime) -> Bucket | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT doc, version FROM report_buckets WHERE id = %s", (bucket_id(channel_id, hour),)
            )
            row = await cursor.fetchone()
        return None if row is None else _bucket(row[0], row[1])

    async def save_bucket(self, bucket: Bucket) -> None:
        columns = bucket_columns(bucket)
        if not await self._save("report_buckets", columns, bucket.to_document(), bucket.version):
            raise ConcurrentUpdate(bucket.id)
        bucket.version += 1

    async def buckets(self, channel_ids: Sequence[str], start: datetime, end: datetime) -> list[Bucket]:
        if not channel_ids:
            return []
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT doc, version FROM report_buckets"
                " WHERE channel_id = ANY(%s) AND hour >= %s AND hour < %s",
                (list(channel_ids), start, end),
            )
            rows = await cursor.fetchall()
        return [_bucket(doc, version) for doc, version in rows]

    async def open_conversations(self, channel_ids: Sequence[str]) -> list[ConversationTiming]:
        if not channel_ids:
            return []
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT doc, version FROM report_conversations"
                " WHERE channel_id = ANY(%s) AND queue = ANY(%s)",
                (list(channel_ids), list(OPEN_QUEUES)),
            )
            rows = await cursor.fetchall()
        return [_state(doc, version) for doc, version in rows]

    async def clear(self) -> int:
        deleted = 0
        async with self.pool.connection() as conn, conn.transaction():
            for table in ("report_buckets", "report_conversations"):
                cursor = await conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
                deleted += cursor.rowcount
        return deleted


def state_columns(state: ConversationTiming) -> dict[str, Any]:
    """A timing state's ``report_conversations`` columns besides its version and document."""
    return {
        "id": state.conversation_id,
        "tenant_id": state.tenant_id,
        "channel_id": state.channel_id,
        "queue": state.queue.value if state.queue is not None else None,
        "owner_id": state.owner_id,
        "waiting_since": state.waiting_since,
    }


def bucket_columns(bucket: Bucket) -> dict[str, Any]:
    """A bucket's ``report_buckets`` columns besides its version and document."""
    return {
        "id": bucket.id,
        "tenant_id": bucket.tenant_id,
        "channel_id": bucket.channel_id,
        "hour": bucket.hour,
    }


def _state(doc: Any, version: int) -> ConversationTiming:
    state = ConversationTiming.from_document(undated(doc))
    state.version = int(version)
    return state


def _bucket(doc: Any, version: int) -> Bucket:
    bucket = Bucket.from_document(undated(doc))
    bucket.version = int(version)
    return bucket
