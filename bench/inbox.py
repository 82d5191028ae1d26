"""The agent inbox query on the preloaded store: latency of a page, p50/p99, on each store.

Routing's agent API lists conversations through ``ConversationRepository.list_visible``: the
conversations of the channels an agent sees, newest activity first, by queue and by owner, in
keyset pages of 50. Here the port itself is timed (the adapter's query and the page's
conversations decoded), one query at a time from this process pinned to core 0, on the data set
as loaded (50,000 conversations over 20 channels; a quarter each new, new with an owner, pending
with an owner, resolved; 40 agents). The HTTP layer and its authentication are not in it.

Variants, each :data:`QUERIES` times (rotating channels, queues and agents), at most
:data:`TIME_LIMIT_S` each:

* ``queue``: one queue on 5 of the 20 channels, first page;
* ``queue_all_channels``: one queue on all 20 channels, first page;
* ``owner``: one agent's conversations on all 20 channels, first page;
* ``page_5``: the fifth page of ``queue_all_channels`` (its cursor found first, untimed).

The heap is frozen before the timed queries, as every Parley process freezes its own once started,
and each variant reports the collector's passes while it ran (``gc``): the first full run, without
the freeze, had a p99 near 110 ms beside a p50 of 5-6 ms on every variant.

A variant stops after :data:`TIME_LIMIT_S` (FerretDB reads the whole collection for each query:
its figures may rest on a few queries, the count says how many).

Target (issue #18): p99 at most 50 ms at 50,000 conversations.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from parley_events import Queue
from parley_shared.store import open_store

from bench import dataset
from bench.common import SERVER_CORE, STORES, say, scaled, summary_ms

QUERIES = scaled(400, 40)
TIME_LIMIT_S = scaled(90, 20)
PAGE = 50
TARGET_P99_MS = 50.0
QUEUES = (Queue.NEW, Queue.PENDING, Queue.RESOLVED)


class GcPauses:
    """The garbage collector's passes while it is entered: how many, and how long the longest."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def _note(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((int(info["generation"]), time.perf_counter() - self._started))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._note)

    def summary(self) -> dict[str, Any]:
        full = [seconds for generation, seconds in self.pauses if generation == 2]
        return {
            "passes": len(self.pauses),
            "full_passes": len(full),
            "longest_ms": round(max((s for _, s in self.pauses), default=0.0) * 1000, 3),
        }


async def _timed(query: Callable[[int], Awaitable[Any]]) -> dict[str, Any]:
    """Up to :data:`QUERIES` queries one after the other, for at most :data:`TIME_LIMIT_S` (a query
    still running then is cancelled: ``unfinished``), with the collector's passes meanwhile."""
    with GcPauses() as collector:
        figures = await _queries(query)
    return {**figures, "gc": collector.summary()}


async def _queries(query: Callable[[int], Awaitable[Any]]) -> dict[str, Any]:
    latencies: list[float] = []
    rows = 0
    unfinished = False
    started = time.perf_counter()
    for i in range(QUERIES):
        left = TIME_LIMIT_S - (time.perf_counter() - started)
        if left <= 0:
            break
        before = time.perf_counter()
        try:
            page = await asyncio.wait_for(query(i), left)
        except TimeoutError:
            unfinished = True
            break
        latencies.append(time.perf_counter() - before)
        rows += len(page.items)
    if not latencies:  # not one query answered in the time limit
        return {"queries": 0, "unfinished": True, "mean_rows": None, "p50_ms": None, "p99_ms": None}
    figures = summary_ms(latencies)
    return {
        "queries": len(latencies),
        "unfinished": unfinished,
        "mean_rows": round(rows / len(latencies), 1),
        **figures,
    }


Cursors = dict[Queue, Any]


async def measure(url: str, cursors: Cursors) -> dict[str, Any]:
    """Every variant on the store of ``url``; ``cursors``: each queue's fifth-page cursor, found
    here (and kept in it for the next store) unless given: the data set is the same on every
    store and so is the order (last activity, then id as bytes), and on FerretDB each query
    reads the whole collection."""
    store = await open_store(url)
    repository = dataset.repository_of(store)
    channels = [dataset.channel_id(n) for n in range(dataset.CHANNELS)]
    tenant = dataset.TENANT
    try:

        async def queue(i: int) -> Any:
            visible = [channels[(i + k) % len(channels)] for k in range(5)]
            return await repository.list_visible(tenant, visible, queue=QUEUES[i % 3], limit=PAGE)

        async def queue_all(i: int) -> Any:
            return await repository.list_visible(tenant, channels, queue=QUEUES[i % 3], limit=PAGE)

        async def owner(i: int) -> Any:
            return await repository.list_visible(
                tenant, channels, owner_id=dataset.owner_of(4 * (i % dataset.AGENTS)), limit=PAGE
            )

        for q in QUEUES:
            if q in cursors:
                continue
            after = None
            for _ in range(4):
                page = await repository.list_visible(tenant, channels, queue=q, limit=PAGE, after=after)
                after = page.next_cursor
            cursors[q] = after

        async def page_5(i: int) -> Any:
            q = QUEUES[i % 3]
            return await repository.list_visible(tenant, channels, queue=q, limit=PAGE, after=cursors[q])

        variants = {"queue": queue, "queue_all_channels": queue_all, "owner": owner, "page_5": page_5}
        # as the services do once started (parley_shared.runtime): what was built so far (here the
        # data set's generation and load) is left out of the collector's later full passes
        gc.collect()
        gc.freeze()
        try:
            return {name: await _timed(query) for name, query in variants.items()}
        finally:
            gc.unfreeze()
    finally:
        await store.close()


def run(data: dataset.Preloaded) -> dict[str, Any]:
    stores: dict[str, Any] = {}
    cursors: Cursors = {}
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        for kind in STORES:
            stores[kind] = asyncio.run(measure(data.url(kind, changes=False), cursors))
            say(f"  {kind}: " + ", ".join(f"{k} p99 {v['p99_ms']} ms" for k, v in stores[kind].items()))
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    # a variant with no query answered in the time limit counts as the limit itself
    worst = {
        kind: max(v["p99_ms"] if v["p99_ms"] is not None else TIME_LIMIT_S * 1000 for v in variants.values())
        for kind, variants in stores.items()
    }
    return {
        "setup": {
            "queries_per_variant": QUERIES,
            "time_limit_s": TIME_LIMIT_S,
            "page": PAGE,
            "through": "ConversationRepository.list_visible, one query at a time, core 0",
        },
        "data": data.describe(),
        "stores": stores,
        "worst_p99_ms": worst,
        "targets": {"postgresql_p99_at_most_50ms": worst.get("postgresql", float("inf")) <= TARGET_P99_MS},
    }
