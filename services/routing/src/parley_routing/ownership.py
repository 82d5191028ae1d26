"""Which inbound partitions this replica owns, and the epoch that proves it in the store.

Kafka moves a partition to another consumer when this one's session expires (a network cut, a
long pause), but the old consumer learns of it only when it talks to the broker again; meanwhile
it may still hold fetched records and write them. The store is the arbiter: on being assigned a
partition, a replica takes a new epoch for it there (strictly greater than any before), every
batch carries the epochs of its partitions, and the store refuses a batch for which a newer epoch
exists (:class:`~parley_routing.adapters.stores.Fenced`). The version check still protects each
conversation; the epoch keeps a replica that lost its partitions from writing at all.

Epochs are taken in the background of the rebalance listener (the listener must return for the
consumer to keep its heartbeat), retried while the store is unreachable; a batch waits for the
epochs of its partitions. A batch for a partition this replica no longer holds is fenced here,
without asking the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable

import structlog

from parley_routing.adapters.stores import ConversationRepository, Epochs, Fenced

log = structlog.get_logger(__name__)

RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Pauses between attempts to take epochs while the store fails (the last one repeats)."""


class PartitionEpochs:
    """The epochs this replica holds for its assigned partitions, taken from the store."""

    def __init__(self, repository: ConversationRepository) -> None:
        self.repository = repository
        self._held: dict[tuple[str, int], int] = {}
        self._taking: asyncio.Task[None] | None = None
        self.tracking = False
        """Whether any assignment was seen. A consumer without group rebalances (FastStream's
        in-memory test broker) has no ownership to prove, and its batches carry no epochs."""

    @property
    def held(self) -> dict[tuple[str, int], int]:
        return dict(self._held)

    async def assigned(self, partitions: Collection[tuple[str, int]]) -> None:
        """The broker assigned these partitions: take a new epoch for each (in the background)."""
        self.tracking = True
        await self._stop_taking()
        wanted = sorted(set(partitions))
        if wanted:
            self._taking = asyncio.create_task(self._take(wanted))

    async def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        """The broker took these partitions away: their epochs are no longer held."""
        await self._stop_taking()
        for partition in partitions:
            self._held.pop(partition, None)

    async def of(self, partitions: Iterable[tuple[str, int]]) -> Epochs | None:
        """The epochs a batch of these partitions' records carries (waiting for epochs still being
        taken); :class:`Fenced` for a partition this replica does not hold; None when nothing is
        tracked (no group)."""
        if not self.tracking:
            return None
        if self._taking is not None:
            # not cancelled with the waiting batch, and its own cancellation (a revoke) is no
            # error here: the partitions are then simply not held
            await asyncio.wait({self._taking})
        wanted = set(partitions)
        if missing := sorted(wanted - set(self._held)):
            raise Fenced(missing, by="replica")
        return {partition: self._held[partition] for partition in wanted}

    async def close(self) -> None:
        await self._stop_taking()

    async def _stop_taking(self) -> None:
        task, self._taking = self._taking, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _take(self, partitions: list[tuple[str, int]]) -> None:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in partitions:
            by_topic.setdefault(topic, []).append(partition)
        for topic, numbers in by_topic.items():
            attempt = 0
            while True:
                try:
                    taken = await self.repository.take_epochs(topic, numbers)
                    break
                except Exception as exc:  # an outage, or worse: without epochs nothing is written
                    pause = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                    attempt += 1
                    log.warning("taking partition epochs failed, will retry", topic=topic, error=repr(exc))
                    await asyncio.sleep(pause)
            self._held.update({(topic, partition): epoch for partition, epoch in taken.items()})
            log.info("partition epochs taken", topic=topic, epochs=taken)
