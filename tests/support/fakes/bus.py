"""The bus in memory: a publisher that records events, and a service's router on FastStream's
in-memory test broker (no connection: records published to it reach the router's handlers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from faststream.kafka import KafkaBroker, KafkaRouter, TestKafkaBroker
from parley_events import Event
from parley_shared.kafka import Sent, UndeclaredEvent, declared_events, encode_event, event_headers


class FakePublisher:
    """Records what a service publishes; like EventPublisher it refuses event types its router
    does not declare, once :meth:`declare` was called."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.ids: list[str] = []
        self.declared: frozenset[str] | None = None
        self.confirmed = 0
        self.refuse_confirms = 0
        """How many of the next :meth:`confirm` calls fail as if the broker never answered."""

    def declare(self, router: KafkaRouter) -> None:
        self.declared = frozenset(declared_events(router))

    async def publish(self, event: Event, *, event_id: str, time: datetime | None = None) -> None:
        if self.declared is not None and event.event_type not in self.declared:
            raise UndeclaredEvent(event.event_type)
        self.published.append(event)
        self.ids.append(event_id)

    async def send(self, event: Event, *, event_id: str, time: datetime | None = None) -> Sent:
        """Recorded at once, as a send the broker has yet to acknowledge (:meth:`confirm`)."""
        await self.publish(event, event_id=event_id, time=time)
        acknowledged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return Sent(ack=acknowledged, producer=None, event_type=event.event_type)

    async def confirm(self, sends: Sequence[Sent], *, timeout_s: float | None = None) -> None:
        self.confirmed += len(sends)
        if self.refuse_confirms > 0:
            self.refuse_confirms -= 1
            raise KafkaTimeoutError(f"{len(sends)} publishes not acknowledged (a test's broker)")

    async def outcomes(
        self, sends: Sequence[Sent], *, timeout_s: float | None = None
    ) -> list[BaseException | None]:
        """Every send acknowledged, unless :attr:`refuse_confirms` makes this answer none of them."""
        try:
            await self.confirm(sends, timeout_s=timeout_s)
        except KafkaTimeoutError as exc:
            return [exc] * len(sends)
        return [None] * len(sends)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.published if isinstance(e, kind)]


@contextlib.asynccontextmanager
async def on_test_broker(router: KafkaRouter, publisher: FakePublisher | None = None) -> AsyncIterator[Bus]:
    """The router on an in-memory broker; the publisher (if any) allows what the router declares."""
    broker = KafkaBroker()
    broker.include_router(router)
    if publisher is not None:
        publisher.declare(router)
    async with TestKafkaBroker(broker) as test_broker:
        yield Bus(test_broker)


class Bus:
    """Publish events as Parley does (CloudEvents headers, JSON value) to the in-memory broker."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def publish(self, event: Event, *, event_id: str | None = None) -> None:
        """On the event's catalog topic (the router under test has no namespace)."""
        ce_id = event_id or str(getattr(event, "event_id", "evt"))
        headers = event_headers(event, event_id=ce_id, source="/parley/test", time=datetime.now(UTC))
        await self.broker.publish(
            encode_event(event), topic=event.topic.name, key=event.key().encode(), headers=headers
        )
