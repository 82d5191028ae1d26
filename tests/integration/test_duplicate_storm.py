"""A duplicate storm: the same signed delivery ten times at once has exactly one effect."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
from parley_events import qualify, topics
from parley_ingest.bootstrap import create_ingest_app, create_normalizer_app
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import count_records, publish_channel, read_records
from tests.support.payloads import body_of, messenger_text

pytestmark = pytest.mark.integration

SECRET = "storm-secret"


async def test_ten_concurrent_copies_of_one_delivery_make_one_conversation_message(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_channel(infra.kafka, namespace, channel_id="ch-s", tenant_id="t", account_id="page-s")
    common = {
        "kafka_bootstrap_servers": infra.kafka,
        "topic_namespace": namespace,
        "consumer_group_prefix": namespace,
    }
    storm = body_of(messenger_text("page-s", "customer-s", "hello?", mid="m.storm"))
    after = body_of(messenger_text("page-s", "customer-s", "anyone?", mid="m.after"))

    def headers(body: bytes) -> dict[str, str]:
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"content-type": "application/json", "x-hub-signature-256": signature}

    async with (
        running(
            create_routing_app(
                RoutingSettings(
                    **common, store_url=store_url, jwt_hs256_secret="storm-test-jwt-secret-of-32-bytes!!"
                )
            )
        ),
        running(create_normalizer_app(NormalizerSettings(**common))),
        running(
            create_ingest_app(IngestSettings(**common, meta_app_secrets=SECRET, meta_verify_token="t"))
        ) as ingest,
    ):
        answers = await asyncio.gather(
            *(ingest.post("/webhooks/meta", content=storm, headers=headers(storm)) for _ in range(10))
        )
        assert [a.status_code for a in answers] == [200] * 10
        await ingest.post("/webhooks/meta", content=after, headers=headers(after))
        conversations = qualify(topics.CONVERSATIONS.name, namespace)
        records = await read_records(
            infra.kafka,
            conversations,
            until=lambda rs: any(json.loads(r.value).get("provider_message_id") == "m.after" for r in rs),
            timeout=60,
        )
    # every copy was archived (each got its 200), but the conversation got the message once
    assert await count_records(infra.kafka, qualify(topics.WEBHOOKS_RAW.name, namespace)) == 11
    added = [
        json.loads(r.value)
        for r in records
        if dict(r.headers)["ce_type"] == b"parley.conversation.message_added.v1"
    ]
    storm_sequences = {m["sequence"] for m in added if m["provider_message_id"] == "m.storm"}
    assert storm_sequences == {2}
    assert {m["sequence"] for m in added if m["provider_message_id"] == "m.after"} == {3}
