"""Schema migrations on PostgreSQL: plain SQL applied once, safely from replicas starting together."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from parley_policy.adapters import postgres as policy_postgres
from parley_routing.adapters import postgres as routing_postgres
from parley_shared.postgres import Migration, MigrationChanged, migrate, open_pool

pytestmark = pytest.mark.store

EVERY_MIGRATION = [*routing_postgres.MIGRATIONS, *policy_postgres.MIGRATIONS]


def test_each_service_ships_its_migrations_in_order() -> None:
    assert [m.name for m in routing_postgres.MIGRATIONS][:1] == ["routing/0001_conversations"]
    assert [m.name for m in policy_postgres.MIGRATIONS][:1] == ["policy/0001_policy"]
    for migrations in (routing_postgres.MIGRATIONS, policy_postgres.MIGRATIONS):
        assert [m.name for m in migrations] == sorted(m.name for m in migrations)
        assert all("CONCURRENTLY" not in m.sql.upper() for m in migrations)  # they run in a transaction


async def test_replicas_starting_together_apply_each_migration_once(postgres_schema: str) -> None:
    pools = [await open_pool(postgres_schema, max_connections=2) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(migrate(pool, EVERY_MIGRATION) for pool in pools))
        assert sorted(name for names in applied for name in names) == sorted(m.name for m in EVERY_MIGRATION)
        assert await migrate(pools[0], EVERY_MIGRATION) == []  # a restart applies nothing
        async with pools[0].connection() as conn:
            cursor = await conn.execute("SELECT name FROM parley_migrations ORDER BY name")
            assert [row[0] for row in await cursor.fetchall()] == sorted(m.name for m in EVERY_MIGRATION)
            cursor = await conn.execute("SELECT count(*) FROM conversations")
            assert await cursor.fetchone() == (0,)
    finally:
        for pool in pools:
            await pool.close()


async def test_a_migration_edited_after_it_was_applied_stops_the_start_up(postgres_schema: str) -> None:
    pool = await open_pool(postgres_schema)
    try:
        first = Migration("test/0001_things", "CREATE TABLE things (id text PRIMARY KEY);")
        assert await migrate(pool, [first]) == ["test/0001_things"]
        edited = Migration(first.name, "CREATE TABLE things (id bigint PRIMARY KEY);")
        with pytest.raises(MigrationChanged, match="test/0001_things"):
            await migrate(pool, [edited])
        # a failing migration leaves nothing behind: the whole run is one transaction
        broken = Migration("test/0002_broken", "CREATE TABLE more (id text); SELECT no_such_function();")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            await migrate(pool, [first, broken])
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT to_regclass('more') IS NULL")
            assert await cursor.fetchone() == (True,)
    finally:
        await pool.close()
