"""How long delivery waits before trying a transient provider failure again.

Delivery retries for a time budget, not a number of attempts: a provider outage of a few
minutes must not fail replies that were already accepted. Without a hint from the provider the
waits grow exponentially from ``backoff_s``, capped at ``backoff_max_s``, with jitter so that
many replies held back by the same outage do not return at the same instant. A provider's own
wait (Retry-After, X's reset time, Meta's time to regain access) is honoured as given. Either
wait is cut to what is left of the budget, so the last attempt happens as the budget ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Retry transient failures for ``budget_s`` seconds from the first attempt."""

    budget_s: float = 600.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after failed attempt ``attempt`` (1-based) when the provider gave none."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(attempt - 1, 62))
        return ceiling * (0.5 + rand() / 2)

    def next_wait(
        self,
        attempt: int,
        elapsed_s: float,
        provider_wait_s: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when the budget is spent.

        ``elapsed_s`` counts from the first attempt. A provider wait of zero (or none) falls
        back to the backoff, so a provider answering "retry now" is not hammered.
        """
        remaining = self.budget_s - elapsed_s
        if remaining <= 0:
            return None
        wait = provider_wait_s if provider_wait_s else self.backoff(attempt, rand)
        return min(wait, remaining)
