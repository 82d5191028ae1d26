"""The normalizer's alias read model, in memory: never started, already loaded (nothing to read)."""

from __future__ import annotations

from parley_events import topics
from parley_ingest.adapters.aliases import KafkaCustomerAliases


def empty_aliases() -> KafkaCustomerAliases:
    aliases = KafkaCustomerAliases("unused:9092", topics.CUSTOMER_ALIASES.name)
    aliases.loaded.set()
    return aliases
