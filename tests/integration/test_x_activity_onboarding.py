"""Onboarding keeps X handles' X Activity API subscriptions, against the real broker and store and
the provider sandbox served over HTTP: connecting creates them, disconnecting removes them, the
subscription check re-creates one deleted at X and says so on the channel events, and a channel
switched from the Account Activity API to the X Activity API while DMs keep arriving (through
ingest and the normalizer) loses none and publishes none twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from parley_events import Provider, qualify, topics
from parley_ingest.bootstrap import create_normalizer_app
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_onboarding.domain.channels import channel_id_for
from parley_providers.x.subscriptions import EVENT_TYPES, TAG
from parley_sandbox import SandboxState

from tests.conftest import Infra
from tests.support.apps import running, served_ingest
from tests.support.kafka import read_records
from tests.support.onboarding import TENANT, X_REDIRECT, X_WEBHOOK, Stack, of_type, onboarding_stack

pytestmark = pytest.mark.integration

XAA_WEBHOOK = "1900000000000000042"
HANDLE = "1500000000000000001"
CUSTOMER = "1500000000000000777"
REPAIRED = "parley.channel.subscription_repaired.v1"
SETTINGS_CHANGED = "parley.channel.settings_changed.v1"


def register_xaa_webhook(state: SandboxState) -> None:
    state.x_webhooks[XAA_WEBHOOK] = []


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    """Onboarding with the X Activity API configured (its webhook id and X's app Bearer token), on
    PostgreSQL (a schema of its own)."""
    async with onboarding_stack(
        infra,
        namespace,
        store_url,
        configure=register_xaa_webhook,
        x_activity_webhook_id=XAA_WEBHOOK,
        x_bearer_token=SandboxState.x_bearer_token,
    ) as s:
        yield s


async def connect(stack: Stack, user_id: str = HANDLE, username: str = "acme") -> dict[str, Any]:
    code, verifier = await stack.x_code(user_id, username)
    body = {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    return dict(await stack.call("POST", "/connections/x", body))


async def subscribed(stack: Stack, user_id: str = HANDLE) -> dict[str, str]:
    """Event type -> subscription id of the handle's subscriptions on Parley's XAA webhook."""
    listed = (await stack.sandbox_admin("GET", "/x/activity"))["data"]
    return {
        s["event_type"]: s["subscription_id"]
        for s in listed
        if s["filter"].get("user_id") == user_id and s.get("webhook_id") == XAA_WEBHOOK
    }


async def test_connecting_creates_the_handles_subscriptions_and_disconnecting_removes_them(
    stack: Stack,
) -> None:
    channel = await connect(stack)
    assert channel["settings"]["x_api"] == "activity"
    assert set(await subscribed(stack)) == set(EVENT_TYPES)
    tags = {s["tag"] for s in (await stack.sandbox_admin("GET", "/x/activity"))["data"]}
    assert tags == {TAG}
    # not subscribed through the Account Activity API as well
    assert (await stack.sandbox_admin("GET", f"/x/webhooks/{X_WEBHOOK}"))["subscriptions"] == []

    # connecting again creates nothing new (the same subscription ids)
    before = await subscribed(stack)
    await connect(stack)
    assert await subscribed(stack) == before

    await stack.call("DELETE", f"/channels/{channel['id']}")
    assert await subscribed(stack) == {}


async def test_the_check_recreates_a_subscription_deleted_at_x_and_publishes_what_it_restored(
    stack: Stack,
) -> None:
    channel = await connect(stack)
    deleted = (await subscribed(stack))["dm.received"]
    response = await stack.sandbox_http.delete(
        f"{stack.sandbox_url}/2/activity/subscriptions/{deleted}",
        headers={"authorization": f"Bearer {stack.sandbox.x_bearer_token}"},
    )
    assert response.status_code == 200, response.text
    assert "dm.received" not in await subscribed(stack)

    # the admin's check of the channel
    checked = await stack.call("POST", f"/channels/{channel['id']}/subscription-check")
    assert checked == {
        "channel_id": channel["id"],
        "outcome": "repaired",
        "missing": ["dm.received"],
        "restored": ["dm.received"],
    }
    assert set(await subscribed(stack)) == set(EVENT_TYPES)
    # an agent may not trigger it
    await stack.call(
        "POST", f"/channels/{channel['id']}/subscription-check", headers=stack.agent(), status=403
    )

    # and the periodic one, after X lost another
    deleted = (await subscribed(stack))["post.mention.create"]
    await stack.sandbox_http.delete(
        f"{stack.sandbox_url}/2/activity/subscriptions/{deleted}",
        headers={"authorization": f"Bearer {stack.sandbox.x_bearer_token}"},
    )
    assert await stack.service.check_kept_subscriptions() == 1
    assert set(await subscribed(stack)) == set(EVENT_TYPES)

    events = of_type(await stack.events(topics.CHANNEL_EVENTS), REPAIRED, channel_id=channel["id"])
    assert [(e["restored"], e["provider"], e["tenant_id"]) for e in events] == [
        (["dm.received"], "x", TENANT),
        (["post.mention.create"], "x", TENANT),
    ]


async def test_a_channel_switched_to_the_activity_api_mid_stream_loses_and_repeats_no_dm(
    stack: Stack, infra: Infra, namespace: str
) -> None:
    channel = await connect(stack)
    # as a channel connected before the X Activity API: on the Account Activity API only
    legacy = await stack.call("PATCH", f"/channels/{channel['id']}/settings", {"x_api": "account_activity"})
    assert legacy["settings"]["x_api"] == "account_activity"
    assert await subscribed(stack) == {}
    assert (await stack.sandbox_admin("GET", f"/x/webhooks/{X_WEBHOOK}"))["subscriptions"] == [HANDLE]

    await stack.sandbox_admin("POST", "/x/users", {"id": CUSTOMER, "username": "ana_example"})
    ingest = IngestSettings(
        kafka_bootstrap_servers=infra.kafka,
        topic_namespace=namespace,
        meta_app_secrets="meta-secret",
        meta_verify_token="verify-me",
        x_consumer_secrets=stack.sandbox.x_consumer_secret,
    )
    normalizer = NormalizerSettings(
        kafka_bootstrap_servers=infra.kafka, topic_namespace=namespace, consumer_group_prefix=namespace
    )
    async with running(create_normalizer_app(normalizer)), served_ingest(ingest) as webhook_url:
        for webhook_id in (X_WEBHOOK, XAA_WEBHOOK):
            await stack.sandbox_admin("POST", "/x/webhooks", {"webhook_id": webhook_id, "url": webhook_url})
        sent: list[str] = []
        apis: list[set[str]] = []
        switched = asyncio.Event()

        async def customer_writes(count: int) -> None:
            for n in range(count):
                if n == count // 2:
                    switched.set()
                dm = await stack.sandbox_admin(
                    "POST", "/x/dms", {"sender_id": CUSTOMER, "recipient_id": HANDLE, "text": f"message {n}"}
                )
                assert all(d["status"] == 200 for d in dm["data"]), dm
                sent.append(dm["id"])
                apis.append({d["api"] for d in dm["data"]})
                await asyncio.sleep(0)

        async def admin_switches() -> dict[str, Any]:
            await switched.wait()
            body = {"x_api": "activity"}
            return dict(await stack.call("PATCH", f"/channels/{channel['id']}/settings", body))

        _, after = await asyncio.gather(customer_writes(40), admin_switches())
        assert after["settings"]["x_api"] == "activity"
        # a last DM once the switch is done: delivered by the X Activity API alone
        last = await stack.sandbox_admin(
            "POST", "/x/dms", {"sender_id": CUSTOMER, "recipient_id": HANDLE, "text": "after"}
        )
        sent.append(last["id"])
        apis.append({d["api"] for d in last["data"]})
        records = await read_records(
            infra.kafka,
            qualify(topics.MESSAGES_INBOUND.name, namespace),
            until=lambda rs: any(last["id"].encode() in r.value for r in rs),
        )

    assert apis[0] == {"aaa"} and apis[-1] == {"xaa"}  # the stream moved from one API to the other
    ids = [json.loads(r.value)["provider_message_id"] for r in records]
    assert sorted(ids) == sorted(sent) and len(ids) == len(set(ids))  # none lost, none twice
    assert (await stack.sandbox_admin("GET", f"/x/webhooks/{X_WEBHOOK}"))["subscriptions"] == []
    assert set(await subscribed(stack)) == set(EVENT_TYPES)
    changes = of_type(await stack.events(topics.CHANNEL_EVENTS), SETTINGS_CHANGED, channel_id=channel["id"])
    assert [e["changed"] for e in changes] == [["x_api"], ["x_api"]]
    assert channel["id"] == channel_id_for(TENANT, Provider.X, HANDLE)


async def test_switching_is_refused_without_the_activity_api_configured(
    infra: Infra, namespace: str, store_url: str
) -> None:
    async with onboarding_stack(infra, namespace, store_url) as plain:
        channel = await connect(plain)
        assert channel["settings"]["x_api"] == "account_activity"
        refused = await plain.call(
            "PATCH", f"/channels/{channel['id']}/settings", {"x_api": "activity"}, status=422
        )
        assert refused["code"] == "X_API_NOT_CONFIGURED"
        assert (await plain.sandbox_admin("GET", f"/x/webhooks/{X_WEBHOOK}"))["subscriptions"] == [HANDLE]
