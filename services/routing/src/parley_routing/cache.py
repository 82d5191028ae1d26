"""The conversations of routing's assigned partitions, kept in memory between batches.

A partition's messages come to one consumer of the group at a time, so between two batches the
conversations it holds are changed by this process alone, save for agents' commands, replies and
thread-control calls (other consumers and the API, which drop their conversation here when they
change it) and another replica during a rebalance. None of these can make a kept conversation
wrong, only stale, and a stale one loses its version check when saved: the batch then drops it
and reads it again. So a batch reads from the store only what it has not seen. (A replica that
lost its partitions without knowing it yet is kept from writing at all by the partition epochs,
ownership.py.)

Bounded: at most ``per_partition`` conversations per partition, least recently used out first.
Dropped when the partition is revoked (the rebalance listener), since its next owner may change
them meanwhile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from parley_routing.domain.model import Conversation

DEFAULT_PER_PARTITION = 1000
"""Conversations kept per partition (a conversation's document is bounded at 1 MiB but usually a
few KiB; 1,000 of them take a few MiB)."""


class ConversationCache:
    """Per partition, the latest committed state of recently seen conversations (LRU)."""

    def __init__(self, per_partition: int = DEFAULT_PER_PARTITION) -> None:
        self.per_partition = per_partition
        self._partitions: dict[int, OrderedDict[str, Conversation]] = {}
        self._partition_of: dict[str, int] = {}
        self.generation = 0
        """Raised by every revoke: a batch that started before one keeps nothing (its partitions
        may be another consumer's now)."""

    def __len__(self) -> int:
        return len(self._partition_of)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._partition_of

    def take(self, conversation_ids: Iterable[str]) -> dict[str, Conversation]:
        """Remove and return those kept: the caller changes them and :meth:`keep` s them again
        only once the change is committed (a failed batch leaves nothing half-applied here)."""
        taken: dict[str, Conversation] = {}
        for conversation_id in conversation_ids:
            partition = self._partition_of.pop(conversation_id, None)
            if partition is not None:
                taken[conversation_id] = self._partitions[partition].pop(conversation_id)
        return taken

    def keep(
        self, partition_of: Mapping[str, int], conversations: Iterable[Conversation], generation: int
    ) -> None:
        """Keep these committed conversations under their partitions (most recently used), unless
        a revoke came since ``generation`` (read when the batch started)."""
        if generation != self.generation:
            return
        for conversation in conversations:
            partition = partition_of.get(conversation.id)
            if partition is None:
                continue
            self.discard(conversation.id)
            kept = self._partitions.setdefault(partition, OrderedDict())
            kept[conversation.id] = conversation
            self._partition_of[conversation.id] = partition
            while kept and len(kept) > self.per_partition:
                oldest, _ = kept.popitem(last=False)
                del self._partition_of[oldest]

    def discard(self, conversation_id: str) -> None:
        """Forget one conversation (changed elsewhere, or its save lost a version check)."""
        partition = self._partition_of.pop(conversation_id, None)
        if partition is not None:
            del self._partitions[partition][conversation_id]

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget every conversation of these partitions (revoked)."""
        self.generation += 1
        for partition in partitions:
            for conversation_id in self._partitions.pop(partition, {}):
                del self._partition_of[conversation_id]

    def keep_only(self, partitions: Iterable[int]) -> None:
        """Forget every partition but these (assigned)."""
        assigned = set(partitions)
        self.drop_partitions([p for p in self._partitions if p not in assigned])

    def partitions(self) -> set[int]:
        return set(self._partitions)
