"""PostgreSQL plumbing: the connection pool (psycopg 3), JSON documents and schema migrations.

A service's PostgreSQL adapters share one :class:`~psycopg_pool.AsyncConnectionPool`, opened in
the lifespan (it belongs to the running event loop) and closed after it. Connections are in
autocommit mode: a statement on its own commits, and an adapter that needs several statements to
be one change opens ``conn.transaction()``. Every connection speaks UTC, so a ``timestamptz``
comes back as an aware UTC datetime (as PyMongo's ``tz_aware`` client gives them).

Documents are ``jsonb`` written with orjson (datetimes become ISO 8601 strings; an adapter turns
the ones it knows back into datetimes) and read with orjson. Schema changes are plain SQL files
shipped with the adapter, applied in order at start-up by :func:`migrate`: each once, recorded
with its checksum, under an advisory lock so replicas starting together do not race.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, TypeAlias

import orjson
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import AsyncConnectionPool

Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[TupleRow]]

DEFAULT_MAX_CONNECTIONS = 10
"""Connections one process keeps at most; each service's work is a few statements at a time."""
MIGRATIONS_LOCK = 0x7061726C6579
"""The advisory lock taken while migrating (any number, the same in every Parley process)."""


async def _configure(conn: AsyncConnection[TupleRow]) -> None:
    set_json_loads(orjson.loads, conn)
    await conn.execute("SET TIME ZONE 'UTC'")


async def open_pool(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    timeout_s: float = 5.0,
    name: str = "parley",
) -> Pool:
    """An open pool for the URL (any libpq URL: ``postgresql://user@host:port/db?sslmode=...``).

    Call it in the lifespan and ``await pool.close()`` after. Raises if no connection can be
    made within ``timeout_s``, so a process with a wrong URL stops at start-up. A connection is
    checked before it is handed out, so the pool survives a restart of the server.
    """
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_connections,
        open=False,
        timeout=timeout_s,
        kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout_s))},
        configure=_configure,
        check=AsyncConnectionPool.check_connection,
        name=name,
    )
    try:
        await pool.open(wait=True, timeout=timeout_s)
    except BaseException:
        await pool.close()
        raise
    return pool


async def ping(pool: Pool) -> None:
    """Raise unless the server answers."""
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")


def dumps(doc: Any) -> bytes:
    """A document as JSON (orjson: datetimes as ISO 8601, UTC ones with ``+00:00``)."""
    return orjson.dumps(doc)


def _date_tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$date": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_dated(doc: Any) -> bytes:
    """A document as JSON whose datetimes come back as datetimes from :func:`undated`: each is
    written ``{"$date": "<ISO 8601>"}`` (for documents whose every field an adapter does not list)."""
    return orjson.dumps(doc, default=_date_tag, option=orjson.OPT_PASSTHROUGH_DATETIME)


def undated(value: Any) -> Any:
    """A document read back with the datetimes :func:`dumps_dated` tagged as datetimes again."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$date"), str):
            return datetime.fromisoformat(value["$date"])
        return {key: undated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [undated(item) for item in value]
    return value


def _as_is(encoded: Any) -> bytes:
    assert isinstance(encoded, bytes)
    return encoded


def jsonb(encoded: bytes) -> Jsonb:
    """A query parameter of type ``jsonb`` from JSON already encoded by :func:`dumps` (no second
    encoding: the adapter measured its size from these very bytes)."""
    return Jsonb(encoded, dumps=_as_is)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: plain SQL, applied once (``name`` is unique across Parley)."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationChanged(RuntimeError):
    """A migration already applied has different SQL now: add a new migration instead."""


def migrations_in(package: str, component: str) -> list[Migration]:
    """The ``*.sql`` files of a package's ``migrations`` folder, in name order, as ``component/name``."""
    folder = resources.files(package) / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f"{component}/{f.name.removesuffix('.sql')}", f.read_text()) for f in files]


async def migrate(pool: Pool, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet applied, in order, in one transaction; returns their names.

    The record of what was applied (``parley_migrations``) lives in the connection's schema like
    the tables, so a schema per test run (``search_path``) migrates on its own. A migration must
    not use what cannot run in a transaction (``CREATE INDEX CONCURRENTLY``).
    """
    applied_now: list[str] = []
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS parley_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT name, checksum FROM parley_migrations")
        applied = {name: checksum for name, checksum in await cursor.fetchall()}
        for migration in migrations:
            if migration.name in applied:
                if applied[migration.name] != migration.checksum:
                    raise MigrationChanged(f"migration {migration.name} changed after it was applied")
                continue
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO parley_migrations (name, checksum) VALUES (%s, %s)",
                (migration.name, migration.checksum),
            )
            applied_now.append(migration.name)
    return applied_now
