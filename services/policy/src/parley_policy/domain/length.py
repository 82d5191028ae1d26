"""Counting text the way each provider does (pure); X's weighting lives with X."""

from __future__ import annotations

from parley_providers.rules import Counting
from parley_providers.x.length import x_weighted_length

MAX_TEXT_CHARACTERS = 16_384
"""No reply text is longer (the largest provider limit, X's 10,000-character DMs, plus a margin):
the API refuses longer text before anything counts it (docs/policy.md)."""


def measure(text: str, counting: Counting) -> int:
    if counting is Counting.UTF8_BYTES:
        return len(text.encode("utf-8"))
    if counting is Counting.X_WEIGHTED:
        return x_weighted_length(text)
    return len(text)
