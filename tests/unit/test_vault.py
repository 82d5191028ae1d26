"""Credential encryption (parley_shared/vault.py): key parsing, AES-GCM round trip, rotation."""

from __future__ import annotations

import base64

import pytest
from parley_shared.vault import TokenVault, VaultError, parse_keys

pytestmark = pytest.mark.unit

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
OTHER = b"\x07" * 32
TOKEN = "EAAGm0PX4ZCpsBAKZC-page-access-token-0123456789"
CHANNEL = "ch_0123456789abcdef01234567"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# --- parse_keys ---------------------------------------------------------------------------------


def test_parse_keys_keeps_order_first_is_current() -> None:
    keys = parse_keys(f"k2:{b64(NEW)},k1:{b64(OLD)}")
    assert list(keys) == ["k2", "k1"]
    assert keys == {"k2": NEW, "k1": OLD}
    assert TokenVault(keys).current == "k2"


def test_parse_keys_order_is_as_given() -> None:
    keys = parse_keys(f"k1:{b64(OLD)},k2:{b64(NEW)}")
    assert list(keys) == ["k1", "k2"]
    assert TokenVault(keys).current == "k1"


def test_parse_keys_tolerates_spaces_and_empty_items() -> None:
    keys = parse_keys(f" k2:{b64(NEW)} , ,k1:{b64(OLD)},")
    assert keys == {"k2": NEW, "k1": OLD}


def test_parse_single_key() -> None:
    assert parse_keys(f"main:{b64(OLD)}") == {"main": OLD}


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        pytest.param("k1:not base64!!", "k1", id="bad-base64"),
        pytest.param("k1:@@@@", "k1", id="bad-base64-chars"),
        pytest.param(f"k1:{b64(OLD)[:-1]}", "k1", id="bad-padding"),
        pytest.param(f"k1:{b64(b'x' * 16)}", "32 bytes", id="16-bytes"),
        pytest.param(f"k1:{b64(b'x' * 31)}", "32 bytes", id="31-bytes"),
        pytest.param(f"k1:{b64(b'x' * 33)}", "32 bytes", id="33-bytes"),
        pytest.param("k1:", "32 bytes", id="empty-key"),
        pytest.param(f":{b64(OLD)}", "key id", id="missing-id"),
        pytest.param(b64(OLD), "key id", id="no-separator"),
        pytest.param(f"k2:{b64(NEW)},{b64(OLD)}", "key id", id="second-without-id"),
        pytest.param(f"k2:{b64(NEW)},k1:short", "k1", id="second-bad"),
        pytest.param("", "no encryption key", id="empty"),
        pytest.param(" , ", "no encryption key", id="only-separators"),
    ],
)
def test_parse_keys_refuses_malformed(spec: str, mentions: str) -> None:
    with pytest.raises(VaultError) as exc:
        parse_keys(spec)
    assert mentions in str(exc.value)


def test_parse_keys_error_does_not_leak_key_material() -> None:
    secret = b64(b"s" * 31)
    with pytest.raises(VaultError) as exc:
        parse_keys(f"k1:{secret}")
    assert secret not in str(exc.value)


# --- TokenVault ---------------------------------------------------------------------------------


def test_vault_needs_a_key() -> None:
    with pytest.raises(VaultError):
        TokenVault({})


def test_round_trip() -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    assert set(sealed) == {"key_id", "nonce", "ciphertext"}
    assert sealed["key_id"] == "k1"
    assert len(base64.b64decode(sealed["nonce"])) == 12
    assert vault.decrypt(sealed, CHANNEL) == TOKEN


@pytest.mark.parametrize("plaintext", ["", "x", "é ünïcødé 🔑", "a" * 10_000])
def test_round_trip_various_plaintexts(plaintext: str) -> None:
    vault = TokenVault({"k1": OLD})
    assert vault.decrypt(vault.encrypt(plaintext, CHANNEL), CHANNEL) == plaintext


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    raw = base64.b64decode(sealed["ciphertext"])
    assert TOKEN.encode() not in raw
    assert b"page-access-token" not in raw
    for value in sealed.values():
        assert TOKEN not in value
        assert "page-access-token" not in value
    assert b64(TOKEN.encode()) not in sealed["ciphertext"]


def test_every_encryption_uses_a_fresh_nonce() -> None:
    vault = TokenVault({"k1": OLD})
    first, second = vault.encrypt(TOKEN, CHANNEL), vault.encrypt(TOKEN, CHANNEL)
    assert first["nonce"] != second["nonce"]
    assert first["ciphertext"] != second["ciphertext"]
    assert vault.decrypt(first, CHANNEL) == vault.decrypt(second, CHANNEL) == TOKEN


def test_wrong_context_does_not_decrypt() -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    with pytest.raises(VaultError):
        vault.decrypt(sealed, "ch_another_channel")
    with pytest.raises(VaultError):
        vault.decrypt(sealed, "")


def test_same_key_id_different_key_does_not_decrypt() -> None:
    sealed = TokenVault({"k1": OLD}).encrypt(TOKEN, CHANNEL)
    with pytest.raises(VaultError):
        TokenVault({"k1": OTHER}).decrypt(sealed, CHANNEL)


def _flip(encoded: str, index: int) -> str:
    raw = bytearray(base64.b64decode(encoded))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("index", [0, 5, -1, -16])
def test_tampered_ciphertext_does_not_decrypt(index: int) -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    tampered = {**sealed, "ciphertext": _flip(sealed["ciphertext"], index)}
    with pytest.raises(VaultError):
        vault.decrypt(tampered, CHANNEL)


def test_tampered_nonce_does_not_decrypt() -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    with pytest.raises(VaultError):
        vault.decrypt({**sealed, "nonce": _flip(sealed["nonce"], 0)}, CHANNEL)


def test_truncated_ciphertext_does_not_decrypt() -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    raw = base64.b64decode(sealed["ciphertext"])
    with pytest.raises(VaultError):
        vault.decrypt({**sealed, "ciphertext": base64.b64encode(raw[:-1]).decode()}, CHANNEL)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"ciphertext": "%%% not base64 %%%"}, id="ciphertext-not-base64"),
        pytest.param({"nonce": "%%%"}, id="nonce-not-base64"),
        pytest.param({"nonce": ""}, id="nonce-empty"),
    ],
)
def test_malformed_sealed_value_raises_vault_error(change: dict[str, str]) -> None:
    vault = TokenVault({"k1": OLD})
    sealed = {**vault.encrypt(TOKEN, CHANNEL), **change}
    with pytest.raises(VaultError):
        vault.decrypt(sealed, CHANNEL)


@pytest.mark.parametrize("missing", ["nonce", "ciphertext"])
def test_missing_field_raises_vault_error(missing: str) -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    del sealed[missing]
    with pytest.raises(VaultError):
        vault.decrypt(sealed, CHANNEL)


def test_missing_key_id_raises_vault_error() -> None:
    vault = TokenVault({"k1": OLD})
    sealed = vault.encrypt(TOKEN, CHANNEL)
    del sealed["key_id"]
    with pytest.raises(VaultError):
        vault.decrypt(sealed, CHANNEL)


# --- rotation -----------------------------------------------------------------------------------


def test_rotation_decrypts_old_and_encrypts_with_new() -> None:
    before = TokenVault(parse_keys(f"k1:{b64(OLD)}"))
    sealed_old = before.encrypt(TOKEN, CHANNEL)
    assert sealed_old["key_id"] == "k1"

    rotated = TokenVault(parse_keys(f"k2:{b64(NEW)},k1:{b64(OLD)}"))
    assert rotated.current == "k2"
    assert rotated.decrypt(sealed_old, CHANNEL) == TOKEN

    sealed_new = rotated.encrypt(rotated.decrypt(sealed_old, CHANNEL), CHANNEL)
    assert sealed_new["key_id"] == "k2"
    assert rotated.decrypt(sealed_new, CHANNEL) == TOKEN
    # encrypted with the new key: the old-only vault cannot read it
    with pytest.raises(VaultError) as exc:
        before.decrypt(sealed_new, CHANNEL)
    assert "k2" in str(exc.value)

    # once the old key is dropped the re-encrypted value still decrypts
    after = TokenVault(parse_keys(f"k2:{b64(NEW)}"))
    assert after.decrypt(sealed_new, CHANNEL) == TOKEN


def test_vault_without_the_old_key_names_it() -> None:
    sealed_old = TokenVault({"k1": OLD}).encrypt(TOKEN, CHANNEL)
    with pytest.raises(VaultError) as exc:
        TokenVault({"k2": NEW}).decrypt(sealed_old, CHANNEL)
    assert "'k1'" in str(exc.value)
    assert TOKEN not in str(exc.value)


def test_rotation_keeps_the_channel_binding() -> None:
    sealed_old = TokenVault({"k1": OLD}).encrypt(TOKEN, CHANNEL)
    rotated = TokenVault({"k2": NEW, "k1": OLD})
    with pytest.raises(VaultError):
        rotated.decrypt(sealed_old, "ch_another_channel")


def test_a_credential_keeps_its_tokens_out_of_its_repr() -> None:
    from datetime import UTC, datetime

    from parley_shared.vault import Credential

    credential = Credential(
        "chn_1", "EAAG-secret-token", datetime(2027, 1, 1, tzinfo=UTC), ("a",), "refresh-secret"
    )
    text = repr(credential) + str(credential)
    assert "chn_1" in text
    assert "EAAG-secret-token" not in text and "refresh-secret" not in text
