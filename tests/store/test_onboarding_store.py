"""Onboarding's store contract, and the vault's: what ``OnboardingStore`` and ``CredentialStore``
promise, on every store.

Versions of channels, teams and WhatsApp onboardings have one winner each; every "one holder" (an
account, a WABA, a code attempt) is raced by concurrent claimers; secrets come back only through
the vault, are purged with their channel and re-encrypted by a key rotation.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from parley_events import ChannelStatus, Provider
from parley_onboarding.adapters import postgres as onboarding_postgres
from parley_onboarding.adapters.stores import SEALED_FIELDS
from parley_onboarding.domain.channels import Channel
from parley_onboarding.domain.connections import PageConnection
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import WhatsAppOnboarding
from parley_providers.base import GrantedPage
from parley_shared import vault
from parley_shared.mongo import VersionConflict
from parley_shared.postgres import open_pool
from parley_shared.store import Store
from parley_shared.vault import (
    Credential,
    PostgresCredentialStore,
    TokenVault,
    VaultError,
    parse_keys,
    rotate_sealed,
    rotate_sealed_postgres,
)
from psycopg.types.json import Jsonb

from tests.store.conftest import vault_keys
from tests.unit.factories import T0

pytestmark = pytest.mark.store


def channel(
    account_id: str,
    *,
    tenant_id: str = "ten_1",
    provider: Provider = Provider.MESSENGER,
    business_account_id: str | None = None,
    token_expires_at: Any = None,
) -> Channel:
    made, _ = Channel.connect(
        tenant_id=tenant_id,
        provider=provider,
        account_id=account_id,
        actor_id="usr_1",
        at=T0,
        display_name=f"Account {account_id}",
        business_account_id=business_account_id,
        token_expires_at=token_expires_at,
        scopes=("pages_messaging",),
    )
    return made


def connection(
    connection_id: str, *pages: GrantedPage, tenant_id: str = "ten_1", **times: Any
) -> PageConnection:
    return PageConnection(
        id=connection_id,
        tenant_id=tenant_id,
        actor_id="usr_1",
        created_at=times.get("created_at", T0),
        expires_at=times.get("expires_at", T0 + timedelta(minutes=30)),
        user_token_expires_at=T0 + timedelta(days=60),
        granted=frozenset({"pages_messaging"}),
        pages=pages,
    )


def page(page_id: str, instagram_id: str | None = None) -> GrantedPage:
    return GrantedPage(page_id, f"Page {page_id}", f"page-token-{page_id}", ("MESSAGING",), instagram_id)


async def test_a_channel_comes_back_as_it_was_saved_and_each_version_has_one_writer(
    onboarding_store: Any,
) -> None:
    saved = channel("page_1", token_expires_at=T0 + timedelta(days=60))
    saved.expiry_warned_for = T0 + timedelta(days=60)
    await onboarding_store.save_channel(saved)
    assert await onboarding_store.channel(saved.id) == saved
    assert await onboarding_store.channel("chn_missing") is None

    async def save_revision_two(name: str) -> str:
        mine = dataclasses.replace(saved, settings=dataclasses.replace(saved.settings, display_name=name))
        mine.revision = 2
        try:
            await onboarding_store.save_channel(mine)
        except VersionConflict:
            return "lost"
        return name

    outcomes = await asyncio.gather(*(save_revision_two(f"writer {n}") for n in range(6)))
    winners = [o for o in outcomes if o != "lost"]
    assert len(winners) == 1
    stored = await onboarding_store.channel(saved.id)
    assert (stored.revision, stored.settings.display_name) == (2, winners[0])
    with pytest.raises(VersionConflict):
        await onboarding_store.save_channel(saved)  # revision 1 again: a stale writer


async def test_racing_read_modify_write_loops_on_a_team_lose_no_change(onboarding_store: Any) -> None:
    team = Team.create("ten_1", "Support")
    await onboarding_store.save_team(team)

    async def join(user_id: str) -> None:
        while True:
            mine = await onboarding_store.team(team.id)
            mine.add_member(user_id)
            try:
                await onboarding_store.save_team(mine)
                return
            except VersionConflict:
                continue  # someone saved first: reload and apply again

    await asyncio.gather(*(join(f"usr_{n}") for n in range(6)))
    stored = await onboarding_store.team(team.id)
    assert sorted(stored.members) == [f"usr_{n}" for n in range(6)]
    assert stored.revision == 7


async def test_teams_of_a_tenant_leave_out_deleted_ones_and_other_tenants(onboarding_store: Any) -> None:
    kept, gone, other = Team.create("ten_1", "Sales"), Team.create("ten_1", "Old"), Team.create("ten_2", "X")
    for team in (kept, gone, other):
        await onboarding_store.save_team(team)
    gone.delete()
    await onboarding_store.save_team(gone)

    assert [t.id for t in await onboarding_store.tenant_teams("ten_1")] == [kept.id]
    assert await onboarding_store.count_teams("ten_1") == 1
    assert (await onboarding_store.team(gone.id)).deleted is True


async def test_channel_queries_find_what_each_promises(
    onboarding_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onboarding_postgres, "CHANNEL_PAGE", 2)  # walks by status read several pages
    soon = channel("page_soon", token_expires_at=T0 + timedelta(days=1))
    later = channel("page_later", token_expires_at=T0 + timedelta(days=30))
    instagram = channel("ig_1", provider=Provider.INSTAGRAM, business_account_id="page_linked")
    whatsapp = channel("num_1", tenant_id="ten_2", provider=Provider.WHATSAPP, business_account_id="waba_1")
    gone = channel("page_gone", token_expires_at=T0)
    for made in (soon, later, instagram, whatsapp, gone):
        await onboarding_store.save_channel(made)
    gone.disconnect("usr_1", T0)
    await onboarding_store.save_channel(gone)

    assert {c.id for c in await onboarding_store.tenant_channels("ten_1")} == {
        soon.id,
        later.id,
        instagram.id,
        gone.id,
    }
    assert [c.id for c in await onboarding_store.channels_expiring_by(T0 + timedelta(days=2))] == [soon.id]
    active = [c.id async for c in onboarding_store.channels_with_status({ChannelStatus.ACTIVE})]
    assert sorted(active) == sorted([soon.id, later.id, instagram.id, whatsapp.id])
    assert [c.id async for c in onboarding_store.channels_with_status({ChannelStatus.DISCONNECTED})] == [
        gone.id
    ]
    assert [
        c.id
        for c in await onboarding_store.channels_of_business_account("ten_2", Provider.WHATSAPP, "waba_1")
    ] == [whatsapp.id]

    assert await onboarding_store.page_in_use("page_soon") is True  # its Messenger channel
    assert await onboarding_store.page_in_use("page_linked") is True  # an Instagram profile on it
    assert await onboarding_store.page_in_use("page_gone") is False  # disconnected
    assert await onboarding_store.waba_connected_elsewhere("waba_1", "ten_1") is True
    assert await onboarding_store.waba_connected_elsewhere("waba_1", "ten_2") is False


async def test_channel_lists_have_no_silent_cap(onboarding_store: Any) -> None:
    """More channels than any page size the adapters use: a list is whole on every store."""
    many = [
        channel(f"page_{n:04d}", tenant_id="ten_many", token_expires_at=T0 + timedelta(days=1))
        for n in range(510)
    ]
    for made in many:
        await onboarding_store.save_channel(made)
    expected = {c.id for c in many}
    assert {c.id for c in await onboarding_store.tenant_channels("ten_many")} == expected
    expiring = await onboarding_store.channels_expiring_by(T0 + timedelta(days=2))
    assert expected <= {c.id for c in expiring}


async def test_of_channels_racing_for_one_account_one_holds_it_until_it_releases_it(
    onboarding_store: Any,
) -> None:
    claims = await asyncio.gather(
        *(
            onboarding_store.claim_account(Provider.MESSENGER, "page_1", f"chn_{n}", "ten_1", T0)
            for n in range(6)
        )
    )
    winners = [n for n, (inserted, _) in enumerate(claims) if inserted]
    assert len(winners) == 1
    holder = f"chn_{winners[0]}"
    assert all(h.channel_id == holder for inserted, h in claims if not inserted)
    assert await onboarding_store.claim_account(Provider.MESSENGER, "page_1", holder, "ten_1", T0) == (
        False,
        None,
    )
    # another provider's account of the same id is another claim
    assert await onboarding_store.claim_account(Provider.INSTAGRAM, "page_1", "chn_ig", "ten_1", T0) == (
        True,
        None,
    )

    assert await onboarding_store.release_account(Provider.MESSENGER, "page_1", "chn_other") is False
    assert await onboarding_store.release_account(Provider.MESSENGER, "page_1", holder) is True
    assert await onboarding_store.claim_account(Provider.MESSENGER, "page_1", "chn_new", "ten_2", T0) == (
        True,
        None,
    )


async def test_a_waba_has_one_tenant_and_is_kept_while_one_of_its_channels_uses_it(
    onboarding_store: Any,
) -> None:
    holders = await asyncio.gather(
        *(onboarding_store.claim_waba("waba_1", f"ten_{n}", f"wa_{n}", T0) for n in range(4))
    )
    assert holders.count(None) == 1
    tenant = f"ten_{holders.index(None)}"
    assert {h for h in holders if h is not None} == {tenant}
    assert await onboarding_store.claim_waba("waba_1", tenant, "wa_again", T0) is None

    number = channel("num_1", tenant_id=tenant, provider=Provider.WHATSAPP, business_account_id="waba_1")
    await onboarding_store.save_channel(number)
    assert await onboarding_store.release_waba("waba_1", tenant) is False  # the number still uses it
    number.disconnect("usr_1", T0)
    await onboarding_store.save_channel(number)
    assert await onboarding_store.release_waba("waba_1", "ten_other") is False
    assert await onboarding_store.release_waba("waba_1", tenant) is True
    assert await onboarding_store.claim_waba("waba_1", "ten_other", "wa_other", T0) is None


async def test_racing_code_attempts_get_distinct_numbers_and_no_more_than_allowed(
    onboarding_store: Any,
) -> None:
    taken = await asyncio.gather(
        *(onboarding_store.claim_code_attempt("wa_1", range(1, 4), T0) for _ in range(5))
    )
    assert sorted(n for n in taken if n is not None) == [1, 2, 3]
    assert taken.count(None) == 2
    assert await onboarding_store.highest_code_attempt("wa_1") == 3
    assert await onboarding_store.highest_code_attempt("wa_other") == 0

    await onboarding_store.release_code_attempt("wa_1", 2)
    assert await onboarding_store.claim_code_attempt("wa_1", range(1, 4), T0) == 2


async def test_racing_refresh_claims_have_one_holder_a_stale_one_is_taken_over_once_and_old_ones_go(
    onboarding_store: Any,
) -> None:
    lease = timedelta(minutes=2)
    won = await asyncio.gather(
        *(onboarding_store.claim_token_refresh("ch_x", "digest-1", T0, lease) for _ in range(6))
    )
    assert won.count(0) == 1 and won.count(None) == 5  # one replica spends the refresh token
    # another token of the same channel is another claim
    assert await onboarding_store.claim_token_refresh("ch_x", "digest-2", T0, lease) == 0
    # the holder stopped: within the lease nobody takes it, after it exactly one replica does
    assert await onboarding_store.claim_token_refresh("ch_x", "digest-1", T0 + lease / 2, lease) is None
    later = T0 + lease + timedelta(seconds=1)
    taken = await asyncio.gather(
        *(onboarding_store.claim_token_refresh("ch_x", "digest-1", later, lease) for _ in range(4))
    )
    assert sorted(t for t in taken if t is not None) == [1] and taken.count(None) == 3
    # an answered outage gives the claim back
    await onboarding_store.release_token_refresh("ch_x", "digest-2", 0)
    assert await onboarding_store.claim_token_refresh("ch_x", "digest-2", later, lease) == 0
    # claims made before the cut are pruned, later ones kept (the job cuts a day back)
    assert await onboarding_store.prune_token_refresh_claims(T0) == 1  # digest-1's first claim
    assert await onboarding_store.prune_token_refresh_claims(later) == 2  # the takeover, digest-2's
    assert await onboarding_store.prune_token_refresh_claims(later) == 0


async def test_a_whatsapp_onboarding_keeps_its_steps_and_each_version_has_one_writer(
    onboarding_store: Any,
) -> None:
    onboarding = WhatsAppOnboarding(id="wa_1", tenant_id="ten_1", phone_number="+15550001", revision=1)
    await onboarding_store.save_onboarding(onboarding)
    onboarding.sign_agreement("usr_1", T0)
    onboarding.code_sent_at = T0 + timedelta(minutes=1)
    await onboarding_store.save_onboarding(onboarding)

    assert await onboarding_store.onboarding("wa_1") == onboarding
    assert await onboarding_store.onboarding("wa_missing") is None
    with pytest.raises(VersionConflict):
        await onboarding_store.save_onboarding(onboarding)


async def test_secrets_come_back_through_the_vault_and_go_with_their_channel(
    onboarding_store: Any, store: Store
) -> None:
    credential = Credential("chn_1", "access-1", T0 + timedelta(days=60), ("dm.read",), "refresh-1")
    await onboarding_store.put_credential(credential)
    assert await onboarding_store.credential("chn_1") == credential
    assert (await onboarding_store.credential("chn_1")).refresh_token == "refresh-1"

    onboarding = WhatsAppOnboarding(id="wa_1", tenant_id="ten_1", channel_id="chn_wa", revision=1)
    await onboarding_store.save_onboarding(onboarding)
    await onboarding_store.save_whatsapp_token("wa_1", "system-user-token")
    await onboarding_store.save_whatsapp_pin("wa_1", "123456")
    await onboarding_store.claim_code_attempt("wa_1", range(1, 3), T0)
    assert await onboarding_store.whatsapp_token("wa_1") == "system-user-token"
    assert await onboarding_store.whatsapp_token("wa_missing") is None
    for made in (
        connection("conn_page", page("page_9")),
        connection("conn_ig", page("page_8", instagram_id="chn_wa_account")),
        connection("conn_kept", page("page_7")),
        connection("conn_other_tenant", page("chn_wa_account"), tenant_id="ten_2"),
    ):
        await onboarding_store.save_connection(made)

    # the WhatsApp onboarding's token and PIN, and the tenant's connection listing the account
    assert await onboarding_store.purge_channel_secrets("ten_1", "chn_wa", "chn_wa_account") == 3
    assert await onboarding_store.whatsapp_token("wa_1") is None
    assert await onboarding_store.highest_code_attempt("wa_1") == 0
    assert await onboarding_store.connection("ten_1", "conn_ig") is None
    assert await onboarding_store.connection("ten_1", "conn_kept") is not None
    assert await onboarding_store.connection("ten_2", "conn_other_tenant") is not None
    assert await onboarding_store.purge_channel_secrets("ten_1", "chn_1", "page_9") == 1  # conn_page
    assert await onboarding_store.credential("chn_1") == credential  # deleted on its own, below
    await onboarding_store.delete_credential("chn_1")
    assert await onboarding_store.credential("chn_1") is None


async def test_a_started_connection_is_read_by_its_tenant_only_and_pruned_once_expired(
    onboarding_store: Any,
) -> None:
    started = connection("conn_1", page("page_1", instagram_id="ig_1"), page("page_2"))
    await onboarding_store.save_connection(started)
    await onboarding_store.save_connection(connection("conn_expired", expires_at=T0 - timedelta(seconds=1)))
    await onboarding_store.save_connection(
        connection("conn_legacy", created_at=T0 - timedelta(hours=2), expires_at=None)
    )
    await onboarding_store.save_connection(connection("conn_legacy_young", created_at=T0, expires_at=None))

    assert await onboarding_store.connection("ten_1", "conn_1") == started
    assert (await onboarding_store.connection("ten_1", "conn_1")).pages[0].access_token == "page-token-page_1"
    assert await onboarding_store.connection("ten_2", "conn_1") is None

    assert await onboarding_store.prune_connections(T0, timedelta(hours=1)) == 2
    assert await onboarding_store.connection("ten_1", "conn_expired") is None
    assert await onboarding_store.connection("ten_1", "conn_legacy_young") is not None
    await onboarding_store.delete_connection("conn_1")
    assert await onboarding_store.connection("ten_1", "conn_1") is None


async def test_the_credential_store_keeps_one_credential_per_channel(credentials: Any) -> None:
    first = Credential("chn_1", "token-1", None, ())
    second = Credential("chn_1", "token-2", T0, ("a", "b"), "refresh-2")
    await credentials.put(first)
    assert await credentials.get("chn_1") == first
    await credentials.put(second)
    assert await credentials.get("chn_1") == second
    assert (await credentials.get("chn_1")).refresh_token == "refresh-2"
    assert await credentials.get("chn_2") is None
    await credentials.delete("chn_1")
    assert await credentials.get("chn_1") is None


async def test_a_refreshed_grant_replaces_only_the_grant_it_spent(credentials: Any, store: Store) -> None:
    spent = Credential("chn_g", "token-1", T0, ("dm.read",), "refresh-1")
    refreshed = Credential("chn_g", "token-2", T0, ("dm.read",), "refresh-2")
    await credentials.put(spent)
    assert await credentials.replace_grant(refreshed, "refresh-1") is True
    assert await credentials.get("chn_g") == refreshed
    # a reconnect stored a newer grant while a refresh of the old one was on its way: it stays
    reconnected = Credential("chn_g", "token-r", T0, ("dm.read",), "refresh-r")
    await credentials.put(reconnected)
    assert (
        await credentials.replace_grant(Credential("chn_g", "late", T0, (), "refresh-3"), "refresh-2")
        is False
    )
    assert await credentials.get("chn_g") == reconnected
    # a credential without a refresh token is never a spent grant's; a missing one is not made
    await credentials.put(Credential("chn_g", "token-n", None, ()))
    assert await credentials.replace_grant(refreshed, "refresh-r") is False
    assert await credentials.replace_grant(Credential("chn_none", "t", None, (), "r"), "r") is False
    assert await credentials.get("chn_none") is None
    # written before grants were recorded (a refresh token, no grant digest): replaced as before
    await credentials.put(spent)
    if store.kind == "postgresql":
        async with store.postgres.connection() as conn:
            await conn.execute("UPDATE channel_credentials SET doc = doc - 'grant' WHERE id = 'chn_g'")
    else:
        await store.db["channel_credentials"].update_one({"_id": "chn_g"}, {"$unset": {"grant": ""}})
    assert await credentials.replace_grant(refreshed, "refresh-1") is True
    assert await credentials.get("chn_g") == refreshed


async def test_a_key_rotation_reencrypts_every_secret_onboarding_keeps(
    store: Store, onboarding_store: Any
) -> None:
    old_keys = vault_keys("k1")
    new_keys = vault_keys("k2") + "," + old_keys
    onboarding_store.vault = onboarding_store.channel_credentials.vault = TokenVault(parse_keys(old_keys))
    await onboarding_store.put_credential(Credential("chn_1", "access-1", T0, (), "refresh-1"))
    await onboarding_store.save_whatsapp_token("wa_1", "system-user-token")
    await onboarding_store.save_whatsapp_pin("wa_1", "123456")
    await onboarding_store.save_connection(connection("conn_1", page("page_1"), page("page_2")))

    rotating = TokenVault(parse_keys(new_keys))
    if store.kind == "postgresql":
        done = await rotate_sealed_postgres(store.postgres, rotating, SEALED_FIELDS)
    else:
        done = await rotate_sealed(store.db, rotating, SEALED_FIELDS)
    # token + refresh, the WhatsApp token, the PIN, two Page tokens; in four documents
    assert done == (6, 4)

    only_new = TokenVault(parse_keys(new_keys.split(",")[0]))
    onboarding_store.vault = onboarding_store.channel_credentials.vault = only_new
    assert (await onboarding_store.credential("chn_1")).refresh_token == "refresh-1"
    assert await onboarding_store.whatsapp_token("wa_1") == "system-user-token"
    assert [p.access_token for p in (await onboarding_store.connection("ten_1", "conn_1")).pages] == [
        "page-token-page_1",
        "page-token-page_2",
    ]
    only_old = TokenVault(parse_keys(old_keys))
    onboarding_store.vault = onboarding_store.channel_credentials.vault = only_old
    with pytest.raises(VaultError):
        await onboarding_store.credential("chn_1")


async def test_a_token_refreshed_during_a_rotation_on_postgresql_is_kept_and_rotated(
    postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = TokenVault(parse_keys(vault_keys("k1")))
    new_key = vault_keys("k2")
    rotating = TokenVault(parse_keys(f"{new_key},k1:{base64.b64encode(old.keys['k1']).decode()}"))
    pool = await open_pool(postgres_schema)
    try:
        credentials = PostgresCredentialStore(pool, old)
        await credentials.ensure_indexes()
        await credentials.put(Credential("chn_1", "access-1", None, (), "refresh-1"))
        reseal, refreshed = vault._reseal_doc, []

        def refresh_between_read_and_write(*args: Any) -> Any:
            if not refreshed:  # another replica refreshes the token (single-use refresh) meanwhile
                refreshed.append(True)
                doc = {
                    "token": old.encrypt("access-2", "chn_1"),
                    "expires_at": None,
                    "scopes": [],
                    "refresh": old.encrypt("refresh-2", "chn_1"),
                }
                with psycopg.connect(postgres_schema, autocommit=True) as conn:
                    conn.execute("UPDATE channel_credentials SET doc = %s WHERE id = 'chn_1'", (Jsonb(doc),))
            return reseal(*args)

        monkeypatch.setattr(vault, "_reseal_doc", refresh_between_read_and_write)
        fields = [("channel_credentials", "token"), ("channel_credentials", "refresh")]
        assert await rotate_sealed_postgres(pool, rotating, fields) == (2, 1)

        after = await PostgresCredentialStore(pool, TokenVault(parse_keys(new_key))).get("chn_1")
        assert after is not None
        assert (after.access_token, after.refresh_token) == ("access-2", "refresh-2")
    finally:
        await pool.close()
