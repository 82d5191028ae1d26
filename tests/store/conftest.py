"""The store contract suite: what Parley relies on from a store, on every store it is given.

Every test here runs once per store URL: those of ``PARLEY_STORE_URLS`` (comma-separated), else
the two local stores of ``make infra-up`` (FerretDB on 27017 and PostgreSQL on 54329). A store
that does not answer fails its tests: nothing is skipped.

Each test works in a place of its own and removes it after: a database ``store_<token>`` on
MongoDB, a schema ``store_<token>`` on PostgreSQL (the connection's ``search_path``), so the
suite can run against a team's own store before going live without touching its data; it needs
the right to create (and drop) a database, or a schema in the URL's database.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from parley_policy.adapters.postgres import PostgresPolicyStore, PostgresPolicyTemplates
from parley_policy.adapters.stores import PolicyStore, PolicyTemplates
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import MongoConversationRepository
from parley_shared.store import Store, open_store, store_kind
from psycopg import sql

from tests.conftest import Infra

LOCAL_STORE_URLS = ("mongodb://127.0.0.1:27017/parley", "postgresql://postgres@127.0.0.1:54329/parley")


def store_urls() -> list[str]:
    given = os.environ.get("PARLEY_STORE_URLS", "")
    return [u.strip() for u in given.split(",") if u.strip()] or list(LOCAL_STORE_URLS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, kinds in (("store_url", ("mongodb", "postgresql")), ("postgres_url", ("postgresql",))):
        if fixture in metafunc.fixturenames:
            urls = [u for u in store_urls() if store_kind(u) in kinds]
            # ids name the kind only: a URL may carry a password
            named = [store_kind(u) for u in urls]
            ids = [k if named.count(k) == 1 else f"{k}{i}" for i, k in enumerate(named)]
            metafunc.parametrize(fixture, urls, ids=ids)


def in_schema(url: str, schema: str) -> str:
    """The PostgreSQL URL with ``schema`` first on its search path (libpq's ``options``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -c search_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The store of ``store_url``, in a database or schema of this test's own."""
    name = f"store_{uuid.uuid4().hex[:12]}"
    if store_kind(store_url) == "postgresql":
        async with schema_of_its_own(store_url, name) as url:
            opened = await open_store(url)
            try:
                yield opened
            finally:
                await opened.close()
        return
    opened = await open_store(Infra("", store_url, "env").mongodb_url_for(name))
    try:
        yield opened
    finally:
        assert opened.mongo_client is not None
        await opened.mongo_client.drop_database(name)
        await opened.close()


@contextlib.asynccontextmanager
async def schema_of_its_own(url: str, name: str) -> AsyncIterator[str]:
    """A new schema on the PostgreSQL of ``url``, dropped after; yields the URL that works in it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield in_schema(url, name)
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def postgres_schema(postgres_url: str) -> AsyncIterator[str]:
    """A PostgreSQL URL whose tables go to a schema of this test's own."""
    async with schema_of_its_own(postgres_url, f"store_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture
async def conversations(store: Store) -> Any:
    """Routing's ``ConversationRepository`` adapter for the store, its tables and indexes made."""
    if store.kind == "postgresql":
        repository: Any = PostgresConversationRepository(store.postgres)
    else:
        db = store.db
        repository = MongoConversationRepository(
            db["conversations"],
            db["conversation_history"],
            notes=db["conversation_notes"],
            seen=db["conversation_seen_messages"],
        )
    await repository.ensure_indexes()
    return repository


@pytest.fixture
async def policy_store(store: Store) -> Any:
    """Policy's ``PolicyStorePort`` adapter for the store, its tables and indexes made."""
    adapter: Any = (
        PostgresPolicyStore(store.postgres) if store.kind == "postgresql" else PolicyStore(store.db)
    )
    await adapter.ensure_indexes()
    return adapter


@pytest.fixture
def templates(store: Store, policy_store: Any) -> Any:
    """Policy's template cache for the store (its table comes with the policy store's)."""
    return (
        PostgresPolicyTemplates(store.postgres) if store.kind == "postgresql" else PolicyTemplates(store.db)
    )
