"""Stopping and restarting the local infrastructure keeps stored conversations."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest
from parley_events import Author, Content, Direction, MessageReceived, Provider
from parley_routing.adapters.stores import MongoConversationRepository
from parley_routing.service import record_message
from parley_shared import mongo
from parley_shared.admin import describe_topics

from tests.conftest import ROOT, Infra, require_local_infra

pytestmark = pytest.mark.integration


def run_infra(command: str) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), command], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_conversations_and_topics_survive_infra_down_and_up(
    infra: Infra, namespace: str, database_url: str
) -> None:
    require_local_infra(infra, "this test restarts the infrastructure")
    message = MessageReceived(
        event_id="msg_restart",
        tenant_id="tenant-r",
        channel_id="channel-r",
        provider=Provider.MESSENGER,
        account_id="page-r",
        conversation_id="conv_restart",
        conversation_key="dm:customer-r",
        direction=Direction.INBOUND,
        author=Author(id="customer-r"),
        content=Content(text="still here?"),
        provider_message_id="m_restart",
        provider_timestamp=datetime(2026, 11, 1, tzinfo=UTC),
        delivery_id="d_restart",
    )
    client: Any = mongo.open_client(database_url)
    try:
        await record_message(
            message, MongoConversationRepository(mongo.database(client, database_url)["conversations"])
        )
    finally:
        await client.close()

    run_infra("down")
    run_infra("up")

    client = mongo.open_client(database_url)
    try:
        repo = MongoConversationRepository(mongo.database(client, database_url)["conversations"])
        stored = await repo.get("conv_restart")
        assert stored is not None
        assert stored.sequence == 2
        assert stored.has_applied("msg_restart")
        await client.drop_database(mongo.database_name(database_url))
    finally:
        await client.close()
    assert any(t.name.startswith(namespace) for t in await describe_topics(infra.kafka, namespace))
