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
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo.asynchronous.collection import AsyncCollection


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


class MongoCredentialStore:
    """One document per channel: the encrypted token(s), expiry and scopes."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], vault: TokenVault) -> None:
        self.collection = collection
        self.vault = vault

    async def put(self, credential: Credential) -> None:
        doc: dict[str, Any] = {
            "_id": credential.channel_id,
            "token": self.vault.encrypt(credential.access_token, credential.channel_id),
            "expires_at": credential.expires_at,
            "scopes": list(credential.scopes),
        }
        if credential.refresh_token:
            doc["refresh"] = self.vault.encrypt(credential.refresh_token, credential.channel_id)
        await self.collection.replace_one({"_id": credential.channel_id}, doc, upsert=True)

    async def get(self, channel_id: str) -> Credential | None:
        doc = await self.collection.find_one({"_id": channel_id})
        if doc is None:
            return None
        return Credential(
            channel_id=channel_id,
            access_token=self.vault.decrypt(doc["token"], channel_id),
            expires_at=doc.get("expires_at"),
            scopes=tuple(doc.get("scopes", [])),
            refresh_token=self.vault.decrypt(doc["refresh"], channel_id) if doc.get("refresh") else None,
        )

    async def delete(self, channel_id: str) -> None:
        await self.collection.delete_one({"_id": channel_id})


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


async def rotate_sealed(db: Any, vault: TokenVault, fields: Iterable[tuple[str, str]]) -> tuple[int, int]:
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
    by_collection: dict[str, list[list[str]]] = {}
    for collection, dotted in fields:
        by_collection.setdefault(collection, []).append(dotted.split("."))
    sealed = rewritten = 0
    for collection, paths in by_collection.items():
        async for doc in db[collection].find({}):
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
