"""Routing's outbox relay with several replicas on one PostgreSQL: each event published once.

Every replica runs the relay. A replica's commit holds its conversations' outbox while it
publishes the events and until it settles them (its next commit or relay), so another replica's
relay leaves them alone; two relays that find a dead replica's events at once take each
conversation once between them; and a relay that dies while publishing strands nothing, as its
hold runs out like any other. Each test counts every publication of every event id.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from parley_events import ConversationEvent, MessageReceived
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.service import ConversationService
from parley_shared.store import Store, open_store

from tests.support.outbox import batch, let_outbox_leases_run_out, outbox
from tests.unit.factories import T0

pytestmark = pytest.mark.integration


class Replica:
    """One routing process: its own pool, repository (its own memory of what it published) and
    service, publishing to a shared count of publications per event id."""

    def __init__(self, store: Store, published: Counter[str]) -> None:
        self.store = store
        self.repository = PostgresConversationRepository(store.postgres)
        self.broker_down = False
        self.sent: list[ConversationEvent] = []

        async def publish(event: ConversationEvent) -> None:
            if self.broker_down:
                raise ConnectionError("the broker did not answer")
            published[event.event_id] += 1
            self.sent.append(event)

        self.service = ConversationService(self.repository, publish, lambda: T0)


Replicas = Callable[[], Awaitable[Replica]]


@pytest.fixture
def published() -> Counter[str]:
    """How many times each event id was published, by every replica together."""
    return Counter()


@pytest.fixture
async def replicas(store_url: str, published: Counter[str]) -> AsyncIterator[Replicas]:
    """Starts routing processes on one PostgreSQL schema (each with a store of its own)."""
    started: list[Replica] = []

    async def start() -> Replica:
        replica = Replica(await open_store(store_url), published)
        started.append(replica)
        await replica.repository.ensure_indexes()
        return replica

    try:
        yield start
    finally:
        for replica in started:
            await replica.store.close()


async def died_after_committing(replicas: Replicas, messages: list[MessageReceived]) -> Replica:
    """A replica that committed these messages and published nothing of them (its broker did not
    answer), then died: its conversations' outbox rows are left under its lease."""
    dead = await replicas()
    dead.broker_down = True
    with pytest.raises(ConnectionError):
        await dead.service.on_messages(messages)
    return dead


async def test_a_replicas_relay_leaves_what_another_replica_committed_to_it(
    replicas: Replicas, published: Counter[str]
) -> None:
    first, second = await replicas(), await replicas()
    store = first.store

    await first.service.on_messages(batch((1, "conv_a"), (1, "conv_b")))
    assert len(first.sent) == 4  # each: created, message_added; its outbox rows not settled yet
    assert len(await outbox(store)) == 4

    assert await second.service.relay_outbox() == 0  # the first replica's to settle
    assert second.sent == []
    assert await first.service.relay_outbox() == 0  # settles its own: nothing was missing
    assert await outbox(store) == []
    assert set(published.values()) == {1}


async def test_two_relays_at_once_publish_a_dead_replicas_events_once_between_them(
    replicas: Replicas, published: Counter[str]
) -> None:
    dead = await died_after_committing(replicas, batch(*((1, f"conv_{i}") for i in range(12))))
    store = dead.store
    assert published == Counter()
    pending = await outbox(store)
    assert len(pending) == 24

    second, third = await replicas(), await replicas()
    assert await second.service.relay_outbox() == 0  # the dead replica's hold has not run out
    await let_outbox_leases_run_out(store.url)
    relayed = await asyncio.gather(second.service.relay_outbox(), third.service.relay_outbox())

    assert sum(relayed) == 24
    assert sorted(published) == sorted(pending) and set(published.values()) == {1}
    assert await second.service.relay_outbox() == await third.service.relay_outbox() == 0
    assert await outbox(store) == []


async def test_a_relay_dying_while_it_publishes_leaves_its_claim_to_run_out(
    replicas: Replicas, published: Counter[str]
) -> None:
    store = (await died_after_committing(replicas, batch((1, "conv_a"), (2, "conv_a")))).store
    await let_outbox_leases_run_out(store.url)

    dying, survivor = await replicas(), await replicas()
    dying.broker_down = True
    with pytest.raises(ConnectionError):
        await dying.service.relay_outbox()  # claimed conv_a, then its publish failed: it dies
    assert await survivor.service.relay_outbox() == 0  # the dying relay's claim still holds

    await let_outbox_leases_run_out(store.url)
    assert await survivor.service.relay_outbox() == 3  # created and two messages
    assert [e.sequence for e in survivor.sent] == [1, 2, 3]
    assert len(published) == 3 and set(published.values()) == {1}
    await survivor.service.relay_outbox()
    assert await outbox(store) == []
