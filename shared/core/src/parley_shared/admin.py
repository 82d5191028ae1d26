"""Kafka administration: create the catalog's topics idempotently, describe them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from parley_events import TopicSpec, all_topics


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker reports it."""

    name: str
    partitions: int


TOPIC_ALREADY_EXISTS = 36
CREATE_ATTEMPTS = 3


async def _create(admin: AIOKafkaAdminClient, topic: NewTopic) -> bool:
    """Create one topic: True if this call created it, False if it existed already.

    aiokafka answers a CreateTopics request with an error code per topic instead of raising, so
    the codes are read here: an existing topic (a broker whose metadata lagged behind our
    ``list_topics``, or another process creating it too) is not "created", and any other error is
    retried, then raised with its name (it used to be counted as created).
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        response = await admin.create_topics([topic])
        codes = {
            entry[0]: (entry[1], entry[2] if len(entry) > 2 else None) for entry in response.topic_errors
        }
        code, message = codes.get(topic.name, (0, None))
        if code == 0:
            return True
        if code == TOPIC_ALREADY_EXISTS:
            return False
        if attempt == CREATE_ATTEMPTS:
            raise RuntimeError(f"could not create topic {topic.name}: Kafka error {code} ({message})")
        await asyncio.sleep(0.5 * attempt)
    return False


async def ensure_topics(
    bootstrap_servers: str,
    namespace: str = "",
    specs: Iterable[TopicSpec] | None = None,
    replication_factor: int = 1,
    partitions: int | None = None,
) -> list[str]:
    """Create every missing topic; return the names created (existing ones are left alone).

    ``partitions`` overrides the catalog's counts (small test namespaces).
    """
    wanted = {spec.qualified(namespace): spec for spec in (specs or all_topics())}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="parley-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        created: list[str] = []
        for name in missing:
            spec = wanted[name]
            topic = NewTopic(
                name=name,
                num_partitions=partitions or spec.partitions,
                replication_factor=replication_factor,
                topic_configs=spec.kafka_config(),
            )
            if await _create(admin, topic):
                created.append(name)
        return created
    finally:
        await admin.close()


async def describe_topics(bootstrap_servers: str, namespace: str = "") -> list[TopicState]:
    """The catalog's topics as they exist on the broker."""
    names = [spec.qualified(namespace) for spec in all_topics()]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="parley-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [n for n in names if n in existing]
        described = await admin.describe_topics(present) if present else []
        return [TopicState(name=t["topic"], partitions=len(t["partitions"])) for t in described]
    finally:
        await admin.close()


async def delete_namespace(bootstrap_servers: str, namespace: str) -> list[str]:
    """Delete every topic of a namespace (test clean-up); the plain public names are refused."""
    if not namespace:
        raise ValueError("refusing to delete the topics of the default namespace")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="parley-admin")
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(f"{namespace}.")]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()
