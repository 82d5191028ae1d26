"""``parley store copy``: a MongoDB deployment's state, written by the MongoDB adapters on FerretDB,
copied into PostgreSQL and read back through the PostgreSQL adapters, field by field.

The source is a FerretDB database of the test's own (``database_url``), the target a PostgreSQL
schema of its own (``store_url``); both are dropped after.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from parley_events import (
    ChannelTemplateStatusChanged,
    ConversationEvent,
    Provider,
)
from parley_onboarding.adapters.postgres import PostgresOnboardingStore
from parley_onboarding.adapters.stores import MongoOnboardingStore
from parley_onboarding.domain.channels import Channel
from parley_onboarding.domain.connections import PageConnection
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import WhatsAppOnboarding
from parley_policy.adapters.postgres import PostgresPolicyStore, PostgresPolicyTemplates
from parley_policy.adapters.stores import PolicyStore, PolicyTemplates
from parley_providers.base import GrantedPage
from parley_reports.adapters.postgres import PostgresReportStore
from parley_reports.bootstrap import report_store
from parley_reports.domain.buckets import Bucket, hour_of
from parley_reports.domain.timing import ConversationTiming, new_state
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import MongoConversationRepository
from parley_routing.domain.model import Conversation
from parley_shared import cli
from parley_shared.store import Store, open_store
from parley_shared.storecopy import EXIT_DIFFERENT, EXIT_OK, EXIT_REFUSED, CopyFailed, CopyOptions, copy_store
from parley_shared.vault import Credential, TokenVault, parse_keys

from tests.store.conftest import vault_keys
from tests.support.reports import CHANNEL, at
from tests.support.reports import Conversation as ReportedConversation
from tests.unit.factories import T0, message

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
LIVE_WINDOW = int(NOW.timestamp()) + 3600  # an hour's window not over yet
PAST_WINDOW = int(NOW.timestamp()) - 3600


@dataclass
class Source:
    """What the MongoDB adapters wrote, to compare the copy with."""

    store: Store
    conversations: MongoConversationRepository
    policy: PolicyStore
    templates: PolicyTemplates
    onboarding: MongoOnboardingStore
    events: list[ConversationEvent]
    channel: Channel
    team: Team
    whatsapp: WhatsAppOnboarding
    connection: PageConnection
    credential: Credential
    reports: Any
    timing: ConversationTiming
    bucket: Bucket


@pytest.fixture
def vault() -> TokenVault:
    return TokenVault(parse_keys(vault_keys("k1")))


@pytest.fixture
async def source(database_url: str, vault: TokenVault) -> AsyncIterator[Source]:
    store = await open_store(database_url)
    db = store.db
    try:
        yield await _filled(store, db, vault)
    finally:
        assert store.mongo_client is not None
        await store.mongo_client.drop_database(db.name)
        await store.close()


async def _filled(store: Store, db: Any, vault: TokenVault) -> Source:
    conversations = MongoConversationRepository(
        db["conversations"],
        db["conversation_history"],
        notes=db["conversation_notes"],
        seen=db["conversation_seen_messages"],
    )
    await conversations.ensure_indexes()
    events: list[ConversationEvent] = []
    first = Conversation.open(message(1, conversation_id="conv_1"))
    events += first.receive(message(1, conversation_id="conv_1"))
    events += first.receive(message(2, conversation_id="conv_1"))
    await conversations.save(first)
    events += first.assign("agent-1", "agent-1", "cmd:assign", T0 + timedelta(minutes=1))
    events += first.add_note("call back tomorrow", "agent-1", "cmd:note", T0 + timedelta(minutes=2))
    await conversations.save(first)  # version 2: the copy takes the newest
    await conversations.record_projections(events, NOW)
    second = Conversation.open(message(1, conversation_id="conv_2"))
    late = second.receive(message(1, conversation_id="conv_2"))
    await conversations.save(second)
    await conversations.record_projections(late, NOW - timedelta(days=30))  # seen ids expired
    events += late
    await conversations.record_history(events)
    # a writer that stopped between its claim and the document write: the claim is the newest
    ahead = await conversations.get("conv_2")
    assert ahead is not None
    ahead.receive(message(3, conversation_id="conv_2"))
    ahead.version += 1
    await conversations.documents.commits.insert_one(
        {"_id": "conv_2:2", "doc_id": "conv_2", "version": 2, "doc": ahead.to_document()}
    )

    policy, templates = PolicyStore(db), PolicyTemplates(db)
    await policy.ensure_indexes()
    await policy.record_inbound(message(1, conversation_id="conv_1"))
    await policy.mark_private_replied("conv_1", "comment_9")
    assert await policy.claim_decision("reply:1", {"outcome": "approved", "reply_id": "rpl_1"}) is None
    await policy.mark_published("reply:1")
    await policy.record_delivery("rpl_1", "mid.123")
    for _ in range(3):
        assert await policy.take_rate_slot("chn_1/text/hour", LIVE_WINDOW, 10) is not None
    assert await policy.take_rate_slot("chn_1/text/hour", PAST_WINDOW, 10) is not None
    assert await policy.claim_notice("notice:conv_1", NOW)
    since = NOW - timedelta(hours=24)
    assert await policy.claim_reach("waba_1", "+15550001", NOW - timedelta(hours=1), since, 2)
    assert await policy.claim_reach("waba_1", "+15550002", NOW, since, 2)
    assert await policy.claim_reach("waba_1", "+15550001", NOW, since, 2)  # keeps its place, later
    await policy.record_messaging_limit("waba_1", 250, NOW)
    await policy.record_thread_control("conv_1", False, NOW)
    assert await policy.claim_private_reply("conv_1", "comment/9", "rpl_1")
    await templates.record(
        ChannelTemplateStatusChanged(
            event_id="tpl-1",
            channel_id="chn_wa",
            tenant_id="ten_acme",
            provider=Provider.WHATSAPP,
            occurred_at=T0,
            template_name="order_update",
            language="en_US",
            status="APPROVED",
            parameter_count=2,
        )
    )

    onboarding = MongoOnboardingStore(db, vault)
    await onboarding.ensure_indexes()
    channel, _ = Channel.connect(
        tenant_id="ten_acme",
        provider=Provider.MESSENGER,
        account_id="page_1",
        actor_id="usr_1",
        at=T0,
        display_name="Acme",
        token_expires_at=T0 + timedelta(days=60),
        scopes=("pages_messaging",),
    )
    await onboarding.save_channel(channel)
    credential = Credential(
        channel.id, "page-token", T0 + timedelta(days=60), ("pages_messaging",), "refresh-1"
    )
    await onboarding.put_credential(credential)
    team = Team.create("ten_acme", "Support")
    await onboarding.save_team(team)
    whatsapp = WhatsAppOnboarding(id="wa_1", tenant_id="ten_acme", phone_number="+15550001", revision=1)
    await onboarding.save_onboarding(whatsapp)
    await onboarding.save_whatsapp_token("wa_1", "system-user-token")
    await onboarding.save_whatsapp_pin("wa_1", "123456")
    assert await onboarding.claim_code_attempt("wa_1", range(1, 4), NOW) == 1
    assert await onboarding.claim_waba("waba_1", "ten_acme", "wa_1", NOW) is None
    assert await onboarding.claim_account(Provider.MESSENGER, "page_1", channel.id, "ten_acme", NOW) == (
        True,
        None,
    )
    assert await onboarding.claim_token_refresh(channel.id, "ab" * 32, NOW, timedelta(minutes=5)) == 0
    connection = PageConnection(
        id="conn_1",
        tenant_id="ten_acme",
        actor_id="usr_1",
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
        user_token_expires_at=NOW + timedelta(days=60),
        granted=frozenset({"pages_messaging"}),
        pages=(GrantedPage("page_1", "Acme", "page-token-1", ("MESSAGING",), None),),
    )
    await onboarding.save_connection(connection)

    reports = report_store(store)
    await reports.ensure_indexes()
    timeline = ReportedConversation()
    timing = new_state(timeline.created(0))
    bucket = Bucket("ten_acme", CHANNEL, hour_of(at(0)))
    for event in (timeline.created(0), timeline.message(0)):
        for contribution in timing.apply(event):
            bucket.apply(contribution)
    await reports.save_state(timing)
    for contribution in timing.apply(timeline.owned(2, "ana")):
        bucket.apply(contribution)
    await reports.save_state(timing)  # version 2
    await reports.save_bucket(bucket)
    return Source(
        store,
        conversations,
        policy,
        templates,
        onboarding,
        events,
        channel,
        team,
        whatsapp,
        connection,
        credential,
        reports,
        timing,
        bucket,
    )


async def _copy(source: Source, target_url: str, **options: Any) -> tuple[int, str]:
    out = io.StringIO()
    code = await copy_store(source.store.url, target_url, CopyOptions(**options), out)
    return code, out.getvalue()


async def test_a_mongodb_deployment_copied_into_postgresql_reads_back_the_same(
    source: Source, store_url: str, vault: TokenVault
) -> None:
    code, dry = await _copy(source, store_url, dry_run=True)
    assert code == EXIT_OK, dry
    assert "nothing written (--dry-run)" in dry

    code, first = await _copy(source, store_url, verify=True)
    assert code == EXIT_OK, first
    assert "verify: 0 difference(s)" in first

    code, second = await _copy(source, store_url, verify=True)
    assert code == EXIT_OK, second
    assert "nothing changed" in second

    target = await open_store(store_url)
    try:
        await _compare(source, target, vault)  # (its claims change the target: last)
    finally:
        await target.close()


async def _compare(source: Source, target: Store, vault: TokenVault) -> None:
    conversations = PostgresConversationRepository(target.postgres)
    for conversation_id in ("conv_1", "conv_2"):
        mongo = await source.conversations.get(conversation_id)
        copied = await conversations.get(conversation_id)
        assert mongo is not None and copied is not None
        assert copied.to_document() == mongo.to_document()
        assert await conversations.history_of(conversation_id) == await source.conversations.history_of(
            conversation_id
        )
        assert await conversations.notes_of(copied) == await source.conversations.notes_of(mongo)
    conv_2 = await conversations.get("conv_2")
    assert conv_2 is not None and conv_2.version == 2  # rolled forward over the stopped writer's claim
    assert [n.text for n in await conversations.notes_of(conv_2)] == []
    assert await conversations.seen_before("conv_1", ["m_1", "m_2", "m_9"]) == {"m_1", "m_2"}
    assert await conversations.seen_before("conv_2", ["m_1"]) == set()  # expired: left out
    # nothing was published on MongoDB: the relay on PostgreSQL finds both conversations' events
    pending = {c.id: c for c in await conversations.pending_outbox()}
    assert set(pending) == {"conv_1", "conv_2"}
    assert pending["conv_1"].published_sequence == 0

    policy = PostgresPolicyStore(target.postgres)
    assert await policy.conversation("conv_1") == await source.policy.conversation("conv_1")
    assert await policy.decision("reply:1") == await source.policy.decision("reply:1")
    assert await policy.delivered("rpl_1") == "mid.123"
    # three of ten slots were taken in the live window: the next one is the fourth
    assert await policy.take_rate_slot("chn_1/text/hour", LIVE_WINDOW, 10) == 3
    assert not await policy.claim_notice("notice:conv_1", NOW)
    since = NOW - timedelta(hours=24)
    assert await policy.business_initiated_recipients("waba_1", since) == {"+15550001", "+15550002"}
    assert not await policy.claim_reach("waba_1", "+15550003", NOW, since, 2)  # the limit holds
    assert await policy.messaging_limit("waba_1") == await source.policy.messaging_limit("waba_1")
    assert not await policy.parley_active("conv_1")
    assert await policy.claim_private_reply("conv_1", "comment/9", "rpl_1")
    assert not await policy.claim_private_reply("conv_1", "comment/9", "rpl_2")
    templates = PostgresPolicyTemplates(target.postgres)
    await templates.load()
    await source.templates.load()
    assert templates.of("chn_wa") == source.templates.of("chn_wa")

    onboarding = PostgresOnboardingStore(target.postgres, vault)
    assert await onboarding.channel(source.channel.id) == source.channel
    assert await onboarding.credential(source.channel.id) == source.credential  # decrypts, same key
    assert await onboarding.team(source.team.id) == source.team
    assert await onboarding.onboarding("wa_1") == source.whatsapp
    assert await onboarding.whatsapp_token("wa_1") == "system-user-token"
    assert await onboarding.connection("ten_acme", "conn_1") == source.connection
    assert await onboarding.highest_code_attempt("wa_1") == 1
    assert await onboarding.claim_waba("waba_1", "ten_other", "wa_2", NOW) == "ten_acme"
    copied_reports = PostgresReportStore(target.postgres)
    assert await copied_reports.get_state(source.timing.conversation_id) == source.timing
    assert await copied_reports.get_bucket(CHANNEL, hour_of(at(0))) == source.bucket
    inserted, holder = await onboarding.claim_account(
        Provider.MESSENGER, "page_1", "chn_other", "ten_other", NOW
    )
    assert not inserted and holder is not None and holder.channel_id == source.channel.id
    assert (
        await onboarding.claim_token_refresh(source.channel.id, "ab" * 32, NOW, timedelta(minutes=5)) is None
    )


async def test_a_target_holding_another_deployments_rows_is_refused_unless_forced(
    source: Source, store_url: str, database_url: str
) -> None:
    code, _ = await _copy(source, store_url)
    assert code == EXIT_OK
    other = database_url.rsplit("/", 1)[0] + f"/{source.store.db.name}_other"
    out = io.StringIO()
    code = await copy_store(other, store_url, CopyOptions(), out)
    assert code == EXIT_REFUSED
    assert "--force" in out.getvalue()
    code = await copy_store(other, store_url, CopyOptions(force=True), out)
    assert code == EXIT_OK  # an empty source: nothing written, nothing lost


def test_the_cli_counts_a_copy_with_dry_run(
    database_url: str, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["store", "copy", "--from", database_url, "--to", store_url, "--dry-run"])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert "routing.conversations -> conversations" in out
    assert "onboarding.channel_credentials -> channel_credentials" in out


def test_the_cli_refuses_urls_of_the_wrong_kind(database_url: str, store_url: str) -> None:
    assert cli.main(["store", "copy", "--from", store_url, "--to", database_url]) == 2


async def test_a_later_version_written_on_postgresql_is_never_taken_back(
    source: Source, store_url: str, vault: TokenVault
) -> None:
    code, _ = await _copy(source, store_url)
    assert code == EXIT_OK
    target = await open_store(store_url)
    try:
        onboarding = PostgresOnboardingStore(target.postgres, vault)
        changed = await onboarding.channel(source.channel.id)
        assert changed is not None
        changed.settings = dataclasses.replace(changed.settings, display_name="Acme EU")
        changed.revision += 1
        await onboarding.save_channel(changed)

        code, again = await _copy(source, store_url, verify=True)
        assert code == EXIT_OK, again  # the kept row is no difference
        assert "kept: 1 row(s) the target holds at a later version" in again
        assert await onboarding.channel(source.channel.id) == changed
    finally:
        await target.close()


async def test_verify_with_dry_run_names_what_the_target_lacks_or_holds_differently(
    source: Source, store_url: str
) -> None:
    code, _ = await _copy(source, store_url)
    assert code == EXIT_OK
    async with await psycopg.AsyncConnection.connect(store_url, autocommit=True) as conn:
        await conn.execute("UPDATE policy_deliveries SET provider_message_id = 'mid.other'")
        await conn.execute("DELETE FROM policy_window_notices")

    code, out = await _copy(source, store_url, dry_run=True, verify=True)

    assert code == EXIT_DIFFERENT, out
    assert "difference: policy_deliveries rpl_1: provider_message_id differs" in out
    assert "difference: missing policy_window_notices notice:conv_1" in out
    assert "verify: 2 difference(s)" in out


async def test_a_copy_stopped_by_a_document_names_it_and_a_second_run_finishes_the_copy(
    source: Source, store_url: str
) -> None:
    broken = {"_id": "chn_wa:broken:en", "channel_id": "chn_wa", "name": "broken"}  # no status
    await source.store.db["policy_templates"].insert_one(broken)

    with pytest.raises(
        CopyFailed, match=r"policy_templates -> policy_templates, after 1 document\(s\): KeyError"
    ):
        await _copy(source, store_url)

    await source.store.db["policy_templates"].delete_one({"_id": broken["_id"]})
    code, out = await _copy(source, store_url, verify=True)  # onboarding's rows are there: not refused
    assert code == EXIT_OK, out
    assert "verify: 0 difference(s)" in out
