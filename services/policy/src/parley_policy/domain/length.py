"""Counting text the way each provider does (pure); a provider's own counting (X's weighted
length) comes from its plugin."""

from __future__ import annotations

from parley_providers import registry
from parley_providers.rules import Counting

MAX_TEXT_CHARACTERS = 16_384
"""No reply text is longer (the largest provider limit, X's 10,000-character DMs, plus a margin):
the API refuses longer text before anything counts it (docs/policy.md)."""


def measure(text: str, counting: Counting) -> int:
    if counting is Counting.UTF8_BYTES:
        return len(text.encode("utf-8"))
    if counting is Counting.CHARACTERS:
        return len(text)
    return registry.length_counter(counting)(text)
