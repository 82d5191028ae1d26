"""In-memory fake of the reports read model's store (``ReportStore``)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime

from parley_reports.adapters.stores import ConcurrentUpdate
from parley_reports.domain.buckets import Bucket, bucket_id
from parley_reports.domain.timing import ConversationTiming


class FakeReportStore:
    """Buckets and timing states in dicts, saved by version like the real adapters."""

    def __init__(self) -> None:
        self.states: dict[str, ConversationTiming] = {}
        self.bucket_docs: dict[str, Bucket] = {}
        self.indexed = False
        self.conflicts_to_raise = 0
        """State saves to refuse with ConcurrentUpdate before accepting (a lost race, for tests)."""
        self.bucket_failures = 0
        """Bucket saves to fail with an error before accepting (a process stopping, for tests)."""

    async def ensure_indexes(self) -> None:
        self.indexed = True

    async def get_state(self, conversation_id: str) -> ConversationTiming | None:
        found = self.states.get(conversation_id)
        return copy.deepcopy(found)

    def _conflict(self) -> bool:
        if self.conflicts_to_raise:
            self.conflicts_to_raise -= 1
            return True
        return False

    async def save_state(self, state: ConversationTiming) -> None:
        current = self.states.get(state.conversation_id)
        if (current.version if current else 0) != state.version or self._conflict():
            raise ConcurrentUpdate(state.conversation_id)
        state.version += 1
        self.states[state.conversation_id] = copy.deepcopy(state)

    async def get_bucket(self, channel_id: str, hour: datetime) -> Bucket | None:
        return copy.deepcopy(self.bucket_docs.get(bucket_id(channel_id, hour)))

    async def save_bucket(self, bucket: Bucket) -> None:
        if self.bucket_failures:
            self.bucket_failures -= 1
            raise ConnectionError("the store went away")
        current = self.bucket_docs.get(bucket.id)
        if (current.version if current else 0) != bucket.version:
            raise ConcurrentUpdate(bucket.id)
        bucket.version += 1
        self.bucket_docs[bucket.id] = copy.deepcopy(bucket)

    async def buckets(self, channel_ids: Sequence[str], start: datetime, end: datetime) -> list[Bucket]:
        return [
            copy.deepcopy(b)
            for b in self.bucket_docs.values()
            if b.channel_id in channel_ids and start <= b.hour < end
        ]

    async def open_conversations(self, channel_ids: Sequence[str]) -> list[ConversationTiming]:
        return [copy.deepcopy(s) for s in self.states.values() if s.channel_id in channel_ids and s.is_open]

    async def clear(self) -> int:
        deleted = len(self.states) + len(self.bucket_docs)
        self.states.clear()
        self.bucket_docs.clear()
        return deleted
