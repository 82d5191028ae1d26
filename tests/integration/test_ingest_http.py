"""Ingest's Meta webhook endpoint against the real broker: verify, archive, then answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from parley_events import WebhookReceived, qualify, topics
from parley_ingest.bootstrap import create_ingest_app
from parley_ingest.settings import IngestSettings
from prometheus_client import REGISTRY

from tests.conftest import Infra
from tests.support.apps import app_of, scrape_metrics
from tests.support.kafka import count_records, read_records
from tests.support.payloads import body_of, messenger_text

pytestmark = pytest.mark.integration

OLD_SECRET = "old-app-secret"
NEW_SECRET = "new-app-secret"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


AppClient = Callable[..., Any]


@pytest.fixture
async def ingest(infra: Infra, namespace: str) -> AsyncIterator[Callable[..., Any]]:
    """Start ingest apps in this loop (lifespan included) and close them afterwards."""
    stack: list[Any] = []

    async def start(**overrides: Any) -> httpx.AsyncClient:
        settings = IngestSettings(
            kafka_bootstrap_servers=infra.kafka,
            topic_namespace=namespace,
            meta_app_secrets=f"{NEW_SECRET},{OLD_SECRET}",
            meta_verify_token="verify-me",
            log_format="json",
            **overrides,
        )
        app = create_ingest_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stack.append(lifespan)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
        stack.append(client)
        return client

    yield start
    for item in reversed(stack):
        if isinstance(item, httpx.AsyncClient):
            await item.aclose()
        else:
            await item.__aexit__(None, None, None)


def raw_topic(namespace: str) -> str:
    return qualify(topics.WEBHOOKS_RAW.name, namespace)


async def test_handshake_echoes_the_challenge_only_for_the_right_token(ingest: Any) -> None:
    client = await ingest()
    ok = await client.get(
        "/webhooks/meta",
        params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await client.get(
        "/webhooks/meta",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
    )
    assert wrong.status_code == 403
    wrong_mode = await client.get(
        "/webhooks/meta",
        params={"hub.mode": "unsubscribe", "hub.verify_token": "verify-me", "hub.challenge": "1"},
    )
    assert wrong_mode.status_code == 403


async def test_a_signed_delivery_is_archived_byte_for_byte_before_the_200(
    ingest: Any, infra: Infra, namespace: str
) -> None:
    client = await ingest()
    body = body_of(messenger_text("page-1", "customer-1", "héllo ✓"))
    signature = sign(body, NEW_SECRET)
    response = await client.post(
        "/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": signature},
    )
    assert response.status_code == 200
    # acknowledged before the answer: the record is already there
    assert await count_records(infra.kafka, raw_topic(namespace)) == 1
    records = await read_records(infra.kafka, raw_topic(namespace), until=lambda rs: len(rs) == 1)
    archived = WebhookReceived.model_validate_json(records[0].value)
    assert base64.b64decode(archived.body_b64) == body
    assert archived.provider == "meta"
    assert records[0].key == b"page-1"
    headers = {k: v.decode() for k, v in records[0].headers}
    assert headers["ce_type"] == "parley.webhook.received.v1"
    assert headers["ce_id"] == archived.delivery_id
    assert signature not in records[0].value.decode()
    assert "x-hub-signature-256" not in archived.headers


async def test_the_previous_secret_still_verifies_during_rotation(ingest: Any) -> None:
    client = await ingest()
    body = body_of(messenger_text("page-1", "customer-1", "hi"))
    response = await client.post(
        "/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, OLD_SECRET)},
    )
    assert response.status_code == 200


INSTAGRAM_SECRET, OLD_INSTAGRAM_SECRET = "instagram-app-secret", "old-instagram-app-secret"


def instagram_dm(account_id: str, customer: str, text: str) -> dict[str, Any]:
    """An Instagram DM delivery as Instagram Login accounts get it (``object: instagram``)."""
    at = 1764489600000
    message = {"sender": {"id": customer}, "recipient": {"id": account_id}, "timestamp": at}
    message["message"] = {"mid": "aWdfZAG1faXRlbTox", "text": text}
    return {"object": "instagram", "entry": [{"id": account_id, "time": at, "messaging": [message]}]}


async def test_deliveries_signed_by_the_instagram_app_verify_with_its_own_rotating_secrets(
    ingest: Any, infra: Infra, namespace: str
) -> None:
    client = await ingest(instagram_app_secrets=f"{INSTAGRAM_SECRET},{OLD_INSTAGRAM_SECRET}")
    body = body_of(instagram_dm("17841400000000077", "ig-customer-1", "hello"))
    for secret in (INSTAGRAM_SECRET, OLD_INSTAGRAM_SECRET, NEW_SECRET):  # either app, either key
        response = await client.post(
            "/webhooks/meta",
            content=body,
            headers={"content-type": "application/json", "x-hub-signature-256": sign(body, secret)},
        )
        assert response.status_code == 200, secret
    records = await read_records(infra.kafka, raw_topic(namespace), until=lambda rs: len(rs) == 3)
    assert {r.key for r in records} == {b"17841400000000077"}

    # an ingest that does not know the Instagram app refuses its deliveries
    unknown = await ingest()
    refused = await unknown.post(
        "/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, INSTAGRAM_SECRET)},
    )
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "sha1=abc", "not-a-signature"],
    ids=["missing", "wrong", "other-algorithm", "garbage"],
)
async def test_a_missing_or_wrong_signature_gets_401_and_nothing_is_archived(
    ingest: Any, infra: Infra, namespace: str, signature: str | None
) -> None:
    client = await ingest()
    body = body_of(messenger_text("page-1", "customer-1", "hi"))
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    response = await client.post("/webhooks/meta", content=body, headers=headers)
    assert response.status_code == 401
    assert response.content == b""
    assert await count_records(infra.kafka, raw_topic(namespace)) == 0


@pytest.mark.parametrize("body", [b"null", b"[]", b'"text"', b"42", b" "])
async def test_a_signed_body_that_is_not_a_json_object_gets_400_and_nothing_is_archived(
    ingest: Any, infra: Infra, namespace: str, body: bytes
) -> None:
    # Meta only ever delivers an object; whatever else is signed is not a delivery (review P1-1)
    client = await ingest()
    labels = {"provider": "meta", "outcome": "not_json_object"}
    refused_before = REGISTRY.get_sample_value("parley_ingest_deliveries_total", labels) or 0.0
    response = await client.post(
        "/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, NEW_SECRET)},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "body_not_json_object"
    assert await count_records(infra.kafka, raw_topic(namespace)) == 0
    assert REGISTRY.get_sample_value("parley_ingest_deliveries_total", labels) == refused_before + 1


async def test_a_body_signed_with_another_apps_secret_is_refused(ingest: Any) -> None:
    client = await ingest()
    body = body_of(messenger_text("page-1", "customer-1", "hi"))
    response = await client.post(
        "/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, "someone-else")},
    )
    assert response.status_code == 401


async def test_size_content_type_and_method_are_checked(ingest: Any, infra: Infra, namespace: str) -> None:
    client = await ingest(max_body_bytes=100)
    big = b'{"object":"page","entry":[' + b" " * 200 + b"]}"
    too_large = await client.post(
        "/webhooks/meta",
        content=big,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(big, NEW_SECRET)},
    )
    assert too_large.status_code == 413
    small = b'{"entry":[]}'
    wrong_type = await client.post(
        "/webhooks/meta",
        content=small,
        headers={"content-type": "text/plain", "x-hub-signature-256": sign(small, NEW_SECRET)},
    )
    assert wrong_type.status_code == 415
    wrong_method = await client.put("/webhooks/meta", content=small)
    assert wrong_method.status_code == 405
    assert await count_records(infra.kafka, raw_topic(namespace)) == 0


async def test_a_broker_that_does_not_acknowledge_in_time_gets_the_provider_a_503(ingest: Any) -> None:
    client = await ingest(kafka_ack_timeout_s=0.000001)
    body = body_of(messenger_text("page-1", "customer-1", "hi"))
    response = await client.post(
        "/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, NEW_SECRET)},
    )
    assert response.status_code == 503


async def test_health_readiness_and_metrics_answer(ingest: Any) -> None:
    client = await ingest()
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"kafka": "ok"}
    assert (await client.get("/metrics")).status_code == 404  # not on the public port
    assert "parley_ingest_deliveries_total" in await scrape_metrics(app_of(client))
