"""Token buckets (pure: the caller passes the time)."""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    """``capacity`` requests at once, refilled at ``per_second``; the caller supplies the clock."""

    def __init__(self, capacity: int, per_second: float, now: float) -> None:
        self.capacity = float(capacity)
        self.per_second = per_second
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means the caller is over its rate."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> int:
        """Whole seconds until the next token (at least 1)."""
        missing = max(0.0, 1.0 - self.tokens)
        return max(1, int(missing / self.per_second + 0.999)) if self.per_second > 0 else 60


MAX_TRACKED_CLIENTS = 10_000


class ClientBuckets:
    """One :class:`TokenBucket` per client, so one client cannot spend another's checks.

    At most ``max_clients`` are tracked; past that the least recently seen client is forgotten
    (it starts again with a full bucket), so memory stays bounded whatever the callers.
    """

    def __init__(self, capacity: int, per_second: float, max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.capacity = capacity
        self.per_second = per_second
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, client: str, now: float) -> TokenBucket:
        """The client's bucket (a full one for a client not seen or forgotten), now most recent."""
        found = self._buckets.get(client)
        if found is None:
            found = TokenBucket(self.capacity, self.per_second, now)
            self._buckets[client] = found
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return found

    def take(self, client: str, now: float) -> bool:
        """Spend one of the client's tokens; False means this client is over its rate."""
        return self.bucket(client, now).take(now)
