"""WhatsApp messaging limits against the real store: unique customers outside the window per 24 h,
shared by every number of the business and by every policy replica."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import (
    Author,
    ChannelRole,
    ChannelSnapshot,
    ChannelStatus,
    Content,
    Direction,
    MessageReceived,
    Provider,
)
from parley_policy.adapters.stores import PolicyStore
from parley_policy.domain.decision import ReplyRequest, Template, TemplateInfo
from parley_policy.service import PolicyService
from parley_shared import mongo

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CHANNEL = ChannelSnapshot(
    channel_id="ch-wa",
    tenant_id="t",
    provider=Provider.WHATSAPP,
    account_id="phone-1",
    status=ChannelStatus.ACTIVE,
    revision=1,
)


def inbound(customer: str) -> MessageReceived:
    return MessageReceived(
        event_id=f"msg-{customer}",
        tenant_id="t",
        channel_id="ch-wa",
        provider=Provider.WHATSAPP,
        account_id="phone-1",
        conversation_id=f"conv-{customer}",
        conversation_key=f"dm:{customer}",
        direction=Direction.INBOUND,
        author=Author(id=customer),
        content=Content(text="hi"),
        provider_message_id=f"wamid-{customer}",
        provider_timestamp=T0,
        delivery_id="d",
    )


async def test_the_tier_caps_unique_customers_reached_outside_the_window(database_url: str) -> None:
    client: Any = mongo.open_client(database_url)
    published: list[Any] = []
    now = {"at": T0 + timedelta(days=2)}  # every window is closed: templates only

    async def publish(event: Any, _id: str) -> None:
        published.append(event)

    store = PolicyStore(mongo.database(client, database_url))
    templates = {("order_update", "en_US"): TemplateInfo(status="APPROVED", parameter_count=1)}
    service = PolicyService(
        store,
        {"ch-wa": CHANNEL}.get,
        lambda *_: ChannelRole.CONTRIBUTOR,
        lambda _cid: templates,
        publish,
        clock=lambda: now["at"],
        messaging_tier=0,
    )
    try:
        customers = [f"c{i}" for i in range(251)]
        for customer in customers:
            await service.on_inbound(inbound(customer))
        request = ReplyRequest(template=Template("order_update", "en_US", ("#42",)))
        outcomes = []
        for customer in customers:
            now["at"] += timedelta(seconds=1)  # stay under the per-second throughput
            outcomes.append(
                await service.request_reply(
                    "t", "agent", False, f"conv-{customer}", request, f"key-{customer}"
                )
            )
        approved = [o for o in outcomes if o.decision.approved]
        assert len(approved) == 250  # tier 0: 250 unique customers per rolling 24 h
        assert [r.code for r in outcomes[-1].decision.reasons] == ["MESSAGING_LIMIT"]
        # a customer already reached counts once: another template to them is fine
        again = await service.request_reply("t", "agent", False, "conv-c0", request, "key-c0-again")
        assert again.decision.approved
        # 24 hours after the first ones, the rolling window has room again
        now["at"] += timedelta(hours=24)
        later = await service.request_reply("t", "agent", False, "conv-c250", request, "key-c250-later")
        assert later.decision.approved
        assert "c250" in await store.business_initiated_recipients(
            "channel:ch-wa", now["at"] - timedelta(hours=24)
        )
        # inside the customer's 24-hour window a template is not business-initiated: it does not count
        fresh = inbound("fresh").model_copy(update={"provider_timestamp": now["at"]})
        await service.on_inbound(fresh)
        inside = await service.request_reply("t", "agent", False, "conv-fresh", request, "key-fresh")
        assert inside.decision.approved
        assert "fresh" not in await store.business_initiated_recipients("channel:ch-wa", T0)
    finally:
        await client.drop_database(mongo.database_name(database_url))
        await client.close()


WABA_NUMBERS = {
    channel_id: ChannelSnapshot(
        channel_id=channel_id,
        tenant_id="t",
        provider=Provider.WHATSAPP,
        account_id=f"phone-{channel_id}",
        status=ChannelStatus.ACTIVE,
        business_account_id="waba-1",
        revision=1,
        throughput_level="HIGH",  # upgraded numbers: the test's 249 sends share one clock second
    )
    for channel_id in ("ch-wa-1", "ch-wa-2")
}


def inbound_on(channel_id: str, customer: str) -> MessageReceived:
    return inbound(customer).model_copy(
        update={
            "channel_id": channel_id,
            "account_id": f"phone-{channel_id}",
            "conversation_id": f"conv-{channel_id}-{customer}",
            "event_id": f"msg-{channel_id}-{customer}",
        }
    )


async def test_two_replicas_racing_for_the_last_place_of_the_business_admit_one(database_url: str) -> None:
    # two replicas: each its own client and store adapter on the same database, as two processes
    clients: list[Any] = [mongo.open_client(database_url) for _ in range(2)]
    now = T0 + timedelta(days=2)  # every window is closed: templates only
    templates = {("order_update", "en_US"): TemplateInfo(status="APPROVED", parameter_count=1)}

    async def publish(event: Any, _id: str) -> None:
        return None

    replicas = [
        PolicyService(
            PolicyStore(mongo.database(client, database_url)),
            WABA_NUMBERS.get,
            lambda *_: ChannelRole.CONTRIBUTOR,
            lambda _cid: templates,
            publish,
            clock=lambda: now,
            messaging_tier=0,
            whatsapp_throughput=1000,
        )
        for client in clients
    ]
    request = ReplyRequest(template=Template("order_update", "en_US", ("#42",)))
    try:
        # 249 customers reached through the business's first number: one place is left, and it
        # is the business's, so the second number shares it
        for n in range(249):
            await replicas[n % 2].on_inbound(inbound_on("ch-wa-1", f"c{n}"))
            outcome = await replicas[n % 2].request_reply(
                "t", "agent", False, f"conv-ch-wa-1-c{n}", request, f"key-c{n}"
            )
            assert outcome.decision.approved, outcome.decision.reasons
        for customer in ("last-a", "last-b"):
            await replicas[0].on_inbound(inbound_on("ch-wa-2", customer))

        racing = await asyncio.gather(
            replicas[0].request_reply("t", "agent", False, "conv-ch-wa-2-last-a", request, "key-a"),
            replicas[1].request_reply("t", "agent", False, "conv-ch-wa-2-last-b", request, "key-b"),
        )

        assert sorted(o.decision.approved for o in racing) == [False, True]
        [refused] = [o for o in racing if not o.decision.approved]
        assert [r.code for r in refused.decision.reasons] == ["MESSAGING_LIMIT"]
        reached = await replicas[1].store.business_initiated_recipients(
            "waba:waba-1", now - timedelta(hours=24)
        )
        assert len(reached) == 250
    finally:
        await clients[0].drop_database(mongo.database_name(database_url))
        for client in clients:
            await client.close()


async def test_two_numbers_of_different_throughput_each_get_their_own_rate_across_replicas(
    database_url: str,
) -> None:
    """A number in coexistence with the WhatsApp Business app sends 20 a second, a standard one 80,
    counted in the store so two replicas together hold each number to its own rate."""
    numbers = {
        "ch-coex": CHANNEL.model_copy(
            update={"channel_id": "ch-coex", "account_id": "phone-coex", "coexistence": True}
        ),
        "ch-std": CHANNEL.model_copy(
            update={"channel_id": "ch-std", "account_id": "phone-std", "throughput_level": "STANDARD"}
        ),
    }
    clients: list[Any] = [mongo.open_client(database_url) for _ in range(2)]
    now = T0 + timedelta(minutes=1)  # inside every customer's window: free-form text

    async def publish(event: Any, _id: str) -> None:
        return None

    replicas = [
        PolicyService(
            PolicyStore(mongo.database(client, database_url)),
            numbers.get,
            lambda *_: ChannelRole.CONTRIBUTOR,
            lambda _cid: {},
            publish,
            clock=lambda: now,
        )
        for client in clients
    ]
    try:
        approved = {}
        for channel_id, attempts in (("ch-coex", 26), ("ch-std", 86)):
            for n in range(attempts):
                customer = f"{channel_id}-c{n}"
                message = inbound(customer).model_copy(
                    update={"channel_id": channel_id, "account_id": numbers[channel_id].account_id}
                )
                await replicas[n % 2].on_inbound(message)
            outcomes = await asyncio.gather(
                *(
                    replicas[n % 2].request_reply(
                        "t",
                        "agent",
                        False,
                        f"conv-{channel_id}-c{n}",
                        ReplyRequest(text="hi"),
                        f"k-{channel_id}-{n}",
                    )
                    for n in range(attempts)
                )
            )
            approved[channel_id] = sum(o.decision.approved for o in outcomes)
            refused = [o for o in outcomes if not o.decision.approved]
            assert {r.code for o in refused for r in o.decision.reasons} == {"RATE_LIMITED"}
        assert approved == {"ch-coex": 20, "ch-std": 80}
    finally:
        await clients[0].drop_database(mongo.database_name(database_url))
        for client in clients:
            await client.close()
