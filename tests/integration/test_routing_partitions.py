"""Routing's in-memory conversations follow its partitions, against the real broker and store.

Routing keeps the conversations of its assigned inbound partitions between batches
(parley_routing.cache); a consumer joining its group makes the broker revoke them (aiokafka's
eager rebalance revokes every partition), and routing must forget them, since their next owner
may change those conversations meanwhile.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from parley_events import qualify, topics
from parley_routing.bootstrap import create_routing_app

from tests.conftest import Infra
from tests.integration.test_routing import channel, message, settings, wait_for_sequence
from tests.support.apps import app_of, running, runtime_of
from tests.support.kafka import eventually, publish_events

pytestmark = pytest.mark.integration


async def test_a_revoked_partition_leaves_routings_memory(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1"))
    routing_settings = settings(infra, namespace, store_url)
    async with running(create_routing_app(routing_settings)) as api:
        service = runtime_of(app_of(api)).wiring.service
        await publish_events(infra.kafka, namespace, message(1, "conv-r1"), message(1, "conv-r2"))
        await wait_for_sequence(infra, namespace, "conv-r1", 2)
        await wait_for_sequence(infra, namespace, "conv-r2", 2)
        kept = await eventually(lambda: "conv-r1" in service.cache and "conv-r2" in service.cache)
        assert kept

        # another member joins routing's group: the broker revokes routing's partitions
        joining = AIOKafkaConsumer(
            qualify(topics.MESSAGES_INBOUND.name, namespace),
            bootstrap_servers=infra.kafka,
            group_id=routing_settings.group_id("routing"),
            enable_auto_commit=False,
        )
        await joining.start()
        try:

            async def forgotten() -> Any:
                await joining.getmany(timeout_ms=200)
                return len(service.cache) == 0

            assert await eventually(forgotten, timeout=60)
        finally:
            await joining.stop()

        # what it reads next comes from the store again, and the conversation goes on from there
        await publish_events(infra.kafka, namespace, message(2, "conv-r1"))
        events = await wait_for_sequence(infra, namespace, "conv-r1", 3)
        assert sorted({e["sequence"] for e in events}) == [1, 2, 3]
