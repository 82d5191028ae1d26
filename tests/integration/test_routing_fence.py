"""Two routing replicas on the real broker and store: a batch that outlives its partitions is fenced.

The first replica's batch is held inside its store transaction (its writes done, not committed:
the adapter's ``before_commit`` hook) while a second replica joins the group. The rebalance moves
the partitions, both replicas take new epochs, and only then is the held batch let go: the store
refuses it (a newer epoch exists), nothing of it is written or published, and the records are
applied once by whoever owns their partitions now. Without the fence the held batch would commit
(its version checks still pass: nobody else could write those rows while it held them) and the
counter would stay where it was.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from parley_events import qualify, topics
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.bootstrap import create_routing_app
from prometheus_client import REGISTRY

from tests.conftest import Infra
from tests.integration.test_routing import channel, message, settings, wait_for_sequence
from tests.support.apps import app_of, running, runtime_of
from tests.support.kafka import eventually, publish_events, read_records

pytestmark = pytest.mark.integration

CONVERSATIONS = [f"conv-fence-{n}" for n in range(8)]  # over both partitions of the test's topics


def fenced_so_far() -> float:
    """Batches the store refused (not those a replica knew it no longer owned)."""
    return REGISTRY.get_sample_value("parley_routing_fenced_batches_total", {"by": "store"}) or 0.0


async def test_a_batch_that_outlived_its_partitions_is_refused_and_applied_once_by_their_owners(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1"))
    # no relay or auto-resolve round during the test: the only commits are the batches'
    routing_settings = settings(
        infra, namespace, store_url, outbox_relay_interval_s=3600, auto_resolve_interval_s=3600
    )
    async with running(create_routing_app(routing_settings)) as first_api:
        first = runtime_of(app_of(first_api)).wiring
        assert isinstance(first.repository, PostgresConversationRepository)
        await publish_events(infra.kafka, namespace, *(message(1, c) for c in CONVERSATIONS))
        for conversation in CONVERSATIONS:
            await wait_for_sequence(infra, namespace, conversation, 2)
        held_before = await eventually(lambda: first.service.ownership.held)
        assert len(held_before) == 2  # alone in its group: both partitions, an epoch each

        holding, release = asyncio.Event(), asyncio.Event()

        async def hold_once() -> None:
            first.repository.before_commit = None
            holding.set()
            await release.wait()

        first.repository.before_commit = hold_once
        fenced_before = fenced_so_far()
        await publish_events(infra.kafka, namespace, *(message(2, c) for c in CONVERSATIONS))
        await asyncio.wait_for(holding.wait(), 60)  # the first replica's batch: written, not committed

        async with running(create_routing_app(routing_settings)) as second_api:
            second = runtime_of(app_of(second_api)).wiring

            def both_took_new_epochs() -> Any:
                mine, theirs = first.service.ownership.held, second.service.ownership.held
                return (
                    mine
                    and theirs
                    and all(e > held_before.get(tp, 0) for tp, e in {**mine, **theirs}.items())
                )

            # the rebalance happened while the batch was held: each replica holds one partition
            assert await eventually(both_took_new_epochs, timeout=60)
            release.set()

            for conversation in CONVERSATIONS:
                await wait_for_sequence(infra, namespace, conversation, 3)
            assert fenced_so_far() >= fenced_before + 1

            stored = await first.repository.get_many(CONVERSATIONS)
            assert {c.id: (c.version, c.sequence) for c in stored.values()} == {
                c: (2, 3) for c in CONVERSATIONS
            }
            # the history holds each change once, in sequence (the refused batch left nothing)
            for conversation in CONVERSATIONS:
                history = await first.repository.history_of(conversation)
                assert [h["sequence"] for h in history] == [1, 2, 3], (conversation, history)
            # and no event but these three per conversation reached the topic (a relay may announce
            # one again after a rebalance: at least once, consumers drop a repeated event id)
            expected = 3 * len(CONVERSATIONS)
            records = await read_records(
                infra.kafka,
                qualify(topics.CONVERSATIONS.name, namespace),
                until=lambda rs: len({json.loads(r.value)["event_id"] for r in rs}) >= expected,
            )
            assert len({json.loads(r.value)["event_id"] for r in records}) == expected
