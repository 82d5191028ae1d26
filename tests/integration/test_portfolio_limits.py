"""WhatsApp messaging limits per business portfolio, end to end on the real broker and store:
onboarding activates two numbers of two WhatsApp Business Accounts of one portfolio against the
provider sandbox, learns the portfolio from Graph, and announces it in the channels' snapshots;
policy, fed by those snapshots through the channel directory, counts both numbers against one
limit. A number activated while its portfolio could not be read (as numbers activated before
onboarding read portfolios were) gains it from onboarding's periodic round, and policy then counts
the customers it reached for its account toward the portfolio."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import (
    Author,
    ChannelRole,
    Content,
    Direction,
    MessageReceived,
    MessagingLimitChanged,
    Provider,
    qualify,
    topics,
)
from parley_onboarding.domain.whatsapp import OPERATOR_STEPS
from parley_policy.adapters.postgres import PostgresPolicyStore
from parley_policy.adapters.stores import PolicyStore, PolicyStorePort
from parley_policy.domain.decision import ReplyRequest, Template, TemplateInfo
from parley_policy.service import PolicyService
from parley_shared import mongo
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.store import open_store

from tests.conftest import Infra
from tests.support.onboarding import Stack, of_type, onboarding_stack

pytestmark = pytest.mark.integration

PORTFOLIO = "1234567890123456"
# two WhatsApp Business Accounts of one portfolio, one number in each: (phone number id, WABA id)
NUMBERS = [("106540352240001", "102290129340001"), ("106540352240002", "102290129340002")]
SNAPSHOT = "parley.channel.snapshot.v1"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    async with onboarding_stack(infra, namespace, store_url) as s:
        yield s


async def activate(
    stack: Stack, phone_number_id: str, waba_id: str, token: str, *, portfolio_unreadable: bool = False
) -> str:
    """One WhatsApp onboarding through the admin API up to an activated number; its channel id."""
    created = await stack.call("POST", "/whatsapp/onboardings", status=201)

    async def step(action: str, body: dict[str, Any] | None = None) -> Any:
        headers = stack.operator() if action in OPERATOR_STEPS else stack.admin()
        path = f"/whatsapp/onboardings/{created['id']}/{action}"
        return await stack.call("POST", path, body, headers=headers)

    await step("sign-agreement")
    await step("accept-terms")
    details = {
        "phone_number": f"+1415555{phone_number_id[-4:]}",
        "landline": False,
        "business_manager_id": PORTFOLIO,
        "display_name": "Acme Support",
    }
    await step("submit-details", details)
    await step(
        "account-created",
        {"phone_number_id": phone_number_id, "waba_id": waba_id, "access_token": token},
    )
    await step("approve-business-manager")
    await step("business-verified")
    await step("request-code")
    if portfolio_unreadable:  # Graph fails every read of the account's owner from here on
        fault = {"path_contains": f"/{waba_id}", "method": "GET", "status": 500, "times": 20}
        await stack.sandbox_admin("POST", "/faults", fault)
    code = (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{phone_number_id}/last-code"))["code"]
    activated = await step("verify-code", {"code": str(code)})
    assert activated["step"] == "activated"
    return str(activated["channel_id"])


def inbound(channel_id: str, phone_number_id: str, customer: str) -> MessageReceived:
    return MessageReceived(
        event_id=f"msg-{channel_id}-{customer}",
        tenant_id="t",
        channel_id=channel_id,
        provider=Provider.WHATSAPP,
        account_id=phone_number_id,
        conversation_id=f"conv-{customer}",
        conversation_key=f"dm:{customer}",
        direction=Direction.INBOUND,
        author=Author(id=customer),
        content=Content(text="hi"),
        provider_message_id=f"wamid-{customer}",
        provider_timestamp=T0,
        delivery_id="d",
    )


async def test_the_numbers_of_two_accounts_of_one_portfolio_share_its_messaging_limit(
    stack: Stack, database_url: str
) -> None:
    token = f"wa-system-user-{secrets.token_hex(24)}"  # one system user manages both accounts
    for phone_number_id, waba_id in NUMBERS:
        await stack.sandbox_admin(
            "POST",
            "/whatsapp/numbers",
            {
                "phone_number_id": phone_number_id,
                "waba_id": waba_id,
                "token": token,
                "owner_business_id": PORTFOLIO,
            },
        )
    channel_ids = [await activate(stack, phone, waba, token) for phone, waba in NUMBERS]

    # onboarding asked Graph for each account's owner and announced it in the snapshots
    for _, waba_id in NUMBERS:
        [read] = [r for r in stack.recorder.matching(f"/{waba_id}") if r.method == "GET"]
        assert "fields=owner_business_info" in read.query
    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    latest = {s["channel_id"]: s for s in snapshots}
    assert {latest[c]["business_portfolio_id"] for c in channel_ids} == {PORTFOLIO}
    tenant = latest[channel_ids[0]]["tenant_id"]

    directory = KafkaChannelDirectory(stack.infra.kafka, qualify(topics.CHANNELS.name, stack.namespace))
    await directory.start()
    client: Any = mongo.open_client(database_url)
    now = T0 + timedelta(days=2)  # every customer window is closed: templates only
    templates = {("order_update", "en_US"): TemplateInfo(status="APPROVED", parameter_count=1)}

    async def publish(event: Any, _id: str) -> None:
        return None

    policy = PolicyService(
        PolicyStore(mongo.database(client, database_url)),
        directory.by_id.get,
        lambda *_: ChannelRole.CONTRIBUTOR,
        lambda _cid: templates,
        publish,
        clock=lambda: now,
        messaging_tier=0,
        business_channel=directory.lookup_business,
    )
    try:
        # Meta announces the limit for the first account only; it is the portfolio's
        await policy.on_messaging_limit(
            MessagingLimitChanged(
                event_id="limit-1",
                tenant_id=tenant,
                business_account_id=NUMBERS[0][1],
                tier="TIER_2",
                messaging_limit=2,
                provider_timestamp=T0,
                delivery_id="d-limit",
            )
        )
        sends = [(0, "c1"), (0, "c2"), (1, "c3")]
        for number, customer in sends:
            message = inbound(channel_ids[number], NUMBERS[number][0], customer)
            await policy.on_inbound(message.model_copy(update={"tenant_id": tenant}))
        request = ReplyRequest(template=Template("order_update", "en_US", ("#42",)))
        outcomes = [
            await policy.request_reply(tenant, "agent", False, f"conv-{customer}", request, f"key-{customer}")
            for _, customer in sends
        ]

        # the first number used the portfolio's two places: the second account's number is refused
        assert [o.decision.approved for o in outcomes] == [True, True, False]
        assert [r.code for r in outcomes[2].decision.reasons] == ["MESSAGING_LIMIT"]
        reached = await policy.store.business_initiated_recipients(
            f"portfolio:{PORTFOLIO}", now - timedelta(hours=24)
        )
        assert set(reached) == {"c1", "c2"}
    finally:
        await directory.stop()
        await client.drop_database(mongo.database_name(database_url))
        await client.close()


async def test_a_number_is_activated_when_its_portfolio_cannot_be_read(stack: Stack) -> None:
    token = f"wa-system-user-{secrets.token_hex(24)}"
    phone_number_id, waba_id = NUMBERS[0]
    body = {"phone_number_id": phone_number_id, "waba_id": waba_id, "token": token}
    await stack.sandbox_admin("POST", "/whatsapp/numbers", body)

    channel_id = await activate(stack, phone_number_id, waba_id, token, portfolio_unreadable=True)

    assert [r for r in stack.recorder.matching(f"/{waba_id}") if r.method == "GET"]  # it was asked
    [snapshot] = [
        s for s in of_type(await stack.events(topics.CHANNELS), SNAPSHOT) if s["channel_id"] == channel_id
    ]
    # the channel is active and names no portfolio: policy counts its limit per account
    assert (snapshot["status"], snapshot["business_portfolio_id"]) == ("active", None)
    assert snapshot["business_account_id"] == waba_id


async def number_gains_its_portfolio_and_its_customers_count_there(stack: Stack, store_url: str) -> None:
    token = f"wa-system-user-{secrets.token_hex(24)}"
    phone_number_id, waba_id = NUMBERS[0]
    await stack.sandbox_admin(
        "POST",
        "/whatsapp/numbers",
        {
            "phone_number_id": phone_number_id,
            "waba_id": waba_id,
            "token": token,
            "owner_business_id": PORTFOLIO,
        },
    )
    # activated while its portfolio could not be read: counted for its account, as a number
    # activated before onboarding read portfolios is
    channel_id = await activate(stack, phone_number_id, waba_id, token, portfolio_unreadable=True)

    directory = KafkaChannelDirectory(stack.infra.kafka, qualify(topics.CHANNELS.name, stack.namespace))
    await directory.start()
    store = await open_store(store_url)
    policy_store: PolicyStorePort
    if store.kind == "postgresql":
        policy_store = PostgresPolicyStore(store.postgres)
        await policy_store.ensure_indexes()  # the migrations
    else:
        policy_store = PolicyStore(store.db)
        await policy_store.ensure_indexes()
    templates = {("order_update", "en_US"): TemplateInfo(status="APPROVED", parameter_count=1)}

    async def publish(event: Any, _id: str) -> None:
        return None

    policy = PolicyService(
        policy_store,
        directory.by_id.get,
        lambda *_: ChannelRole.CONTRIBUTOR,
        lambda _cid: templates,
        publish,
        clock=lambda: datetime.now(UTC),  # the customers wrote at T0: every window is closed
        messaging_tier=0,
        business_channel=directory.lookup_business,
    )
    request = ReplyRequest(template=Template("order_update", "en_US", ("#42",)))
    tenant = ""

    async def send(customer: str, key: str) -> bool:
        message = inbound(channel_id, phone_number_id, customer).model_copy(update={"tenant_id": tenant})
        await policy.on_inbound(message)
        outcome = await policy.request_reply(tenant, "agent", False, f"conv-{customer}", request, key)
        return outcome.decision.approved

    try:
        await directory.catch_up()
        before = directory.by_id[channel_id]
        assert (before.business_portfolio_id, before.business_account_id) == (None, waba_id)
        tenant = before.tenant_id
        await policy.on_messaging_limit(
            MessagingLimitChanged(
                event_id="limit-account",
                tenant_id=tenant,
                business_account_id=waba_id,
                tier="TIER_3",
                messaging_limit=3,
                provider_timestamp=T0,
                delivery_id="d-limit",
            )
        )
        assert [await send(c, f"before-{c}") for c in ("c1", "c2")] == [True, True]  # counted for waba:

        # Graph answers again: onboarding's round reads the portfolio and announces it
        await stack.sandbox_admin("DELETE", "/faults")
        assert await stack.service.record_business_portfolios() == 1
        assert await stack.service.record_business_portfolios() == 0  # idempotent

        await directory.catch_up()  # the snapshot was published before the round returned
        assert directory.by_id[channel_id].business_portfolio_id == PORTFOLIO

        # c1 again takes no new place; c3 takes the last of the account's limit, now the portfolio's
        assert [await send(c, f"after-{c}") for c in ("c1", "c3", "c4")] == [True, True, False]
        since = datetime.now(UTC) - timedelta(hours=24)
        reached = await policy_store.business_initiated_recipients(f"portfolio:{PORTFOLIO}", since)
        assert set(reached) == {"c1", "c2", "c3"}
    finally:
        await directory.stop()
        await store.close()


async def test_a_number_activated_without_its_portfolio_gains_it_and_its_customers_count_there(
    stack: Stack, store_url: str
) -> None:
    await number_gains_its_portfolio_and_its_customers_count_there(stack, store_url)


@pytest.mark.mongodb
async def test_the_same_on_mongodb(stack: Stack, store_url: str) -> None:
    await number_gains_its_portfolio_and_its_customers_count_there(stack, store_url)
