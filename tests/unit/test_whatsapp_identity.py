"""WhatsApp in policy: a customer's identity across a phone-number change (the normalizer keeps
the conversation's id, policy's document takes the new number as the reply address without
opening a window), and the business's messaging limit as the provider sets it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import (
    ChannelSnapshot,
    ChannelStatus,
    Event,
    MessagingLimitChanged,
    Provider,
    ReplyApproved,
    ReplyWindowOpened,
)
from parley_ingest.domain.normalize.events import message_event
from parley_policy.domain.decision import ReplyRequest, Template, TemplateInfo
from parley_policy.service import PolicyService
from parley_providers import registry

from tests.support import fixtures
from tests.support.fakes.policy import FakePolicyStore

pytestmark = pytest.mark.unit

NOW = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)
OLD_PHONE, NEW_PHONE = "15550123456", "15550199999"
CHANNEL = ChannelSnapshot(
    channel_id="chn_wa",
    tenant_id="ten_acme",
    provider=Provider.WHATSAPP,
    account_id="900000000000101",
    status=ChannelStatus.ACTIVE,
    display_name="Acme on WhatsApp",
    revision=1,
)


def normalized(name: str) -> Any:
    endpoint = registry.webhook_endpoint("meta")
    assert endpoint is not None
    [parsed] = endpoint.parse(fixtures.load("whatsapp", name), NOW).messages
    return message_event(parsed, CHANNEL, f"delivery-{name}")


def test_a_number_change_lands_in_the_conversation_created_before_it() -> None:
    before = normalized("username_with_phone")  # the customer wrote from the old number
    change = normalized("system_user_changed_number")

    assert change.conversation_id == before.conversation_id
    assert change.content.identity_change is not None
    assert change.content.identity_change.phone == NEW_PHONE


async def test_after_a_number_change_replies_go_to_the_new_number_and_no_window_opens() -> None:
    store = FakePolicyStore()
    published: list[Event] = []

    async def publish(event: Event, event_id: str) -> None:
        published.append(event)

    service = PolicyService(
        store,
        lambda cid: CHANNEL if cid == CHANNEL.channel_id else None,
        lambda tenant, user, cid: None,
        lambda cid: {},
        publish,
        lambda: NOW,
        80,
    )
    before = normalized("username_with_phone")
    change = normalized("system_user_changed_number").model_copy(
        update={"provider_timestamp": before.provider_timestamp + timedelta(hours=1)}
    )

    await service.on_inbound(before)
    await service.on_inbound(change)

    doc = store.conversations[before.conversation_id]
    assert doc["recipient_id"] == NEW_PHONE
    assert doc["last_customer_message_at"] == before.provider_timestamp  # the change opened nothing
    assert len([e for e in published if isinstance(e, ReplyWindowOpened)]) == 1
    outcome = await service.request_reply(
        "ten_acme", "ana", True, before.conversation_id, ReplyRequest(text="Noted"), "k-1"
    )
    assert outcome.decision.approved
    [approved] = [e for e in published if isinstance(e, ReplyApproved)]
    assert approved.recipient_id == NEW_PHONE


async def test_a_conversation_started_by_a_bsuid_is_answered_at_the_phone_once_it_is_shared() -> None:
    store = FakePolicyStore()
    withheld = normalized("bsuid_phone_withheld")
    with_phone = withheld.model_copy(
        update={
            "event_id": "msg_phone",
            "author": withheld.author.model_copy(update={"phone": OLD_PHONE}),
            "provider_timestamp": withheld.provider_timestamp + timedelta(minutes=1),
        }
    )
    late = withheld.model_copy(update={"event_id": "msg_late"})  # delivered after, written before

    await store.record_inbound(withheld)
    assert store.conversations[withheld.conversation_id]["recipient_id"] == withheld.author.user_id
    await store.record_inbound(with_phone)
    await store.record_inbound(
        late.model_copy(update={"author": late.author.model_copy(update={"phone": "1"})})
    )

    assert store.conversations[withheld.conversation_id]["recipient_id"] == OLD_PHONE


# --- the business's messaging limit, as the provider sets it ---------------------------------


def limit_update(tier: str, limit: int | None, at: datetime) -> MessagingLimitChanged:
    return MessagingLimitChanged(
        event_id=f"lim-{tier}-{at.isoformat()}",
        tenant_id="ten_acme",
        business_account_id="waba-acme",
        tier=tier,
        messaging_limit=limit,
        provider_timestamp=at,
        delivery_id="d",
    )


async def business_initiated(
    service: PolicyService, store: FakePolicyStore, customers: int, key: str = "k", first: int = 0
) -> list[Any]:
    """A template outside the window to each of ``customers`` customers of the business, numbered
    from ``first`` (a second call with another ``key`` reaches the same ones again)."""
    templates = ReplyRequest(template=Template("order_update", "en_US", ("#1",)))
    outcomes = []
    for n in range(first, first + customers):
        store.conversations[f"conv-{n}"] = {
            "_id": f"conv-{n}",
            "tenant_id": "ten_acme",
            "channel_id": WABA_CHANNEL.channel_id,
            "provider": "whatsapp",
            "account_id": WABA_CHANNEL.account_id,
            "conversation_key": f"dm:1555000{n:04d}",
            "recipient_id": f"1555000{n:04d}",
            "last_customer_message_at": None,
        }
        outcome = await service.request_reply("ten_acme", "ana", True, f"conv-{n}", templates, f"{key}-{n}")
        outcomes.append(outcome.decision)
    return outcomes


WABA_CHANNEL = CHANNEL.model_copy(update={"business_account_id": "waba-acme"})


def limited_service(store: FakePolicyStore, current: list[ChannelSnapshot] | None = None) -> PolicyService:
    """``current[0]`` is the channel as the directory holds it now (a test may replace it)."""
    current = current or [WABA_CHANNEL]

    async def publish(event: Event, event_id: str) -> None:
        return None

    clock = {"now": NOW}

    def tick() -> datetime:
        clock["now"] += timedelta(seconds=1)  # under the per-second throughput
        return clock["now"]

    return PolicyService(
        store,
        lambda cid: current[0] if cid == current[0].channel_id else None,
        lambda tenant, user, cid: None,
        lambda cid: {("order_update", "en_US"): TemplateInfo(status="APPROVED", parameter_count=1)},
        publish,
        tick,
        80,
        messaging_tier=0,  # 250 unless the provider says otherwise
        business_channel=lambda provider, account: current[0] if account == "waba-acme" else None,
    )


async def test_the_limit_the_provider_sets_for_the_business_replaces_the_configured_tier() -> None:
    store = FakePolicyStore()
    service = limited_service(store)
    await service.on_messaging_limit(limit_update("TIER_50", 50, NOW))

    outcomes = await business_initiated(service, store, 51)

    assert [d.approved for d in outcomes] == [True] * 50 + [False]
    assert [r.code for r in outcomes[-1].reasons] == ["MESSAGING_LIMIT"]
    assert len(store.reached) == 50 and {scope for scope, _ in store.reached} == {"waba:waba-acme"}


async def test_an_unlimited_business_counts_nobody_and_a_late_older_update_changes_nothing() -> None:
    store = FakePolicyStore()
    service = limited_service(store)
    await service.on_messaging_limit(limit_update("TIER_UNLIMITED", None, NOW))
    await service.on_messaging_limit(limit_update("TIER_50", 50, NOW - timedelta(days=1)))

    outcomes = await business_initiated(service, store, 60)

    assert all(d.approved for d in outcomes)
    assert store.reached == {}


# --- a channel activated before portfolios, once onboarding read its portfolio ------------------


async def test_a_channel_that_gains_its_portfolio_counts_its_accounts_customers_there_once() -> None:
    store = FakePolicyStore()
    current = [WABA_CHANNEL]  # activated before onboarding read portfolios: counts per account
    service = limited_service(store, current)
    await service.on_messaging_limit(limit_update("TIER_50", 50, NOW))  # recorded for waba:waba-acme
    assert all(d.approved for d in await business_initiated(service, store, 30, key="before"))

    current[0] = WABA_CHANNEL.model_copy(update={"business_portfolio_id": "bp-acme", "revision": 2})
    # the 30 reached before count for the portfolio, once each when reached again; the account's
    # limit (50) is the portfolio's until Meta sets one, not the configured tier's 250
    outcomes = await business_initiated(service, store, 51, key="after")

    assert [d.approved for d in outcomes] == [True] * 50 + [False]
    assert [r.code for r in outcomes[-1].reasons] == ["MESSAGING_LIMIT"]
    portfolio = {customer for scope, customer in store.reached if scope == "portfolio:bp-acme"}
    assert len(portfolio) == 50


async def test_customers_reached_for_the_account_over_a_day_ago_are_not_carried() -> None:
    store = FakePolicyStore()
    current = [WABA_CHANNEL]
    service = limited_service(store, current)
    await service.on_messaging_limit(limit_update("TIER_50", 50, NOW))
    await business_initiated(service, store, 30, key="before")
    for key, at in list(store.reached.items()):
        store.reached[key] = at - timedelta(hours=25)  # reached over a rolling day ago

    current[0] = WABA_CHANNEL.model_copy(update={"business_portfolio_id": "bp-acme", "revision": 2})
    outcomes = await business_initiated(service, store, 50, key="after", first=30)

    assert all(d.approved for d in outcomes)  # 50 new customers: the old 30 take no place


async def test_a_limit_the_provider_set_for_the_portfolio_wins_over_the_accounts() -> None:
    store = FakePolicyStore()
    current = [WABA_CHANNEL]
    service = limited_service(store, current)
    await service.on_messaging_limit(limit_update("TIER_50", 50, NOW))
    current[0] = WABA_CHANNEL.model_copy(update={"business_portfolio_id": "bp-acme", "revision": 2})
    await service.on_messaging_limit(limit_update("TIER_2K", 2000, NOW))  # now for the portfolio

    outcomes = await business_initiated(service, store, 60)

    assert all(d.approved for d in outcomes)
