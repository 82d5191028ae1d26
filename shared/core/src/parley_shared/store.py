"""The store a process talks to, chosen by its URL's scheme: MongoDB or PostgreSQL.

``mongodb://`` (or ``mongodb+srv://``) opens PyMongo's async client, for MongoDB 7/8 or FerretDB;
``postgresql://`` (or ``postgres://``) opens a psycopg 3 pool. A service's bootstrap opens one
:class:`Store` in the lifespan, hands it to the adapters of the same kind (each port has one per
kind), and closes it after. Nothing else in a service imports a driver for this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from parley_shared import mongo, postgres

StoreKind = Literal["mongodb", "postgresql"]

_SCHEMES: dict[str, StoreKind] = {
    "mongodb": "mongodb",
    "mongodb+srv": "mongodb",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}


class UnknownStore(ValueError):
    """The URL names no store Parley has adapters for."""


def store_kind(url: str) -> StoreKind:
    """Which adapters a URL calls for, from its scheme alone (the rest may hold a password)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    try:
        return _SCHEMES[scheme]
    except KeyError:
        raise UnknownStore(
            "a store URL starts with mongodb://, mongodb+srv://, postgresql:// or postgres://,"
            f" not {scheme!r}"
        ) from None


@dataclass
class Store:
    """One process's open store: the MongoDB client or the PostgreSQL pool, as its URL says."""

    url: str
    kind: StoreKind
    mongo_client: AsyncMongoClient[dict[str, Any]] | None = None
    pool: postgres.Pool | None = None

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        """The MongoDB database the URL names (``parley`` if none)."""
        if self.mongo_client is None:
            raise RuntimeError(f"the store is {self.kind}, not MongoDB")
        return mongo.database(self.mongo_client, self.url)

    @property
    def postgres(self) -> postgres.Pool:
        """The PostgreSQL pool."""
        if self.pool is None:
            raise RuntimeError(f"the store is {self.kind}, not PostgreSQL")
        return self.pool

    async def ping(self) -> None:
        """Raise unless the store answers (a readiness check)."""
        if self.mongo_client is not None:
            await mongo.ping(self.mongo_client)
        if self.pool is not None:
            await postgres.ping(self.pool)

    async def close(self) -> None:
        if self.mongo_client is not None:
            await self.mongo_client.close()
        if self.pool is not None:
            await self.pool.close()


async def open_store(
    url: str, *, timeout_s: float = 5.0, max_connections: int = postgres.DEFAULT_MAX_CONNECTIONS
) -> Store:
    """Open the store of the URL; call in the lifespan and ``await store.close()`` after.

    A PostgreSQL pool connects now (a wrong URL stops the start-up); PyMongo's client connects
    on first use, as it always has.
    """
    kind = store_kind(url)
    if kind == "mongodb":
        return Store(url, kind, mongo_client=mongo.open_client(url, timeout_ms=int(timeout_s * 1000)))
    pool = await postgres.open_pool(url, max_connections=max_connections, timeout_s=timeout_s)
    return Store(url, kind, pool=pool)
