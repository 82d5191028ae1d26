"""The normalizer's alias read model: which conversation key each of a customer's identifiers
leads to, per channel, kept in memory from the compacted ``parley.customer-aliases.v1``."""

from __future__ import annotations

from typing import ClassVar

from parley_events import CustomerAliasRecorded, Event, TopicSpec, topics
from parley_shared.channels import CompactedTopicReader
from parley_shared.logging import get_logger

log = get_logger(__name__)


class KafkaCustomerAliases(CompactedTopicReader):
    """Alias thread keys by channel, fed by the topic the normalizer itself writes.

    The normalizer also remembers what it publishes at once (``remember``): a webhook delivery is
    keyed by the business account, so one account's deliveries reach one normalizer in order, and
    its next message already sees the alias its last one recorded. The topic rebuilds the map
    after a restart or when partitions move to another replica.
    """

    name = "customer-alias-directory"
    source: ClassVar[TopicSpec] = topics.CUSTOMER_ALIASES
    event: ClassVar[type[Event]] = CustomerAliasRecorded

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        super().__init__(bootstrap_servers, topic)
        self._roots: dict[tuple[str, str], str] = {}

    def size(self) -> int:
        return len(self._roots)

    def root(self, channel_id: str, alias_key: str) -> str | None:
        """The conversation key ``alias_key`` leads to in the channel, if one was recorded."""
        return self._roots.get((channel_id, alias_key))

    def remember(self, channel_id: str, alias_key: str, conversation_key: str) -> None:
        self._roots[(channel_id, alias_key)] = conversation_key

    def forget(self, channel_id: str, alias_key: str) -> None:
        """Drop an alias remembered before its record was acknowledged, when it never was."""
        self._roots.pop((channel_id, alias_key), None)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record: an alias leads to its conversation key (tombstones are not written)."""
        if value is None:
            return
        try:
            alias = CustomerAliasRecorded.model_validate_json(value)
        except ValueError as exc:
            log.error("unreadable customer alias skipped", error=str(exc))
            return
        self.remember(alias.channel_id, alias.alias_key, alias.conversation_key)
