"""X Activity API deliveries from the provider sandbox through ingest and the normalizer, against
the real broker: the same DM delivered by the Account Activity API and by the X Activity API is
one ``message.received``, and an encrypted XChat message is one flagged ``encrypted``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from parley_events import Provider, qualify, topics
from parley_ingest.bootstrap import create_normalizer_app
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_providers.x.client import XClient
from parley_providers.x.subscriptions import ensure
from parley_sandbox import SandboxState, serve_sandbox

from tests.conftest import Infra
from tests.support.apps import app_of, running, scrape_metrics, served_ingest
from tests.support.kafka import publish_channel, read_records

pytestmark = pytest.mark.integration

HANDLE = "3000000000000000001"
CUSTOMER = "3000000000000000777"
WEBHOOK = "1900000000000000001"


async def admin(http: httpx.AsyncClient, url: str, path: str, body: dict[str, Any]) -> Any:
    response = await http.post(f"{url}/_sandbox{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def user_token(http: httpx.AsyncClient, url: str, x: XClient) -> str:
    created = await admin(http, url, "/x/users", {"id": HANDLE, "username": "ExampleShopHelp"})
    await admin(http, url, "/x/users", {"id": CUSTOMER, "username": "ana_example"})
    return (await x.exchange_code(created["code"], "https://app.parley.test/cb", "v" * 43)).access_token


async def test_one_dm_delivered_by_both_apis_is_one_message_and_an_xchat_is_flagged_encrypted(
    infra: Infra, namespace: str
) -> None:
    state = SandboxState()
    state.x_webhooks[WEBHOOK] = []
    await publish_channel(
        infra.kafka, namespace, channel_id="ch-x", tenant_id="t-x", account_id=HANDLE, provider=Provider.X
    )
    ingest = IngestSettings(
        kafka_bootstrap_servers=infra.kafka,
        topic_namespace=namespace,
        meta_app_secrets="meta-secret",
        meta_verify_token="verify-me",
        x_consumer_secrets=state.x_consumer_secret,
    )
    normalizer = NormalizerSettings(
        kafka_bootstrap_servers=infra.kafka, topic_namespace=namespace, consumer_group_prefix=namespace
    )
    async with (
        serve_sandbox(state) as url,
        httpx.AsyncClient(timeout=10) as http,
        running(create_normalizer_app(normalizer)) as normalizing,
        served_ingest(ingest) as webhook_url,
    ):
        x = XClient(http, url, state.x_client_id, state.x_client_secret)
        token = await user_token(http, url, x)
        await admin(http, url, "/x/webhooks", {"webhook_id": WEBHOOK, "url": webhook_url})
        assert (await admin(http, url, f"/x/webhooks/{WEBHOOK}/crc", {}))["valid"] is True
        # the handle is on both APIs during the switch: AAA's subscription and XAA's
        await x.subscribe_account_activity(token, WEBHOOK)
        report = await ensure(
            x, user_token=token, app_token=state.x_bearer_token, user_id=HANDLE, webhook_id=WEBHOOK
        )
        assert report.complete

        dm = await admin(
            http, url, "/x/dms", {"sender_id": CUSTOMER, "recipient_id": HANDLE, "text": "where is it?"}
        )
        chat = {
            "id": "e4f4d3fc-8bbf-4928-92eb-e5058d6bb6f6",
            "created_at_msec": str(int(state.now() * 1000)),
            "sender_id": CUSTOMER,
            "conversation_id": f"{CUSTOMER}-{HANDLE}",
            "encoded_event": "c2FuZGJveC1jaXBoZXJ0ZXh0",
        }
        sent_chat = await admin(
            http,
            url,
            "/x/activity/deliver",
            {"event_type": "chat.received", "user_id": HANDLE, "payload": chat},
        )
        last = await admin(
            http, url, "/x/dms", {"sender_id": CUSTOMER, "recipient_id": HANDLE, "text": "hello?"}
        )

        assert [d["api"] for d in dm["data"]] == ["aaa", "xaa"]
        assert all(d["status"] == 200 for d in [*dm["data"], *sent_chat["data"], *last["data"]])
        records = await read_records(
            infra.kafka,
            qualify(topics.MESSAGES_INBOUND.name, namespace),
            until=lambda rs: any(last["id"].encode() in r.value for r in rs),
        )
        metrics = await scrape_metrics(app_of(normalizing))

    events = [json.loads(r.value) for r in records]
    ids = [e["provider_message_id"] for e in events]
    assert ids.count(dm["id"]) == 1  # delivered twice, published once
    assert ids == [dm["id"], chat["id"], last["id"]]  # one account's deliveries stay in order
    first, encrypted, _ = events
    assert (first["conversation_key"], first["direction"], first["content"]["text"]) == (
        f"dm:{CUSTOMER}",
        "inbound",
        "where is it?",
    )
    assert (first["author"]["id"], first["author"]["name"]) == (CUSTOMER, "ana_example")
    assert encrypted["content"]["encrypted"] is True
    assert encrypted["content"]["text"] is None
    assert encrypted["conversation_key"] == f"dm:{CUSTOMER}"
    assert 'parley_normalizer_skipped_events_total{kind="x.chat.ciphertext"} 1.0' in metrics
