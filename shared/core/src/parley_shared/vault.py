"""Channel credentials, encrypted at rest with AES-256-GCM and a key id so keys can rotate.

Keys come from settings as ``PARLEY_ENCRYPTION_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"``;
the first is used to encrypt, every listed key can decrypt. Rotation: put a new key first in
every service's settings, run ``parley credentials rotate`` (re-encrypts every field named in the
owner's list of sealed fields, :func:`rotate_sealed`), then drop the old key. The document's
``_id`` (the channel id for a channel's credential) is bound as associated data, so a ciphertext
copied onto another document does not decrypt.
Credentials are never returned by an API, published in an event or logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import sql
from pymongo.asynchronous.collection import AsyncCollection

from parley_shared.postgres import Pool, dumps_dated, jsonb, migrate, migrations_in, undated

MIGRATIONS = migrations_in("parley_shared", "vault")
"""The vault's table on PostgreSQL (``channel_credentials``)."""


class VaultError(Exception):
    """A key is missing or malformed, or a ciphertext does not decrypt."""


def parse_keys(spec: str) -> dict[str, bytes]:
    """``id:base64,id:base64`` -> {id: 32-byte key}, in the given order (first = current)."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise VaultError("each encryption key is '<key id>:<base64 of 32 bytes>'")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise VaultError(f"encryption key {key_id!r} is not base64") from exc
        if len(key) != 32:
            raise VaultError(f"encryption key {key_id!r} must be 32 bytes (AES-256)")
        keys[key_id] = key
    if not keys:
        raise VaultError("no encryption key configured")
    return keys


class TokenVault:
    """Encrypts and decrypts small secrets with the current key; decrypts with any known key."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise VaultError("no encryption key configured")
        self.keys = dict(keys)
        self.current = next(iter(self.keys))

    def encrypt(self, plaintext: str, context: str) -> dict[str, str]:
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(), context.encode())
        return {
            "key_id": self.current,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed).decode(),
        }

    def decrypt(self, sealed: Mapping[str, str], context: str) -> str:
        key = self.keys.get(sealed.get("key_id", ""))
        if key is None:
            raise VaultError(f"no key {sealed.get('key_id')!r} to decrypt with: was it removed too early?")
        try:
            plain = AESGCM(key).decrypt(
                base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ciphertext"]), context.encode()
            )
        except (InvalidTag, KeyError, ValueError) as exc:
            raise VaultError("credential does not decrypt (wrong key or tampered)") from exc
        return plain.decode()


@dataclass(frozen=True, slots=True)
class Credential:
    """A channel's access token and what is known about it."""

    channel_id: str
    access_token: str = field(repr=False)
    expires_at: datetime | None
    scopes: tuple[str, ...] = ()
    refresh_token: str | None = field(default=None, repr=False)


class CredentialStore(Protocol):
    """Channel credentials, sealed by the vault before they are written (one port, one adapter
    per store: :class:`MongoCredentialStore`, :class:`PostgresCredentialStore`)."""

    async def put(self, credential: Credential) -> None: ...

    async def get(self, channel_id: str) -> Credential | None: ...

    async def delete(self, channel_id: str) -> None: ...

    async def replace_grant(self, credential: Credential, spent_refresh_token: str) -> bool:
        """Write ``credential`` only if the stored one is still the grant of
        ``spent_refresh_token`` (the one a refresh just spent), atomically on stores that apply
        conditional writes atomically; False, and nothing written, when another write (a
        reconnect) replaced it meanwhile or the channel's credential is gone. A credential stored
        with a refresh token before grants were recorded (no ``grant`` field) is replaced as
        before; one without a refresh token is never the spent grant's."""
        ...

    async def ensure_indexes(self) -> None:
        """Make what the store needs before use (a table on PostgreSQL; nothing on MongoDB)."""
        ...


def grant_digest(refresh_token: str) -> str:
    """A refresh token's short SHA-256 digest: names its grant in claims and in the credential
    document (for :meth:`CredentialStore.replace_grant`) without revealing it."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:32]


def _credential_doc(credential: Credential, vault: TokenVault) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "token": vault.encrypt(credential.access_token, credential.channel_id),
        "expires_at": credential.expires_at,
        "scopes": list(credential.scopes),
    }
    if credential.refresh_token:
        doc["refresh"] = vault.encrypt(credential.refresh_token, credential.channel_id)
        doc["grant"] = grant_digest(credential.refresh_token)
    return doc


def _credential_of(channel_id: str, doc: Mapping[str, Any], vault: TokenVault) -> Credential:
    return Credential(
        channel_id=channel_id,
        access_token=vault.decrypt(doc["token"], channel_id),
        expires_at=doc.get("expires_at"),
        scopes=tuple(doc.get("scopes", [])),
        refresh_token=vault.decrypt(doc["refresh"], channel_id) if doc.get("refresh") else None,
    )


class MongoCredentialStore:
    """One document per channel: the encrypted token(s), expiry and scopes."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], vault: TokenVault) -> None:
        self.collection = collection
        self.vault = vault

    async def put(self, credential: Credential) -> None:
        doc = {"_id": credential.channel_id, **_credential_doc(credential, self.vault)}
        await self.collection.replace_one({"_id": credential.channel_id}, doc, upsert=True)

    async def get(self, channel_id: str) -> Credential | None:
        doc = await self.collection.find_one({"_id": channel_id})
        return None if doc is None else _credential_of(channel_id, doc, self.vault)

    async def replace_grant(self, credential: Credential, spent_refresh_token: str) -> bool:
        doc = {"_id": credential.channel_id, **_credential_doc(credential, self.vault)}
        same_grant = {
            "$or": [
                {"grant": grant_digest(spent_refresh_token)},
                {"grant": {"$exists": False}, "refresh": {"$exists": True}},
            ]
        }
        result = await self.collection.replace_one({"_id": credential.channel_id, **same_grant}, doc)
        return result.matched_count == 1

    async def delete(self, channel_id: str) -> None:
        await self.collection.delete_one({"_id": channel_id})

    async def ensure_indexes(self) -> None:
        """Nothing to make: the collection's ``_id`` is its only key."""


class PostgresCredentialStore:
    """One row per channel in ``channel_credentials``: the same sealed document as on MongoDB
    (its datetimes tagged, ``parley_shared.postgres.dumps_dated``), keyed by the channel id."""

    def __init__(self, pool: Pool, vault: TokenVault) -> None:
        self.pool = pool
        self.vault = vault

    async def put(self, credential: Credential) -> None:
        doc = dumps_dated(_credential_doc(credential, self.vault))
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO channel_credentials (id, doc) VALUES (%s, %s)"
                " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                (credential.channel_id, jsonb(doc)),
            )

    async def get(self, channel_id: str) -> Credential | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT doc FROM channel_credentials WHERE id = %s", (channel_id,))
            row = await cursor.fetchone()
        return None if row is None else _credential_of(channel_id, undated(row[0]), self.vault)

    async def replace_grant(self, credential: Credential, spent_refresh_token: str) -> bool:
        doc = dumps_dated(_credential_doc(credential, self.vault))
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE channel_credentials SET doc = %s WHERE id = %s"
                " AND (doc->>'grant' = %s OR (NOT doc ? 'grant' AND doc ? 'refresh'))",
                (jsonb(doc), credential.channel_id, grant_digest(spent_refresh_token)),
            )
            return cursor.rowcount == 1

    async def delete(self, channel_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM channel_credentials WHERE id = %s", (channel_id,))

    async def ensure_indexes(self) -> None:
        """Create the table (the vault's migrations not yet applied)."""
        await migrate(self.pool, MIGRATIONS)


def _is_sealed(value: object) -> bool:
    return isinstance(value, dict) and "key_id" in value and "nonce" in value and "ciphertext" in value


def _reseal(value: Any, path: list[str], vault: TokenVault, context: str) -> tuple[Any, int]:
    """``value`` with every ciphertext at ``path`` under the current key; how many were re-sealed.

    A list on the way is walked element by element; a missing field or ``None`` is left alone.
    """
    if isinstance(value, list):
        count = 0
        items = []
        for item in value:
            new, n = _reseal(item, path, vault, context)
            items.append(new)
            count += n
        return items, count
    if not path:
        if not _is_sealed(value) or value.get("key_id") == vault.current:
            return value, 0
        return vault.encrypt(vault.decrypt(value, context), context), 1
    if not isinstance(value, dict) or value.get(path[0]) is None:
        return value, 0
    new, n = _reseal(value[path[0]], path[1:], vault, context)
    return ({**value, path[0]: new} if n else value), n


ROTATE_RETRIES = 5  # re-reads of a document that changed between its read and its rewrite


def _reseal_doc(
    doc: Mapping[str, Any], paths: list[list[str]], vault: TokenVault, collection: str
) -> tuple[dict[str, Any], int]:
    """The top-level fields of ``doc`` holding a ciphertext to re-encrypt, with their new values
    (a field is rewritten whole: a list on the path cannot be ``$set`` element by element), and
    how many ciphertexts they re-encrypt."""
    changed: dict[str, Any] = {}
    count = 0
    for path in paths:
        top = path[0]
        try:
            new, n = _reseal(changed.get(top, doc.get(top)), path[1:], vault, str(doc["_id"]))
        except VaultError as exc:
            raise VaultError(f"{collection} {doc['_id']!r} {'.'.join(path)}: {exc}") from exc
        if n:
            changed[top] = new
            count += n
    return changed, count


def _paths_by_collection(fields: Iterable[tuple[str, str]]) -> dict[str, list[list[str]]]:
    by_collection: dict[str, list[list[str]]] = {}
    for collection, dotted in fields:
        by_collection.setdefault(collection, []).append(dotted.split("."))
    return by_collection


async def count_sealed_documents(db: Any, fields: Iterable[tuple[str, str]]) -> int:
    """How many documents a rotation reads (every document of each sealed collection)."""
    return sum([await db[c].count_documents({}) for c in _paths_by_collection(fields)])


async def count_sealed_rows(pool: Pool, fields: Iterable[tuple[str, str]]) -> int:
    """:func:`count_sealed_documents` on PostgreSQL."""
    total = 0
    async with pool.connection() as conn:
        for table in _paths_by_collection(fields):
            cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            row = await cursor.fetchone()
            total += int(row[0]) if row else 0
    return total


async def rotate_sealed(
    db: Any,
    vault: TokenVault,
    fields: Iterable[tuple[str, str]],
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Re-encrypt, with the current key, every ciphertext at the given (collection, dotted path)
    fields (a list on the path is walked element by element; the document's ``_id`` is the
    associated data). Returns (ciphertexts re-encrypted, documents rewritten).

    Every document of each collection is read, so a field missing from some documents (a PIN
    document has no token) is simply skipped; a ciphertext that does not decrypt raises
    :class:`VaultError` naming its collection and document.

    Each document is rewritten by an update conditional on the fields it rewrites still holding
    the values read, and ``$set`` touches only those fields: a token refreshed or reconnected
    between the read and the write is never replaced by the old one re-encrypted (X refresh
    tokens are single-use). A document that changed is read again and retried, at most
    ROTATE_RETRIES times (then :class:`VaultError`: run the rotation again). FerretDB 1.24 does
    not apply the condition atomically (docs/storage.md), so there rotation should run while
    connects and refreshes are quiet; it can always be re-run.
    """
    sealed = rewritten = 0
    for collection, paths in _paths_by_collection(fields).items():
        async for doc in db[collection].find({}):
            if progress is not None:
                progress(1)
            current: Mapping[str, Any] | None = doc
            for _ in range(ROTATE_RETRIES):
                if current is None:
                    break  # deleted meanwhile: nothing to rotate
                changed, count = _reseal_doc(current, paths, vault, collection)
                if not count:
                    break
                condition = {"_id": current["_id"], **{key: current[key] for key in changed}}
                result = await db[collection].update_one(condition, {"$set": changed})
                if result.matched_count:
                    sealed += count
                    rewritten += 1
                    break
                current = await db[collection].find_one({"_id": doc["_id"]})
            else:
                raise VaultError(f"{collection} {doc['_id']!r} kept changing during rotation; run it again")
    return sealed, rewritten


async def rotate_sealed_postgres(
    pool: Pool,
    vault: TokenVault,
    fields: Iterable[tuple[str, str]],
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """:func:`rotate_sealed` on PostgreSQL: each collection is a table of ``(id, doc jsonb)`` rows
    (the row's id is the associated data), and each row is rewritten by one update conditional on
    its whole document being the one read, which PostgreSQL applies atomically (a row changed in
    between is read again, at most ROTATE_RETRIES times). Returns (ciphertexts re-encrypted,
    rows rewritten)."""
    sealed = rewritten = 0
    for table, paths in _paths_by_collection(fields).items():
        name = sql.Identifier(table)
        async with pool.connection() as conn:
            cursor = await conn.execute(sql.SQL("SELECT id, doc FROM {} ORDER BY id").format(name))
            rows = await cursor.fetchall()
        for row_id, doc in rows:
            if progress is not None:
                progress(1)
            current: dict[str, Any] | None = doc
            for _ in range(ROTATE_RETRIES):
                if current is None:
                    break  # deleted meanwhile: nothing to rotate
                changed, count = _reseal_doc({**current, "_id": row_id}, paths, vault, table)
                if not count:
                    break
                async with pool.connection() as conn:
                    cursor = await conn.execute(
                        sql.SQL("UPDATE {} SET doc = doc || %s WHERE id = %s AND doc = %s").format(name),
                        (jsonb(dumps_dated(changed)), row_id, jsonb(dumps_dated(current))),
                    )
                    if cursor.rowcount:
                        sealed += count
                        rewritten += 1
                        break
                    cursor = await conn.execute(
                        sql.SQL("SELECT doc FROM {} WHERE id = %s").format(name), (row_id,)
                    )
                    found = await cursor.fetchone()
                current = None if found is None else found[0]
            else:
                raise VaultError(f"{table} {row_id!r} kept changing during rotation; run it again")
    return sealed, rewritten
