"""One trace from the webhook request through normalization and routing, carried in Kafka headers."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest
from parley_events import qualify, topics
from parley_ingest.bootstrap import create_ingest_app, create_normalizer_app
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import publish_channel, read_records
from tests.support.payloads import body_of, messenger_text

pytestmark = pytest.mark.integration

SECRET = "tracing-test-secret"


def trace_id_of(record: object) -> str | None:
    headers = dict(record.headers)  # type: ignore[attr-defined]
    value = headers.get("traceparent")
    return value.decode().split("-")[1] if value else None


async def test_the_webhooks_trace_id_reaches_the_conversation_events(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_channel(infra.kafka, namespace, channel_id="ch-t", tenant_id="t", account_id="page-t")
    common = {
        "kafka_bootstrap_servers": infra.kafka,
        "topic_namespace": namespace,
        "consumer_group_prefix": namespace,
    }
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    body = body_of(messenger_text("page-t", "customer-t", "trace me", mid="m.trace"))
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with (
        running(
            create_routing_app(
                RoutingSettings(
                    **common,
                    store_url=store_url,
                    jwt_hs256_secret="tracing-test-jwt-secret-of-32-bytes!",
                )
            )
        ),
        running(create_normalizer_app(NormalizerSettings(**common))),
        running(
            create_ingest_app(IngestSettings(**common, meta_app_secrets=SECRET, meta_verify_token="t"))
        ) as ingest,
    ):
        response = await ingest.post(
            "/webhooks/meta",
            content=body,
            headers={
                "content-type": "application/json",
                "x-hub-signature-256": signature,
                "traceparent": traceparent,
            },
        )
        assert response.status_code == 200
        conversations = await read_records(
            infra.kafka,
            qualify(topics.CONVERSATIONS.name, namespace),
            until=lambda rs: len(rs) >= 2,
            timeout=60,
        )
    raw = await read_records(
        infra.kafka, qualify(topics.WEBHOOKS_RAW.name, namespace), until=lambda rs: len(rs) >= 1
    )
    inbound = await read_records(
        infra.kafka, qualify(topics.MESSAGES_INBOUND.name, namespace), until=lambda rs: len(rs) >= 1
    )
    assert trace_id_of(raw[0]) == trace_id
    assert trace_id_of(inbound[0]) == trace_id
    assert {trace_id_of(r) for r in conversations} == {trace_id}
    # the AsyncAPI documents' correlation id is the event id, on every hop
    for record in (raw[0], inbound[0], *conversations):
        headers = dict(record.headers)
        assert headers["correlation_id"] == headers["ce_id"]
    # each hop is its own span: the parent span ids differ along the way
    spans = {
        dict(r.headers)["traceparent"].decode().split("-")[2] for r in (raw[0], inbound[0], conversations[0])
    }
    assert len(spans) == 3
