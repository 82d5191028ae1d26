"""A bounded memory of recently published event ids (pure)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """Remembers the last ``capacity`` ids; the oldest are forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        if self.capacity <= 0:
            return
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def forget(self, event_ids: Iterable[str]) -> None:
        """Remove ids added tentatively (their publishes were not acknowledged after all)."""
        for event_id in event_ids:
            self._ids.pop(event_id, None)
