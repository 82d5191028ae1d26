"""Webhook to normalized events against the real broker: batches, echoes, repeats, replay."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import MessageReceived, MessageStatusChanged, Provider, dlq_name, qualify, topics
from parley_ingest.bootstrap import create_ingest_app, create_normalizer_app
from parley_ingest.entrypoints.cli import replay
from parley_ingest.settings import IngestSettings, NormalizerSettings

from tests.conftest import Infra
from tests.support.apps import app_of, running, scrape_metrics
from tests.support.kafka import count_records, publish_channel, read_records
from tests.support.payloads import body_of, messenger_text

pytestmark = pytest.mark.integration

SECRET = "normalizer-test-secret"
X_SECRET = "x-consumer-secret"


def meta_headers(body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-hub-signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


def x_headers(body: bytes, secret: str = X_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "x-twitter-webhooks-signature": "sha256=" + base64.b64encode(digest).decode(),
    }


def ingest_settings(infra: Infra, namespace: str, **extra: Any) -> IngestSettings:
    return IngestSettings(
        kafka_bootstrap_servers=infra.kafka,
        topic_namespace=namespace,
        meta_app_secrets=SECRET,
        meta_verify_token="t",
        x_consumer_secrets=f"{X_SECRET},old-x-secret",
        **extra,
    )


def normalizer_settings(infra: Infra, namespace: str) -> NormalizerSettings:
    return NormalizerSettings(
        kafka_bootstrap_servers=infra.kafka,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        consumer_max_attempts=2,
        consumer_retry_backoff_s=0.01,
    )


def inbound(namespace: str) -> str:
    return qualify(topics.MESSAGES_INBOUND.name, namespace)


def types_of(records: list[Any]) -> list[str]:
    return [dict(r.headers)["ce_type"].decode() for r in records]


async def test_a_batch_becomes_one_event_per_message_keyed_by_conversation(
    infra: Infra, namespace: str
) -> None:
    await publish_channel(infra.kafka, namespace, channel_id="ch-a", tenant_id="t-a", account_id="page-a")
    await publish_channel(infra.kafka, namespace, channel_id="ch-b", tenant_id="t-b", account_id="page-b")
    now = int(datetime.now(UTC).timestamp() * 1000)
    payload = {
        "object": "page",
        "entry": [
            {
                "id": "page-a",
                "time": now,
                "messaging": [
                    {
                        "sender": {"id": "c1"},
                        "recipient": {"id": "page-a"},
                        "timestamp": now,
                        "message": {"mid": "m.a1", "text": "first"},
                    },
                    {
                        "sender": {"id": "page-a"},
                        "recipient": {"id": "c1"},
                        "timestamp": now + 1,
                        "message": {"mid": "m.a2", "text": "our answer", "is_echo": True, "app_id": 1},
                    },
                    {
                        "sender": {"id": "c1"},
                        "recipient": {"id": "page-a"},
                        "timestamp": now + 2,
                        "delivery": {"mids": ["m.a2"], "watermark": now + 1},
                    },
                ],
            },
            {
                "id": "page-b",
                "time": now,
                "messaging": [
                    {
                        "sender": {"id": "c2"},
                        "recipient": {"id": "page-b"},
                        "timestamp": now,
                        "message": {"mid": "m.b1", "text": "second tenant"},
                    },
                ],
            },
        ],
    }
    body = body_of(payload)
    async with (
        running(create_normalizer_app(normalizer_settings(infra, namespace))),
        running(create_ingest_app(ingest_settings(infra, namespace))) as ingest,
    ):
        assert (
            await ingest.post("/webhooks/meta", content=body, headers=meta_headers(body))
        ).status_code == 200
        records = await read_records(infra.kafka, inbound(namespace), until=lambda rs: len(rs) >= 4)
    events = {json.loads(r.value)["event_id"]: r for r in records}
    messages = [
        MessageReceived.model_validate_json(r.value)
        for r in records
        if dict(r.headers)["ce_type"] == b"parley.message.received.v1"
    ]
    receipts = [
        MessageStatusChanged.model_validate_json(r.value)
        for r in records
        if dict(r.headers)["ce_type"] == b"parley.message.status_changed.v1"
    ]
    assert len(events) == 4
    by_mid = {m.provider_message_id: m for m in messages}
    assert set(by_mid) == {"m.a1", "m.a2", "m.b1"}
    assert by_mid["m.a1"].direction.value == "inbound"
    assert by_mid["m.a2"].direction.value == "outbound"  # the page's own echo
    assert by_mid["m.a1"].conversation_id == by_mid["m.a2"].conversation_id
    assert (by_mid["m.a1"].tenant_id, by_mid["m.b1"].tenant_id) == ("t-a", "t-b")
    assert receipts[0].provider_message_ids == ("m.a2",)
    assert receipts[0].conversation_id == by_mid["m.a1"].conversation_id
    for record in records:
        assert record.key == json.loads(record.value)["conversation_id"].encode()


async def test_a_repeated_delivery_yields_one_normalized_event(infra: Infra, namespace: str) -> None:
    await publish_channel(infra.kafka, namespace, channel_id="ch", tenant_id="t", account_id="page-r")
    body = body_of(messenger_text("page-r", "c9", "hello once", mid="m.repeat"))
    later = body_of(messenger_text("page-r", "c9", "after the repeats", mid="m.after"))
    async with (
        running(create_normalizer_app(normalizer_settings(infra, namespace))),
        running(create_ingest_app(ingest_settings(infra, namespace))) as ingest,
    ):
        for _ in range(3):
            assert (
                await ingest.post("/webhooks/meta", content=body, headers=meta_headers(body))
            ).status_code == 200
        await ingest.post("/webhooks/meta", content=later, headers=meta_headers(later))
        records = await read_records(
            infra.kafka, inbound(namespace), until=lambda rs: any(b"m.after" in r.value for r in rs)
        )
    mids = [json.loads(r.value)["provider_message_id"] for r in records]
    assert mids.count("m.repeat") == 1
    assert await count_records(infra.kafka, qualify(topics.WEBHOOKS_RAW.name, namespace)) == 4


async def test_unknown_accounts_are_archived_but_not_normalized(infra: Infra, namespace: str) -> None:
    await publish_channel(infra.kafka, namespace, channel_id="ch", tenant_id="t", account_id="page-known")
    stranger = body_of(messenger_text("page-nobody-claims", "c1", "hi", mid="m.stranger"))
    known = body_of(messenger_text("page-known", "c1", "hi", mid="m.known"))
    async with (
        running(create_normalizer_app(normalizer_settings(infra, namespace))) as normalizer,
        running(create_ingest_app(ingest_settings(infra, namespace))) as ingest,
    ):
        assert (
            await ingest.post("/webhooks/meta", content=stranger, headers=meta_headers(stranger))
        ).status_code == 200
        await ingest.post("/webhooks/meta", content=known, headers=meta_headers(known))
        records = await read_records(infra.kafka, inbound(namespace), until=lambda rs: len(rs) >= 1)
        metrics = await scrape_metrics(app_of(normalizer))
    assert [json.loads(r.value)["provider_message_id"] for r in records] == ["m.known"]
    assert 'parley_normalizer_unknown_accounts_total{provider="messenger"}' in metrics
    assert await count_records(infra.kafka, dlq_name(qualify(topics.WEBHOOKS_RAW.name, namespace))) == 0


async def test_a_signed_delivery_that_cannot_be_normalized_is_archived_and_dead_lettered_with_a_reason(
    infra: Infra, namespace: str
) -> None:
    body = b'{"object": "page", "entry": [{"id": "page-x", "messaging": [{"sender": {}}]}]}'
    not_json = b"{this is not json"
    async with (
        running(create_normalizer_app(normalizer_settings(infra, namespace))),
        running(create_ingest_app(ingest_settings(infra, namespace))) as ingest,
    ):
        assert (
            await ingest.post("/webhooks/meta", content=body, headers=meta_headers(body))
        ).status_code == 200
        assert (
            await ingest.post("/webhooks/meta", content=not_json, headers=meta_headers(not_json))
        ).status_code == 200
        dead = await read_records(
            infra.kafka, dlq_name(qualify(topics.WEBHOOKS_RAW.name, namespace)), until=lambda rs: len(rs) >= 2
        )
    reasons = sorted(dict(r.headers)["parley_dlq_error"].decode() for r in dead)
    assert any("recipient is not an object" in reason for reason in reasons), reasons
    assert any("expected a string key" in reason for reason in reasons), reasons
    assert all("UnprocessableDelivery" in reason for reason in reasons)
    # bad data is dead-lettered at once, not retried
    assert all(dict(r.headers)["parley_dlq_attempts"] == b"1" for r in dead)


async def test_a_bad_message_is_dead_lettered_alone_and_its_neighbours_are_published(
    infra: Infra, namespace: str
) -> None:
    """Security #13, finding 15: one message Parley cannot read costs nothing to the others."""
    await publish_channel(
        infra.kafka,
        namespace,
        channel_id="ch-wa",
        tenant_id="t-wa",
        account_id="wa-phone",
        provider=Provider.WHATSAPP,
    )
    started = datetime.now(UTC) - timedelta(seconds=5)
    now = str(int(datetime.now(UTC).timestamp()))

    def text(message_id: str, **sender: str) -> dict[str, Any]:
        fields = {"id": message_id, "timestamp": now, "type": "text", "text": {"body": message_id}}
        return {**(sender or {"from": "15550123456"}), **fields}

    # a message with neither the phone number (from) nor the business-scoped user id (from_user_id)
    nobody = text("wamid.nobody")
    del nobody["from"]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "wa-phone"},
        "messages": [text("wamid.good1"), nobody, text("wamid.good2")],
        "statuses": [{"id": "wamid.out", "status": "read", "timestamp": "1718", "recipient_id": "1555"}],
    }
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "waba-1", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()
    async with (
        running(create_normalizer_app(normalizer_settings(infra, namespace))),
        running(create_ingest_app(ingest_settings(infra, namespace))) as ingest,
    ):
        assert (
            await ingest.post("/webhooks/meta", content=body, headers=meta_headers(body))
        ).status_code == 200
        dead = await read_records(
            infra.kafka, dlq_name(qualify(topics.WEBHOOKS_RAW.name, namespace)), until=lambda rs: len(rs) >= 2
        )
        published = await read_records(infra.kafka, inbound(namespace), until=lambda rs: len(rs) >= 2)
    assert sorted(json.loads(r.value)["provider_message_id"] for r in published) == [
        "wamid.good1",
        "wamid.good2",
    ]
    raw = await read_records(
        infra.kafka, qualify(topics.WEBHOOKS_RAW.name, namespace), until=lambda rs: len(rs) >= 1
    )
    delivery_id = json.loads(raw[0].value)["delivery_id"]
    letters = {dict(r.headers)["parley_dlq_item"].decode(): dict(r.headers) for r in dead}
    assert set(letters) == {"entry[0].changes[0].value.messages[1]", "entry[0].changes[0].value.statuses[0]"}
    for position, headers in letters.items():
        assert headers["parley_dlq_delivery_id"].decode() == delivery_id
        error = headers["parley_dlq_error"].decode()
        assert error.startswith(f"UnprocessableDelivery: meta delivery {delivery_id} at {position}: "), error
        assert headers["parley_dlq_attempts"] == b"1"
    assert letters["entry[0].changes[0].value.messages[1]"]["parley_dlq_error"].endswith(
        b"from and from_user_id are missing"
    )
    assert b"before 2006" in letters["entry[0].changes[0].value.statuses[0]"]["parley_dlq_error"]
    # each dead letter is the archived delivery as it is: a redrive re-normalizes it after a fix
    assert all(r.value == raw[0].value for r in dead)
    assert len(dead) == 2
    # a replay publishes the good ones again and reports the bad ones, item by item
    report = await replay(normalizer_settings(infra, namespace), started, None, None)
    assert (report.read, report.replayed, report.failed, report.failed_items) == (1, 1, 0, 2)


async def test_x_crc_and_signatures(infra: Infra, namespace: str) -> None:
    async with running(create_ingest_app(ingest_settings(infra, namespace))) as ingest:
        crc = await ingest.get("/webhooks/x", params={"crc_token": "challenge-123"})
        expected = base64.b64encode(
            hmac.new(X_SECRET.encode(), b"challenge-123", hashlib.sha256).digest()
        ).decode()
        assert crc.status_code == 200
        assert crc.json() == {"response_token": f"sha256={expected}"}
        assert (await ingest.get("/webhooks/x")).status_code == 400

        body = json.dumps({"for_user_id": "42", "favorite_events": []}).encode()
        assert (await ingest.post("/webhooks/x", content=body, headers=x_headers(body))).status_code == 200
        rotated = await ingest.post("/webhooks/x", content=body, headers=x_headers(body, "old-x-secret"))
        assert rotated.status_code == 200
        wrong = await ingest.post("/webhooks/x", content=body, headers=x_headers(body, "nope"))
        assert wrong.status_code == 401
        missing = await ingest.post("/webhooks/x", content=body, headers={"content-type": "application/json"})
        assert missing.status_code == 401
        # a Meta signature is not an X signature
        assert (await ingest.post("/webhooks/x", content=body, headers=meta_headers(body))).status_code == 401
    raw = await read_records(
        infra.kafka, qualify(topics.WEBHOOKS_RAW.name, namespace), until=lambda rs: len(rs) >= 2
    )
    assert {json.loads(r.value)["provider"] for r in raw} == {"x"}
    assert raw[0].key == b"42"


async def test_replay_recreates_the_normalized_events_with_the_same_ids(infra: Infra, namespace: str) -> None:
    await publish_channel(infra.kafka, namespace, channel_id="ch", tenant_id="t", account_id="page-replay")
    started = datetime.now(UTC) - timedelta(seconds=5)
    bodies = [
        body_of(messenger_text("page-replay", f"c{i}", f"text {i}", mid=f"m.replay.{i}")) for i in range(3)
    ]
    async with (
        running(create_normalizer_app(normalizer_settings(infra, namespace))),
        running(create_ingest_app(ingest_settings(infra, namespace))) as ingest,
    ):
        for body in bodies:
            await ingest.post("/webhooks/meta", content=body, headers=meta_headers(body))
        first = await read_records(infra.kafka, inbound(namespace), until=lambda rs: len(rs) >= 3)

    report = await replay(normalizer_settings(infra, namespace), started, None, None)
    assert (report.read, report.replayed, report.failed) == (3, 3, 0)
    after = await read_records(infra.kafka, inbound(namespace), until=lambda rs: len(rs) >= 6)
    original_ids = {json.loads(r.value)["event_id"] for r in first}
    all_ids = Counter(json.loads(r.value)["event_id"] for r in after)
    # every event published again, under the id it had the first time
    assert all_ids == dict.fromkeys(original_ids, 2)
    assert all(dict(r.headers)["ce_type"] == b"parley.message.received.v1" for r in after)

    # a window that ends before the deliveries replays nothing; another provider filter neither
    assert (
        await replay(normalizer_settings(infra, namespace), started - timedelta(hours=1), started, None)
    ).read == 0
    only_x = await replay(normalizer_settings(infra, namespace), started, None, "x")
    assert (only_x.replayed, only_x.skipped_provider) == (0, 3)
    assert Provider.MESSENGER.value == "messenger"


async def test_a_whatsapp_customer_keeps_one_conversation_across_a_number_change_and_a_restart(
    infra: Infra, namespace: str
) -> None:
    """The normalizer's alias records go to Kafka and are read back by the next normalizer."""
    await publish_channel(
        infra.kafka,
        namespace,
        channel_id="ch-wa",
        tenant_id="t-wa",
        account_id="wa-phone",
        provider=Provider.WHATSAPP,
    )
    now = str(int(datetime.now(UTC).timestamp()))

    def delivery(*messages: dict[str, Any], contacts: list[Any] | None = None) -> bytes:
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": "wa-phone"},
            "messages": list(messages),
        }
        if contacts is not None:
            value["contacts"] = contacts
        entry = {"id": "waba-1", "changes": [{"field": "messages", "value": value}]}
        return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()

    def text(message_id: str, **sender: str) -> dict[str, Any]:
        return {**sender, "id": message_id, "timestamp": now, "type": "text", "text": {"body": message_id}}

    before = delivery(text("wamid.before", **{"from": "15550123456", "from_user_id": "US.1"}))
    change = delivery(
        {
            "from": "15550123456",
            "id": "wamid.change",
            "timestamp": now,
            "type": "system",
            "system": {
                "type": "user_changed_number",
                "wa_id": "15550199999",
                "user_id": "US.2",
                "previous_user_id": "US.1",
                "body": "User changed from 15550123456 to 15550199999",
            },
        }
    )
    after = delivery(text("wamid.after", **{"from": "15550199999", "from_user_id": "US.2"}))
    withheld = delivery(text("wamid.withheld", from_user_id="US.2"))

    async def post(ingest: Any, body: bytes) -> None:
        assert (
            await ingest.post("/webhooks/meta", content=body, headers=meta_headers(body))
        ).status_code == 200

    async with running(create_ingest_app(ingest_settings(infra, namespace))) as ingest:
        async with running(create_normalizer_app(normalizer_settings(infra, namespace))):
            await post(ingest, before)
            await post(ingest, change)
            await read_records(infra.kafka, inbound(namespace), until=lambda rs: len(rs) >= 2)
        # a new normalizer: what it knows of the customer, it reads back from the alias topic
        async with running(create_normalizer_app(normalizer_settings(infra, namespace))):
            await post(ingest, after)
            await post(ingest, withheld)
            published = await read_records(infra.kafka, inbound(namespace), until=lambda rs: len(rs) >= 4)

    messages = [
        json.loads(r.value) for r in published if dict(r.headers)["ce_type"] == b"parley.message.received.v1"
    ]
    assert [m["provider_message_id"] for m in messages] == [
        "wamid.before",
        "wamid.change",
        "wamid.after",
        "wamid.withheld",
    ]
    assert {m["conversation_id"] for m in messages} == {messages[0]["conversation_id"]}
    assert {m["conversation_key"] for m in messages} == {"dm:15550123456"}
    aliases = await read_records(
        infra.kafka, qualify(topics.CUSTOMER_ALIASES.name, namespace), until=lambda rs: len(rs) >= 4
    )
    assert {json.loads(r.value)["alias_key"] for r in aliases} == {
        "dm:15550123456",
        "dm:US.1",
        "dm:15550199999",
        "dm:US.2",
    }
