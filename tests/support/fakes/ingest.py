"""The normalizer's port to a provider's content lookup, in memory: answers and failures queued."""

from __future__ import annotations

from dataclasses import dataclass, field

from parley_providers.base import FetchedContent
from parley_providers.errors import ProviderError
from parley_providers.inbound import ContentToFetch


@dataclass
class FakeContentLookup:
    """Plays a provider's mention lookups: each call takes the next queued outcome (an error to
    raise, or content to return); with none queued it answers ``content``. Calls are recorded
    (tokens included, so a test can check which token was used; nothing here logs them)."""

    content: FetchedContent = field(default_factory=lambda: FetchedContent("hello", "someone"))
    outcomes: list[FetchedContent | ProviderError] = field(default_factory=list)
    calls: list[tuple[str, ContentToFetch, str, str | None]] = field(default_factory=list)

    async def fetch(
        self, account_id: str, what: ContentToFetch, token: str, connect_path: str | None
    ) -> FetchedContent:
        self.calls.append((account_id, what, token, connect_path))
        outcome = self.outcomes.pop(0) if self.outcomes else self.content
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome
