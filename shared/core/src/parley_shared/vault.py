"""Channel credentials, encrypted at rest with AES-256-GCM and a key id so keys can rotate.

Keys come from settings as ``PARLEY_ENCRYPTION_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"``;
the first is used to encrypt, every listed key can decrypt. Rotation: put a new key first in
every service's settings, run ``parley credentials rotate`` (re-encrypts everything), then drop
the old key. The channel id is
bound as associated data, so a ciphertext copied onto another channel does not decrypt.
Credentials are never returned by an API, published in an event or logged.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
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
    access_token: str
    expires_at: datetime | None
    scopes: tuple[str, ...] = ()
    refresh_token: str | None = None


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

    async def rotate(self) -> int:
        """Re-encrypt every credential with the current key; returns how many changed."""
        changed = 0
        async for doc in self.collection.find({"token.key_id": {"$ne": self.vault.current}}):
            credential = await self.get(doc["_id"])
            if credential is not None:
                await self.put(credential)
                changed += 1
        return changed
