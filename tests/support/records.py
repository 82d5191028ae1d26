"""What a service left in its store, read from either store for tests that check the stored form.

Some things a test must see are not what a port answers: that no secret is anywhere in the store,
that every ciphertext moved to a new key, that a record is gone rather than hidden. These helpers
read the records themselves, from the store a service opened (``parley_shared.store.Store``): on
PostgreSQL the rows of the tables its migrations define (a row's ``doc`` document merged with its
other columns, datetimes as datetimes), on MongoDB the documents of the collection of that name.
A record's key is its ``id`` column on PostgreSQL and its ``_id`` on MongoDB.
"""

from __future__ import annotations

from typing import Any

from parley_shared.postgres import undated
from parley_shared.store import Store
from psycopg import sql
from psycopg.rows import dict_row

StoredRecord = tuple[str, str, dict[str, Any]]
"""(table or collection, key, record)."""


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A PostgreSQL row as one record: its ``doc`` (datetimes back) with the other columns over it."""
    doc = row.get("doc")
    columns = {name: value for name, value in row.items() if name != "doc"}
    return {**undated(doc), **columns} if isinstance(doc, dict) else columns


async def record(store: Store, table: str, key: str) -> dict[str, Any] | None:
    """The record of ``table`` whose key is ``key``, or None."""
    if store.kind == "mongodb":
        found: dict[str, Any] | None = await store.db[table].find_one({"_id": key})
        return found
    async with store.postgres.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql.SQL("SELECT * FROM {} WHERE id = %s").format(sql.Identifier(table)), (key,))
        row = await cursor.fetchone()
    return None if row is None else _record(row)


async def count(store: Store, table: str, **where: str) -> int:
    """How many records of ``table`` have each field of ``where`` (a column on PostgreSQL) equal."""
    if store.kind == "mongodb":
        return int(await store.db[table].count_documents(where))
    conditions = [sql.SQL("{} = %s").format(sql.Identifier(name)) for name in where]
    condition = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(table), condition)
    async with store.postgres.connection() as conn:
        cursor = await conn.execute(query, tuple(where.values()))
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def every_record(store: Store) -> list[StoredRecord]:
    """Every record anywhere in the store: each table of the schema the store's URL works in
    (whatever its name, migrations' bookkeeping included), or each collection of the database."""
    found: list[StoredRecord] = []
    if store.kind == "mongodb":
        for name in await store.db.list_collection_names():
            found += [(name, str(doc["_id"]), doc) async for doc in store.db[name].find({})]
        return found
    async with store.postgres.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = [str(row["tablename"]) for row in await cursor.fetchall()]
        assert tables, "no table in the store's schema: is this the schema the service wrote to?"
        for table in tables:
            await cursor.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            found += [(table, str(row.get("id", "")), _record(row)) for row in await cursor.fetchall()]
    return found
