"""X's CRC check against a real ingest app and broker: it must not be a signing oracle.

The CRC answer is HMAC-SHA256(consumer secret, crc_token), the very function that signs POST
bodies (security #13, finding 1): only tokens of X's shape are answered, few per minute to each
client, and a POST body that is not a JSON object (as every token is) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from parley_events import qualify, topics
from parley_ingest.bootstrap import create_ingest_app
from parley_ingest.settings import IngestSettings
from prometheus_client import REGISTRY

from tests.conftest import Infra
from tests.support.kafka import count_records

pytestmark = pytest.mark.integration


@pytest.fixture
async def ingest(infra: Infra, namespace: str) -> AsyncIterator[Callable[..., Any]]:
    """Start ingest apps (lifespan included) with X enabled, and close them afterwards."""
    stack: list[Any] = []

    async def start(hosts: tuple[str, ...] = (), **overrides: Any) -> Any:
        """One client from 127.0.0.1; or, given ``hosts``, one client from each of them."""
        settings = IngestSettings(
            kafka_bootstrap_servers=infra.kafka,
            topic_namespace=namespace,
            meta_app_secrets="meta-secret",
            meta_verify_token="verify-me",
            x_consumer_secrets=X_SECRET,
            **overrides,
        )
        app = create_ingest_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stack.append(lifespan)
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(host, 40000)), base_url="http://ingest"
            )
            for host in hosts or ("127.0.0.1",)
        ]
        stack.extend(clients)
        return clients if hosts else clients[0]

    yield start
    for item in reversed(stack):
        if isinstance(item, httpx.AsyncClient):
            await item.aclose()
        else:
            await item.__aexit__(None, None, None)


def raw_topic(namespace: str) -> str:
    return qualify(topics.WEBHOOKS_RAW.name, namespace)


X_SECRET = "x-consumer-secret"


def crc_refusals(reason: str) -> float:
    labels = {"provider": "x", "reason": reason}
    return REGISTRY.get_sample_value("parley_ingest_handshake_refusals_total", labels) or 0.0


def deliveries(outcome: str) -> float:
    labels = {"provider": "x", "outcome": outcome}
    return REGISTRY.get_sample_value("parley_ingest_deliveries_total", labels) or 0.0


def x_sign(body: bytes, secret: str = X_SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def test_a_json_object_sent_as_crc_token_gets_no_signature(
    ingest: Any, infra: Infra, namespace: str
) -> None:
    client = await ingest()
    refusals_before = crc_refusals("malformed")
    # a forged DM into some tenant's X account: for_user_id is a public X user id
    forged = (
        b'{"for_user_id":"2244994945","direct_message_events":[{"type":"message_create","id":"1",'
        b'"created_timestamp":"1764460800000","message_create":{"target":{"recipient_id":"2244994945"},'
        b'"sender_id":"666","message_data":{"text":"pay here: https://evil.example"}}}]}'
    )
    oracle = await client.get("/webhooks/x", params={"crc_token": forged.decode()})
    assert oracle.status_code == 400
    assert oracle.json()["code"] == "crc_token_malformed"
    assert "response_token" not in oracle.json()
    assert await count_records(infra.kafka, raw_topic(namespace)) == 0
    # X's own check, a short base64 token, still gets the right answer
    token = base64.urlsafe_b64encode(b"\x8f" * 32).decode()
    ok = await client.get("/webhooks/x", params={"crc_token": token})
    assert ok.status_code == 200
    assert ok.json() == {"response_token": x_sign(token.encode())}
    assert crc_refusals("malformed") == refusals_before + 1


@pytest.mark.parametrize("body", ["null", "true", "123", "-1e5", "c2lnbiBtZQ=="])
async def test_a_crc_answer_replayed_as_a_post_signature_is_refused_and_nothing_is_archived(
    ingest: Any, infra: Infra, namespace: str, body: str
) -> None:
    # JSON scalars (and any other string) have a crc_token's shape: the oracle answers them, and
    # that answer is a valid signature of the same bytes posted as a delivery
    client = await ingest()
    answer = await client.get("/webhooks/x", params={"crc_token": body})
    assert answer.status_code == 200
    stolen = answer.json()["response_token"]
    assert stolen == x_sign(body.encode())
    refused_before = deliveries("not_json_object")

    replays = [
        await client.post(
            "/webhooks/x",
            content=body.encode(),
            headers={"content-type": "application/json", "x-twitter-webhooks-signature": stolen},
        )
        for _ in range(3)
    ]

    assert [r.status_code for r in replays] == [400, 400, 400]
    assert replays[0].json()["code"] == "body_not_json_object"
    assert set(replays[0].json()) == {"code", "message"}
    assert deliveries("not_json_object") == refused_before + 3
    assert await count_records(infra.kafka, raw_topic(namespace)) == 0


async def test_a_signed_json_object_is_still_archived(ingest: Any, infra: Infra, namespace: str) -> None:
    client = await ingest()
    body = b' \n {"for_user_id":"2244994945","tweet_create_events":[]}'
    accepted = await client.post(
        "/webhooks/x",
        content=body,
        headers={"content-type": "application/json", "x-twitter-webhooks-signature": x_sign(body)},
    )
    assert accepted.status_code == 200
    assert await count_records(infra.kafka, raw_topic(namespace)) == 1


@pytest.mark.parametrize(
    "token",
    ["a" * 129, "two words", '{"a":1}', "tok%en", "émoji", "line\nbreak"],
    ids=["too-long", "space", "json", "percent", "non-ascii", "newline"],
)
async def test_crc_tokens_not_of_the_documented_shape_get_a_400(ingest: Any, token: str) -> None:
    client = await ingest()
    refused = await client.get("/webhooks/x", params={"crc_token": token})
    assert refused.status_code == 400
    assert set(refused.json()) == {"code", "message"}


async def test_crc_checks_are_rate_limited_per_client_so_a_flood_cannot_starve_x(ingest: Any) -> None:
    flooder, x, other = await ingest(
        hosts=("198.51.100.7", "199.16.156.1", "203.0.113.9"), x_crc_per_minute=3
    )
    refusals_before = crc_refusals("rate_limited")
    answers = [
        (await flooder.get("/webhooks/x", params={"crc_token": f"t{i}"})).status_code for i in range(5)
    ]
    assert answers == [200, 200, 200, 429, 429]
    limited = await flooder.get("/webhooks/x", params={"crc_token": "t9"})
    assert limited.json()["code"] == "crc_token_rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert crc_refusals("rate_limited") == refusals_before + 3
    # X's own check, from its own address, is answered while the flooder is refused
    token = base64.urlsafe_b64encode(b"\x8f" * 32).decode()
    check = await x.get("/webhooks/x", params={"crc_token": token})
    assert check.status_code == 200
    assert check.json() == {"response_token": x_sign(token.encode())}
    assert (await other.get("/webhooks/x", params={"crc_token": "t"})).status_code == 200
    assert (await flooder.get("/webhooks/x", params={"crc_token": "t"})).status_code == 429
