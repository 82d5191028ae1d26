"""Routing's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

CHANGES_OF_UNKNOWN_MESSAGES = Counter(
    "parley_routing_changes_of_unknown_messages_total",
    "Edits and removals of messages routing never received (written before the channel was "
    "connected, or a post, the thread itself): acknowledged, nothing changed.",
    ["provider", "action"],
)
