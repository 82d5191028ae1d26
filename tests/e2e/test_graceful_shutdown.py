"""SIGTERM mid-stream: a routing process stops cleanly, and its successor loses and repeats nothing."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
    qualify,
    topics,
)
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_shared.store import open_store

from tests.conftest import Infra
from tests.support.kafka import count_records, publish_events, read_records
from tests.support.processes import start_service

pytestmark = pytest.mark.e2e

CONVERSATIONS = 20
MESSAGES_EACH = 10
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def message(conversation: int, n: int) -> MessageReceived:
    cid = f"conv-{conversation}"
    return MessageReceived(
        event_id=f"msg-{conversation}-{n}",
        tenant_id="t",
        channel_id="ch",
        provider=Provider.MESSENGER,
        account_id="page",
        conversation_id=cid,
        conversation_key=f"dm:{conversation}",
        direction=Direction.INBOUND,
        author=Author(id=str(conversation)),
        content=Content(text=f"{n}"),
        provider_message_id=f"m-{conversation}-{n}",
        provider_timestamp=T0 + timedelta(seconds=n),
        delivery_id="d",
    )


async def test_sigterm_mid_stream_loses_nothing_and_applies_nothing_twice(
    infra: Infra, namespace: str, store_url: str, tmp_path: Path
) -> None:
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_STORE_URL": store_url,  # PostgreSQL, a schema of this test's own
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
        "PARLEY_JWT_HS256_SECRET": "shutdown-test-secret-of-32-bytes-at-least",
        "PARLEY_SHUTDOWN_TIMEOUT_S": "10",
        # small batches: the stream spans many of them, so the signal lands mid-stream (with the
        # default of 200 one batch could hold the whole stream and the drain would finish it)
        "PARLEY_BATCH_MAX_RECORDS": "10",
    }
    await publish_events(
        infra.kafka,
        namespace,
        ChannelSnapshot(
            channel_id="ch",
            tenant_id="t",
            provider=Provider.MESSENGER,
            account_id="page",
            status=ChannelStatus.ACTIVE,
            revision=1,
            all_users_role=ChannelRole.VIEWER,
        ),
    )
    (tmp_path / "first").mkdir()
    first = start_service("parley-routing", env, tmp_path / "first")
    first.wait_ready()
    # interleave conversations so every partition has work when the signal arrives
    stream = [message(c, n) for n in range(1, MESSAGES_EACH + 1) for c in range(CONVERSATIONS)]
    await publish_events(infra.kafka, namespace, *stream)
    conversations_topic = qualify(topics.CONVERSATIONS.name, namespace)
    await read_records(infra.kafka, conversations_topic, until=lambda rs: len(rs) >= 30, timeout=60)
    first.process.send_signal(signal.SIGTERM)  # mid-stream: most messages are not applied yet
    assert first.process.wait(30) == 0, first.log()
    assert '"event": "stopped"' in first.log()
    published_by_first = await count_records(infra.kafka, conversations_topic)
    expected = CONVERSATIONS * (MESSAGES_EACH + 1)  # created + one message_added per message
    assert 30 <= published_by_first < expected, "the signal came too late to test anything mid-stream"

    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = start_service("parley-routing", env, second_dir)
    try:
        second.wait_ready()

        def distinct(records: list[Any]) -> set[tuple[str, int]]:
            return {
                (json.loads(r.value)["conversation_id"], json.loads(r.value)["sequence"]) for r in records
            }

        records = await read_records(
            infra.kafka, conversations_topic, until=lambda rs: len(distinct(rs)) >= expected, timeout=120
        )
        await asyncio.sleep(2)  # anything applied twice would show up now
        records = await read_records(
            infra.kafka, conversations_topic, until=lambda rs: len(distinct(rs)) >= expected, timeout=30
        )
    finally:
        assert second.terminate() == 0, second.log()
    by_conversation: dict[str, set[int]] = {}
    ids_by_position: dict[tuple[str, int], set[str]] = {}
    for record in records:
        data = json.loads(record.value)
        by_conversation.setdefault(data["conversation_id"], set()).add(data["sequence"])
        ids_by_position.setdefault((data["conversation_id"], data["sequence"]), set()).add(data["event_id"])
    # nothing lost: every conversation has all its events, gap-free
    assert {c: sorted(s) for c, s in by_conversation.items()} == {
        f"conv-{c}": list(range(1, MESSAGES_EACH + 2)) for c in range(CONVERSATIONS)
    }
    # nothing applied twice: a redelivered message was recognised, never given a new sequence number
    assert all(len(ids) == 1 for ids in ids_by_position.values())
    store = await open_store(store_url)
    try:
        repository = PostgresConversationRepository(store.postgres)
        conversations = [await repository.get(f"conv-{c}") for c in range(CONVERSATIONS)]
    finally:
        await store.close()
    stored = {c.id: c.sequence for c in conversations if c is not None}
    assert stored == {f"conv-{c}": MESSAGES_EACH + 1 for c in range(CONVERSATIONS)}
