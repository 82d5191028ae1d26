"""Security #13, finding 3: an account reconnected in another tenant cannot be taken back.

Tenant A connects Page P, disconnects it; tenant B connects P; A then edits its dead channel. The
edit is refused, and every channel directory, the live one and one rebuilt from the topic after a
restart, attributes P's messages to B. Two tenants connecting one account at once: exactly one
wins, through the account's claim in onboarding's store.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from parley_events import (
    ChannelStatus,
    Event,
    MessageReceived,
    Provider,
    WebhookReceived,
    qualify,
    topics,
)
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.service import Normalizer
from parley_onboarding.domain.channels import Channel
from parley_shared.channels import KafkaChannelDirectory
from prometheus_client import REGISTRY

from tests.conftest import Infra
from tests.support.aliases import empty_aliases
from tests.support.onboarding import OTHER_TENANT, TENANT, Stack, onboarding_stack
from tests.unit.factories import messaging_text, page_delivery, page_entry

pytestmark = pytest.mark.integration

PAGE = "104512345678950"
ADMIN_B = "usr-globex-admin"


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    """The running stack, on PostgreSQL (a schema of its own)."""
    async with onboarding_stack(infra, namespace, store_url) as s:
        yield s


async def directory(stack: Stack) -> KafkaChannelDirectory:
    started = KafkaChannelDirectory(stack.infra.kafka, qualify(topics.CHANNELS.name, stack.namespace))
    await started.start()
    return started


async def attributed_to(directory: KafkaChannelDirectory, mid: str) -> list[MessageReceived]:
    """Normalize one Messenger message to PAGE the way ingest does; the events it publishes."""
    published: list[Event] = []

    async def publish(event: Event, _: str) -> None:
        published.append(event)

    body = orjson.dumps(page_delivery(page_entry([messaging_text(mid)], page_id=PAGE)))
    raw = WebhookReceived(
        event_id=f"raw-{mid}",
        delivery_id=f"delivery-{mid}",
        provider="meta",
        received_at=datetime.now(UTC),
        body_b64=base64.b64encode(body).decode(),
        partition_key=PAGE,
    )
    await Normalizer(directory, publish, 5.0, RecentIds(100), empty_aliases()).normalize(raw)
    return [e for e in published if isinstance(e, MessageReceived)]


async def connect_page(
    stack: Stack, tenant: str, admin: str, page_id: str = PAGE, *, status: int = 200
) -> Any:
    """An admin of ``tenant`` authorizes a Meta user managing ``page_id`` and activates it."""
    code = await stack.meta_user(f"meta-{tenant}-{page_id}", [{"id": page_id, "name": "Acme"}])
    started = await stack.start_meta(code, headers=stack.admin(admin, tenant))
    return await stack.activate(
        started["connection_id"], [page_id], headers=stack.admin(admin, tenant), status=status
    )


async def test_a_page_reconnected_in_another_tenant_stays_there(stack: Stack) -> None:
    live = await directory(stack)
    try:
        [mine] = await connect_page(stack, TENANT, "usr-admin")
        await live.catch_up(timeout=10)
        assert [m.tenant_id for m in await attributed_to(live, "m1")] == [TENANT]

        # A disconnects: the app leaves the Page, the claim goes, the directory forgets the account
        gone = await stack.call("DELETE", f"/channels/{mine['id']}")
        assert gone["status"] == "disconnected"
        assert (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE}"))["subscribed_fields"] == []
        assert await stack.account_holder(Provider.MESSENGER, PAGE) is None
        await live.catch_up(timeout=10)
        assert live.lookup(Provider.MESSENGER, PAGE) is None

        # B connects the same Page
        [theirs] = await connect_page(stack, OTHER_TENANT, ADMIN_B)
        assert theirs["status"] == "active" and theirs["id"] != mine["id"]
        assert (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE}"))["subscribed_fields"] != []

        # A edits its dead channel: refused, nothing published
        before = len(await stack.events(topics.CHANNELS))
        for method, path, body in (
            ("PATCH", f"/channels/{mine['id']}/settings", {"display_name": "Mine again"}),
            ("PUT", f"/channels/{mine['id']}/access", {"all_users_role": "contributor"}),
        ):
            refused = await stack.call(method, path, body, status=409)
            assert refused["code"] == "CHANNEL_DISCONNECTED", refused
        assert len(await stack.events(topics.CHANNELS)) == before
        # and A cannot take the account back by connecting it again
        await connect_page(stack, TENANT, "usr-admin", status=409)

        await live.catch_up(timeout=10)
        assert [(m.tenant_id, m.channel_id) for m in await attributed_to(live, "m2")] == [
            (OTHER_TENANT, theirs["id"])
        ]
    finally:
        await live.stop()

    # a restart: a directory rebuilt from the beginning of the topic agrees
    for _ in range(3):
        rebuilt = await directory(stack)
        try:
            assert rebuilt.by_id[mine["id"]].status is ChannelStatus.DISCONNECTED
            assert [(m.tenant_id, m.channel_id) for m in await attributed_to(rebuilt, "m3")] == [
                (OTHER_TENANT, theirs["id"])
            ]
        finally:
            await rebuilt.stop()


async def test_two_tenants_connecting_one_account_at_once_exactly_one_wins(stack: Stack) -> None:
    pages = [f"10451234567{n:04d}" for n in range(6)]
    for page_id in pages:
        starts = []
        for tenant, admin in ((TENANT, "usr-admin"), (OTHER_TENANT, ADMIN_B)):
            code = await stack.meta_user(f"meta-{tenant}-{page_id}", [{"id": page_id, "name": "Contested"}])
            started = await stack.start_meta(code, headers=stack.admin(admin, tenant))
            starts.append((started["connection_id"], stack.admin(admin, tenant)))
        answers = await asyncio.gather(
            *(
                stack.api.post(
                    f"/v1/connections/meta/{connection_id}/activate",
                    json={"page_ids": [page_id], "instagram_account_ids": []},
                    headers=headers,
                )
                for connection_id, headers in starts
            )
        )
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        loser = next(a for a in answers if a.status_code == 409)
        assert loser.json()["code"] == "ACCOUNT_CONNECTED_ELSEWHERE"
        winner = next(a for a in answers if a.status_code == 200).json()[0]
        channels = [
            c
            for tenant in (TENANT, OTHER_TENANT)
            for c in await stack.service.stores.tenant_channels(tenant)
            if c.account_id == page_id
        ]
        assert [(c.id, c.status) for c in channels] == [(winner["id"], ChannelStatus.ACTIVE)]
        assert await stack.account_holder(Provider.MESSENGER, page_id) == winner["id"]


async def test_a_failed_unsubscribe_does_not_stop_the_disconnect(stack: Stack) -> None:
    [mine] = await connect_page(stack, TENANT, "usr-admin")
    labels = {"provider": "messenger", "outcome": "failed"}
    failed_before = REGISTRY.get_sample_value("parley_onboarding_page_unsubscribes_total", labels) or 0.0
    await stack.sandbox_admin(
        "POST", "/faults", {"path_contains": f"/{PAGE}/subscribed_apps", "method": "DELETE", "status": 500}
    )
    gone = await stack.call("DELETE", f"/channels/{mine['id']}")
    assert gone["status"] == "disconnected"
    assert REGISTRY.get_sample_value("parley_onboarding_page_unsubscribes_total", labels) == failed_before + 1
    # the claim is released all the same: another tenant can connect the Page
    [theirs] = await connect_page(stack, OTHER_TENANT, ADMIN_B)
    assert theirs["status"] == "active"


async def test_a_page_another_channel_still_uses_stays_subscribed(stack: Stack) -> None:
    instagram = "17841400000000950"
    code = await stack.meta_user(
        "meta-shared", [{"id": PAGE, "name": "Acme", "instagram": {"id": instagram, "username": "acme"}}]
    )
    started = await stack.start_meta(code)
    channels = {c["provider"]: c for c in await stack.activate(started["connection_id"], [PAGE], [instagram])}
    await stack.call("DELETE", f"/channels/{channels['messenger']['id']}")
    # the Instagram profile's messages come through the same Page subscription
    assert (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE}"))["subscribed_fields"] != []
    await stack.call("DELETE", f"/channels/{channels['instagram']['id']}")
    assert (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE}"))["subscribed_fields"] == []


async def test_channels_that_predate_claims_get_them_on_start_up(
    infra: Infra, namespace: str, store_url: str
) -> None:
    async with onboarding_stack(infra, namespace, store_url) as first:
        # an active channel saved before claims existed: no claim document
        legacy, _ = Channel.connect(
            tenant_id=TENANT,
            provider=Provider.MESSENGER,
            account_id=PAGE,
            actor_id="usr-admin",
            at=datetime.now(UTC) - timedelta(days=30),
        )
        await first.service.stores.save_channel(legacy)
        assert await first.count_stored("account_claims") == 0
    async with onboarding_stack(infra, namespace, store_url) as restarted:
        assert await restarted.account_holder(Provider.MESSENGER, PAGE) == legacy.id
        refused = await connect_page(restarted, OTHER_TENANT, ADMIN_B, status=409)
        assert refused["code"] == "ACCOUNT_CONNECTED_ELSEWHERE"
        assert await restarted.service.ensure_account_claims() == 0  # idempotent


async def test_a_claim_left_by_an_interrupted_disconnect_is_released_once_stale(stack: Stack) -> None:
    [mine] = await connect_page(stack, TENANT, "usr-admin")
    # the disconnect saved the channel but stopped before releasing the claim
    channel = await stack.service.stores.channel(mine["id"])
    assert channel is not None
    await stack.service.stores.save_channel(
        replace(channel, status=ChannelStatus.DISCONNECTED, revision=channel.revision + 1)
    )
    stack.clock.advance(minutes=11)
    [theirs] = await connect_page(stack, OTHER_TENANT, ADMIN_B)
    assert await stack.account_holder(Provider.MESSENGER, PAGE) == theirs["id"]
