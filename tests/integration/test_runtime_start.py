"""A process's start-up order against the real broker: the store is prepared (migrations,
indexes, state its decisions need) before any subscriber can consume."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from faststream.kafka import KafkaRouter
from parley_shared.runtime import Runtime, ServiceSpec, Wiring, create_app
from parley_shared.settings import ServiceSettings

from tests.conftest import Infra
from tests.support.apps import running

pytestmark = pytest.mark.integration


async def test_a_process_prepares_before_its_broker_starts_and_starts_after(
    infra: Infra, namespace: str
) -> None:
    seen: list[tuple[str, bool]] = []

    @dataclass(kw_only=True)
    class Probe(Wiring):
        runtime: Runtime

        async def prepare(self) -> None:
            seen.append(("prepare", self.runtime.broker.running))

        async def start(self) -> None:
            seen.append(("start", self.runtime.broker.running))

    @contextlib.asynccontextmanager
    async def adapters(runtime: Runtime) -> AsyncIterator[Runtime]:
        yield runtime

    settings = ServiceSettings(
        kafka_bootstrap_servers=infra.kafka, topic_namespace=namespace, consumer_group_prefix=namespace
    )
    spec = ServiceSpec(
        name="probe",
        settings=settings,
        adapters=adapters,
        build=lambda runtime: Probe(router=KafkaRouter(), runtime=runtime),
        uses_store=False,
    )
    async with running(create_app(spec)):
        pass

    assert seen == [("prepare", False), ("start", True)]
