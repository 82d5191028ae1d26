"""Topic creation from the catalog is idempotent."""

from __future__ import annotations

import asyncio

import pytest
from parley_events import all_topics
from parley_shared.admin import delete_namespace, describe_topics, ensure_topics

from tests.conftest import Infra

pytestmark = pytest.mark.integration


async def test_creating_topics_twice_creates_them_once(infra: Infra, unique: str) -> None:
    ns = f"topics{unique}"
    created = await ensure_topics(infra.kafka, ns, partitions=2)
    assert sorted(created) == sorted(spec.qualified(ns) for spec in all_topics())
    assert await ensure_topics(infra.kafka, ns, partitions=2) == []
    # the broker's metadata may list a topic created a moment ago a little later
    wanted = {spec.qualified(ns) for spec in all_topics()}
    for _ in range(20):
        states = await describe_topics(infra.kafka, ns)
        if {s.name for s in states} == wanted:
            break
        await asyncio.sleep(0.5)
    assert {s.name for s in states} == {spec.qualified(ns) for spec in all_topics()}
    assert all(s.partitions == 2 for s in states)
    deleted = await delete_namespace(infra.kafka, ns)
    assert sorted(deleted) == sorted(spec.qualified(ns) for spec in all_topics())
    with pytest.raises(ValueError, match="default namespace"):
        await delete_namespace(infra.kafka, "")


async def test_a_topic_the_broker_already_has_is_not_reported_as_created(infra: Infra, unique: str) -> None:
    """The broker answers a CreateTopics request for an existing topic with error 36, not an
    exception; when our list of topics lags behind the broker (a topic just created, or another
    process creating it too) that answer must not count as a creation, nor hide a real error."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from parley_shared.admin import _create

    ns = f"again{unique}"
    name = f"{ns}.parley.replies.v1.dlq"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        assert await _create(admin, NewTopic(name=name, num_partitions=1, replication_factor=1)) is True
        assert await _create(admin, NewTopic(name=name, num_partitions=1, replication_factor=1)) is False
        with pytest.raises(RuntimeError, match=f"could not create topic {ns}.bad"):
            # more replicas than the one local broker has: an error that is not "already exists"
            await _create(admin, NewTopic(name=f"{ns}.bad", num_partitions=1, replication_factor=3))
    finally:
        await admin.close()
        await delete_namespace(infra.kafka, ns)
