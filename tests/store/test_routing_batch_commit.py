"""Routing on PostgreSQL: one transaction per batch, events published from the committed change.

A batch's transaction writes the conversations' new versions, their history and one outbox row
per event; the events go out after the commit, and the outbox rows of what went out are deleted
by the next batch's transaction (no second write per conversation). Crashes are injected through
the port: a repository whose ``commit`` dies right after committing (before anything is
published), and the adapter's ``before_commit`` hook dying inside the transaction. After each
"crash" a new process (a new repository and service on the same tables) runs the relay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import pytest
from parley_events import ConversationEvent
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import Epochs
from parley_routing.domain.model import Conversation, conversation_event_id
from parley_routing.service import ConversationService
from parley_shared.store import Store, open_store

from tests.support.outbox import batch, let_outbox_leases_run_out, outbox
from tests.unit.factories import T0

pytestmark = pytest.mark.store


class Crash(BaseException):
    """The process dies here (nothing after it runs, nothing catches it)."""


class DiesAfterCommit:
    """The port, dying right after a commit returned: committed, nothing published."""

    def __init__(self, inner: PostgresConversationRepository) -> None:
        self.inner = inner
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(
        self, conversations: Sequence[Conversation], now: datetime, epochs: Epochs | None = None
    ) -> set[str]:
        lost = await self.inner.commit(conversations, now, epochs)
        if self.armed:
            raise Crash
        return lost


@pytest.fixture
async def store(postgres_schema: str) -> AsyncIterator[Store]:
    opened = await open_store(postgres_schema)
    try:
        yield opened
    finally:
        await opened.close()


async def repository(store: Store) -> PostgresConversationRepository:
    repo = PostgresConversationRepository(store.postgres)
    await repo.ensure_indexes()
    return repo


def service_of(repo: Any, published: list[str]) -> ConversationService:
    async def publish(event: ConversationEvent) -> None:
        published.append(event.event_id)

    return ConversationService(repo, publish, lambda: T0)


async def test_published_events_leave_the_outbox_in_the_next_batchs_transaction(store: Store) -> None:
    published: list[str] = []
    service = service_of(await repository(store), published)

    await service.on_messages(batch((1, "conv_a"), (1, "conv_b")))
    first = list(published)
    assert len(first) == 4  # each: created, message_added
    # published, but marking it so wrote nothing: the rows wait for the next transaction
    assert await outbox(store) == sorted(first)

    await service.on_messages(batch((2, "conv_a")))
    assert await outbox(store) == sorted(set(published) - set(first))  # only the new batch's
    history = await service.repository.history_of("conv_a")
    assert [h["sequence"] for h in history] == [1, 2, 3]


async def test_a_crash_between_commit_and_publish_republishes_exactly_the_missing_events(
    store: Store,
) -> None:
    published: list[str] = []
    dying = DiesAfterCommit(await repository(store))
    service = service_of(dying, published)
    await service.on_messages(batch((1, "conv_a"), (1, "conv_b")))
    before = list(published)

    dying.armed = True
    with pytest.raises(Crash):
        await service.on_messages(batch((2, "conv_a"), (3, "conv_a"), (1, "conv_c")))
    assert published == before  # committed, nothing of it sent

    # a new process: once the dead one's hold on its outbox has run out, its relay sends the
    # crashed batch's events, once each, in order, and nothing the first process had published
    relayed: list[str] = []
    restarted = service_of(await repository(store), relayed)
    assert await restarted.relay_outbox() == 0  # the dead process's lease still runs
    await let_outbox_leases_run_out(store.url)
    assert await restarted.relay_outbox() == 4
    missing = [
        conversation_event_id("conv_a", 3),  # message 2
        conversation_event_id("conv_a", 4),  # message 3
        conversation_event_id("conv_c", 1),  # created
        conversation_event_id("conv_c", 2),  # message 1
    ]
    assert sorted(relayed) == sorted(missing)
    assert not set(missing) & set(before)
    assert [e for e in relayed if e in missing[:2]] == missing[:2]  # in order within conv_a
    assert await restarted.relay_outbox() == 0
    assert await outbox(store) == []

    # the redelivered batch (its offsets were never committed) changes and publishes nothing more
    await restarted.on_messages(batch((2, "conv_a"), (3, "conv_a"), (1, "conv_c")))
    assert len(relayed) == 4
    stored = await restarted.repository.get_many(["conv_a", "conv_c"])
    assert {i: (c.sequence, c.published_sequence) for i, c in stored.items()} == {
        "conv_a": (4, 4),
        "conv_c": (2, 2),
    }


async def test_a_crash_before_commit_writes_and_publishes_nothing_of_its_batch(store: Store) -> None:
    published: list[str] = []
    repo = await repository(store)
    service = service_of(repo, published)
    await service.on_messages(batch((1, "conv_a")))
    before = list(published)

    async def die() -> None:
        raise Crash

    repo.before_commit = die
    with pytest.raises(Crash):
        await service.on_messages(batch((2, "conv_a"), (1, "conv_b")))
    assert published == before

    relayed: list[str] = []
    restarted = service_of(await repository(store), relayed)
    # the new process knows nothing of the dead one's memory: what it had published but not yet
    # settled goes out again once its lease has run out (at least once; consumers drop a
    # repeated event id), and nothing of the crashed batch does, since nothing of it was written
    await let_outbox_leases_run_out(store.url)
    await restarted.relay_outbox()
    assert sorted(relayed) == sorted(before)
    stored = await restarted.repository.get_many(["conv_a", "conv_b"])
    assert {i: c.sequence for i, c in stored.items()} == {"conv_a": 2}
    assert [h["sequence"] for h in await restarted.repository.history_of("conv_a")] == [1, 2]
    assert await restarted.repository.history_of("conv_b") == []
