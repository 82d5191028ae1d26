"""Stopping and restarting the local infrastructure keeps stored conversations, on both stores."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from parley_events import Author, Content, Direction, MessageReceived, Provider
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import ConversationRepository, MongoConversationRepository
from parley_routing.service import record_message
from parley_shared.admin import describe_topics
from parley_shared.store import open_store

from tests.conftest import ROOT, Infra, require_local_infra

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def run_infra(command: str) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), command], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@asynccontextmanager
async def repository(url: str) -> AsyncIterator[ConversationRepository]:
    """Routing's repository on the store of ``url``, as routing's bootstrap builds it."""
    store = await open_store(url)
    try:
        if store.kind == "postgresql":
            repo: ConversationRepository = PostgresConversationRepository(store.postgres)
        else:
            repo = MongoConversationRepository(store.db["conversations"])
        await repo.ensure_indexes()
        yield repo
    finally:
        await store.close()


async def test_conversations_and_topics_survive_infra_down_and_up(
    infra: Infra, namespace: str, store_url: str, mongo_db: object, database_url: str
) -> None:
    """PostgreSQL (the default store, ``store_url``) and FerretDB (``database_url``; ``mongo_db``
    drops it after) both come back with what they held, and so do the topics."""
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
    urls = {"postgresql": store_url, "mongodb": database_url}
    for url in urls.values():
        async with repository(url) as repo:
            await record_message(message, repo)

    run_infra("down")
    run_infra("up")

    for kind, url in urls.items():
        async with repository(url) as repo:
            stored = await repo.get("conv_restart")
        assert stored is not None, kind
        assert stored.sequence == 2, kind
        assert stored.has_applied("msg_restart"), kind
    assert any(t.name.startswith(namespace) for t in await describe_topics(infra.kafka, namespace))
