"""One Messenger message through the real processes: ingest -> normalizer -> routing."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from parley_events import ConversationCreated, ConversationMessageAdded, qualify, topics
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_shared.store import open_store

from tests.conftest import Infra
from tests.support.kafka import publish_channel, read_records
from tests.support.payloads import body_of, messenger_text
from tests.support.processes import ServiceProcess, start_service

pytestmark = pytest.mark.e2e

APP_SECRET = "e2e-app-secret"


@pytest.fixture
def stack(
    infra: Infra, namespace: str, store_url: str, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_STORE_URL": store_url,  # PostgreSQL, a schema of this test's own
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
        "PARLEY_META_APP_SECRETS": APP_SECRET,
        "PARLEY_META_VERIFY_TOKEN": "e2e-verify-token",
        "PARLEY_JWT_HS256_SECRET": "e2e-jwt-secret-of-at-least-32-bytes",
        "PARLEY_SHUTDOWN_TIMEOUT_S": "10",
    }
    services = {
        name: start_service(name, env, tmp_path)
        for name in ("parley-ingest", "parley-normalizer", "parley-routing")
    }
    try:
        for service in services.values():
            service.wait_ready()
        yield services
    finally:
        codes = {name: s.terminate() for name, s in services.items()}
        logs = {name: s.log() for name, s in services.items()}
        # graceful shutdown: every process exits cleanly on SIGTERM
        assert codes == dict.fromkeys(services, 0), logs
        for name, text in logs.items():
            assert '"event": "stopped"' in text, f"{name} did not finish its shutdown"
        # no secret reaches a log line
        for name, text in logs.items():
            assert APP_SECRET not in text, name


async def test_a_signed_messenger_message_becomes_a_stored_conversation_and_an_event(
    stack: dict[str, ServiceProcess], infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_channel(
        infra.kafka, namespace, channel_id="channel-e2e", tenant_id="tenant-e2e", account_id="page-e2e"
    )
    payload = messenger_text("page-e2e", "customer-42", "Where is my order?", mid="m_e2e_1")
    body = body_of(payload)
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    trace_id = secrets.token_hex(16)
    headers = {
        "content-type": "application/json",
        "x-hub-signature-256": signature,
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
    }

    response = httpx.post(f"{stack['parley-ingest'].url}/webhooks/meta", content=body, headers=headers)
    assert response.status_code == 200

    conversations = qualify(topics.CONVERSATIONS.name, namespace)
    records = await read_records(infra.kafka, conversations, until=lambda rs: len(rs) >= 2, timeout=60)
    by_type = {dict(r.headers)["ce_type"].decode(): r for r in records}
    created = ConversationCreated.model_validate_json(by_type["parley.conversation.created.v1"].value)
    added = ConversationMessageAdded.model_validate_json(
        by_type["parley.conversation.message_added.v1"].value
    )
    assert created.tenant_id == "tenant-e2e"
    assert created.channel_id == "channel-e2e"
    assert created.queue.value == "new"
    assert created.conversation_key == "dm:customer-42"
    assert (created.sequence, added.sequence) == (1, 2)
    assert added.conversation_id == created.conversation_id
    assert added.content.text == "Where is my order?"
    assert added.direction.value == "inbound"
    assert added.provider_message_id == "m_e2e_1"
    ce = {k: v.decode() for k, v in by_type["parley.conversation.created.v1"].headers}
    assert ce["ce_specversion"] == "1.0"
    assert ce["ce_source"] == "/parley/routing"
    assert ce["ce_tenantid"] == "tenant-e2e"
    assert ce["ce_subject"] == created.conversation_id
    assert by_type["parley.conversation.created.v1"].key == created.conversation_id.encode()
    # one trace across the processes: the webhook's trace id rides the Kafka headers to routing
    for record in by_type.values():
        assert dict(record.headers)["traceparent"].decode().split("-")[1] == trace_id

    store = await open_store(store_url)
    try:
        stored = await PostgresConversationRepository(store.postgres).get(created.conversation_id)
    finally:
        await store.close()
    assert stored is not None
    assert stored.queue.value == "new"
    assert stored.tenant_id == "tenant-e2e"
    assert stored.sequence == 2

    # the provider re-sends the same delivery: 200 again, and no new conversation event
    again = httpx.post(f"{stack['parley-ingest'].url}/webhooks/meta", content=body, headers=headers)
    assert again.status_code == 200
    raw = qualify(topics.WEBHOOKS_RAW.name, namespace)
    await read_records(infra.kafka, raw, until=lambda rs: len(rs) >= 2, timeout=30)
    # a later message proves the pipeline moved past the duplicate
    later = body_of(messenger_text("page-e2e", "customer-42", "Any news?", mid="m_e2e_2"))
    later_sig = "sha256=" + hmac.new(APP_SECRET.encode(), later, hashlib.sha256).hexdigest()
    httpx.post(
        f"{stack['parley-ingest'].url}/webhooks/meta",
        content=later,
        headers={"content-type": "application/json", "x-hub-signature-256": later_sig},
    ).raise_for_status()
    records = await read_records(
        infra.kafka,
        conversations,
        until=lambda rs: any(json.loads(r.value).get("sequence") == 3 for r in rs),
        timeout=60,
    )
    sequences = sorted(json.loads(r.value)["sequence"] for r in records if json.loads(r.value)["event_id"])
    # duplicates may be republished with the same ids, but no new sequence number was spent on them
    assert sorted(set(sequences)) == [1, 2, 3]
    texts = {json.loads(r.value).get("content", {}).get("text") for r in records}
    assert texts >= {"Where is my order?", "Any news?"}
