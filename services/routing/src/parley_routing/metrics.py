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
    "Inbound batches the store refused because a newer owner took one of their partitions (a newer "
    "partition epoch): nothing written, nothing committed, the records left to the new owner. A few "
    "at each rebalance are expected; many mean replicas keep losing their partitions.",
)
