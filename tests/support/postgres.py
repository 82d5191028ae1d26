"""A schema of a test's own on a PostgreSQL server: the tests' isolation on that store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql


def in_schema(url: str, schema: str) -> str:
    """The PostgreSQL URL with ``schema`` first on its search path (libpq's ``options``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -c search_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@contextlib.asynccontextmanager
async def schema_of_its_own(url: str, name: str) -> AsyncIterator[str]:
    """A new schema on the PostgreSQL of ``url``, dropped after; yields the URL that works in it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield in_schema(url, name)
    finally:
        # a connection of its own: the test may have restarted the server (test_infra_restart)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@contextlib.contextmanager
def schema_for(url: str, name: str) -> Iterator[str]:
    """:func:`schema_of_its_own` without an event loop (for fixtures that any test may use)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield in_schema(url, name)
    finally:
        # a connection of its own: the test may have restarted the server (test_infra_restart)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
