"""A token bucket (pure: the caller passes the time)."""

from __future__ import annotations


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
