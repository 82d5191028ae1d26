"""The in-memory channel read model follows onboarding's compacted topic."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from parley_events import Provider, qualify, topics
from parley_shared.channels import KafkaChannelDirectory

from tests.conftest import Infra
from tests.support.kafka import publish_channel

pytestmark = pytest.mark.integration


async def test_directory_loads_existing_channels_and_follows_changes(infra: Infra, namespace: str) -> None:
    topic = qualify(topics.CHANNELS.name, namespace)
    await publish_channel(infra.kafka, namespace, channel_id="c1", tenant_id="t1", account_id="page-1")
    directory = KafkaChannelDirectory(infra.kafka, topic)
    await directory.start()
    try:
        found = directory.lookup(Provider.MESSENGER, "page-1")
        assert found is not None and found.tenant_id == "t1"

        # a channel registered after start-up is visible once catch_up returns
        await publish_channel(infra.kafka, namespace, channel_id="c2", tenant_id="t2", account_id="page-2")
        await directory.catch_up(timeout=10)
        assert directory.lookup(Provider.MESSENGER, "page-2") is not None

        # a newer revision that moves the channel to another account replaces the old mapping
        await publish_channel(
            infra.kafka, namespace, channel_id="c1", tenant_id="t1", account_id="page-9", revision=2
        )
        await directory.catch_up(timeout=10)
        assert directory.lookup(Provider.MESSENGER, "page-1") is None
        assert directory.lookup(Provider.MESSENGER, "page-9") is not None

        # a tombstone removes the channel
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topic, None, key=b"c2")
        finally:
            await producer.stop()
        await directory.catch_up(timeout=10)
        assert directory.lookup(Provider.MESSENGER, "page-2") is None
        assert "c2" not in directory.by_id
    finally:
        await directory.stop()
