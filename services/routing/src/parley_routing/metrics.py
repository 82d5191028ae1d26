"""Routing's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

CHANGES_OF_UNKNOWN_MESSAGES = Counter(
    "parley_routing_changes_of_unknown_messages_total",
    "Edits and removals of messages routing never received (written before the channel was "
    "connected, or a post, the thread itself): acknowledged, nothing changed.",
    ["provider", "action"],
)

FENCED_BATCHES = Counter(
    "parley_routing_fenced_batches_total",
    "Inbound batches refused because a newer owner took one of their partitions: by the store (a "
    "newer partition epoch) or by the replica itself (it knew it no longer held the partition). "
    "Nothing written, nothing committed, the records left to their owner. A few at each rebalance "
    "are expected; many mean replicas keep losing their partitions.",
    ["by"],
)
