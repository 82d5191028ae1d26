"""Key rotation against the real store (parley_shared.vault.rotate_sealed): a secret written
between rotation's read and its rewrite is never replaced by the old one re-encrypted.

The concurrent writer is simulated in sequence, right before rotation's write reaches the store
(FerretDB 1.24 does not apply a conditional update atomically, docs/storage.md, so only the
window between the read and the write can be tested on it; MongoDB closes it entirely).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from parley_shared.vault import ROTATE_RETRIES, TokenVault, VaultError, rotate_sealed

pytestmark = pytest.mark.integration

OLD = TokenVault({"k1": b"\x01" * 32})
BOTH = TokenVault({"k2": b"\x02" * 32, "k1": b"\x01" * 32})
NEW_ONLY = TokenVault({"k2": b"\x02" * 32})
FIELDS = (
    ("channel_credentials", "token"),
    ("channel_credentials", "refresh"),
    ("connections", "pages.token"),
)
CHANNEL = "ch_rotation_race"

Interference = Callable[[Any, Any], Awaitable[None]]


class _Collection:
    """A real collection whose writes let a concurrent writer act first."""

    def __init__(self, real: Any, interfere: Interference) -> None:
        self.real = real
        self.interfere = interfere

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self.real.find(*args, **kwargs)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.find_one(*args, **kwargs)

    async def update_one(self, condition: Any, update: Any, **kwargs: Any) -> Any:
        await self.interfere(self.real, condition["_id"])
        return await self.real.update_one(condition, update, **kwargs)

    async def replace_one(self, condition: Any, doc: Any, **kwargs: Any) -> Any:
        await self.interfere(self.real, condition["_id"])
        return await self.real.replace_one(condition, doc, **kwargs)


class _Database:
    def __init__(self, real: Any, interfere: Interference) -> None:
        self.real = real
        self.interfere = interfere

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self.real[name], self.interfere)


def credential(vault: TokenVault, access: str, refresh: str) -> dict[str, Any]:
    return {
        "_id": CHANNEL,
        "token": vault.encrypt(access, CHANNEL),
        "refresh": vault.encrypt(refresh, CHANNEL),
        "expires_at": None,
        "scopes": ["tweet.read"],
    }


async def test_a_refresh_during_rotation_is_kept_and_rotated(mongo_db: Any) -> None:
    """Review P2-7: X refresh tokens are single-use; the old one re-encrypted would be dead."""
    await mongo_db["channel_credentials"].insert_one(credential(OLD, "access-1", "refresh-1"))
    refreshed = False

    async def refresh(collection: Any, doc_id: Any) -> None:
        nonlocal refreshed
        if not refreshed:  # a service not yet restarted refreshes with the old key
            refreshed = True
            await collection.replace_one({"_id": doc_id}, credential(OLD, "access-2", "refresh-2"))

    assert await rotate_sealed(_Database(mongo_db, refresh), BOTH, FIELDS) == (2, 1)
    stored = await mongo_db["channel_credentials"].find_one({"_id": CHANNEL})
    assert (stored["token"]["key_id"], stored["refresh"]["key_id"]) == ("k2", "k2")
    assert NEW_ONLY.decrypt(stored["token"], CHANNEL) == "access-2"
    assert NEW_ONLY.decrypt(stored["refresh"], CHANNEL) == "refresh-2"


async def test_a_secret_written_with_the_new_key_during_rotation_is_left_alone(mongo_db: Any) -> None:
    await mongo_db["channel_credentials"].insert_one(credential(OLD, "access-1", "refresh-1"))

    async def reconnect(collection: Any, doc_id: Any) -> None:
        if (await collection.find_one({"_id": doc_id}))["token"]["key_id"] == "k1":
            await collection.replace_one({"_id": doc_id}, credential(BOTH, "access-2", "refresh-2"))

    assert await rotate_sealed(_Database(mongo_db, reconnect), BOTH, FIELDS) == (0, 0)
    stored = await mongo_db["channel_credentials"].find_one({"_id": CHANNEL})
    assert NEW_ONLY.decrypt(stored["refresh"], CHANNEL) == "refresh-2"


async def test_rotation_sets_only_the_sealed_fields(mongo_db: Any) -> None:
    """Other fields changed meanwhile (an expiry, the scopes) are not written back as read."""
    await mongo_db["channel_credentials"].insert_one(credential(OLD, "access-1", "refresh-1"))

    async def rescope(collection: Any, doc_id: Any) -> None:
        await collection.update_one({"_id": doc_id}, {"$set": {"scopes": ["tweet.read", "dm.write"]}})

    assert await rotate_sealed(_Database(mongo_db, rescope), BOTH, FIELDS) == (2, 1)
    stored = await mongo_db["channel_credentials"].find_one({"_id": CHANNEL})
    assert stored["scopes"] == ["tweet.read", "dm.write"]
    assert NEW_ONLY.decrypt(stored["refresh"], CHANNEL) == "refresh-1"


async def test_a_list_of_secrets_changed_during_rotation_is_kept(mongo_db: Any) -> None:
    """A ciphertext inside a list (a started connection's Page tokens) is guarded too."""
    pages = [{"id": "104", "token": OLD.encrypt("page-1", "conn_1")}]
    await mongo_db["connections"].insert_one({"_id": "conn_1", "pages": pages})
    changed = False

    async def restart(collection: Any, doc_id: Any) -> None:
        nonlocal changed
        if not changed:
            changed = True
            again = [{"id": "104", "token": OLD.encrypt("page-2", "conn_1")}]
            await collection.update_one({"_id": doc_id}, {"$set": {"pages": again}})

    assert await rotate_sealed(_Database(mongo_db, restart), BOTH, FIELDS) == (1, 1)
    [page] = (await mongo_db["connections"].find_one({"_id": "conn_1"}))["pages"]
    assert NEW_ONLY.decrypt(page["token"], "conn_1") == "page-2"


async def test_a_document_that_keeps_changing_stops_the_rotation_with_its_name(mongo_db: Any) -> None:
    await mongo_db["channel_credentials"].insert_one(credential(OLD, "access-0", "refresh-0"))
    writes = 0

    async def churn(collection: Any, doc_id: Any) -> None:
        nonlocal writes
        writes += 1
        await collection.replace_one(
            {"_id": doc_id}, credential(OLD, f"access-{writes}", f"refresh-{writes}")
        )

    with pytest.raises(VaultError, match=f"channel_credentials '{CHANNEL}' kept changing"):
        await rotate_sealed(_Database(mongo_db, churn), BOTH, FIELDS)
    assert writes == ROTATE_RETRIES
    stored = await mongo_db["channel_credentials"].find_one({"_id": CHANNEL})
    assert OLD.decrypt(stored["refresh"], CHANNEL) == f"refresh-{writes}"  # the last write stands


async def test_rotation_counts_each_document_it_reads_toward_the_total_it_announced(mongo_db: Any) -> None:
    """The progress of `parley credentials rotate`: the total is what the rotation then reads."""
    from parley_shared.vault import count_sealed_documents

    for n in range(3):
        doc = credential(OLD, f"access-{n}", f"refresh-{n}")
        doc["_id"] = f"{CHANNEL}-{n}"
        doc["token"] = OLD.encrypt(f"access-{n}", doc["_id"])
        doc["refresh"] = OLD.encrypt(f"refresh-{n}", doc["_id"])
        await mongo_db["channel_credentials"].insert_one(doc)
    await mongo_db["connections"].insert_one({"_id": "conn-1", "pages": []})
    total = await count_sealed_documents(mongo_db, FIELDS)
    seen: list[int] = []
    assert await rotate_sealed(mongo_db, BOTH, FIELDS, seen.append) == (6, 3)
    assert total == 4
    assert sum(seen) == total
