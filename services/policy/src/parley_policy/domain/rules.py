"""The providers' reply rules as one table (pure), assembled from every provider plugin's rows.

Sources: docs/policy.md and each provider package; every number is in ../shared/PLATFORM-RULES.md.
Message tags and WhatsApp's messaging tiers are Meta's and WhatsApp's own rules, which policy's
decision applies by name.
"""

from __future__ import annotations

from functools import cache

from parley_events import Provider
from parley_providers import registry
from parley_providers.meta import rules as meta_rules  # noqa: TID251 (Meta's tags by name)
from parley_providers.rules import Counting, ReplyRule
from parley_providers.whatsapp import rules as whatsapp_rules  # noqa: TID251 (WhatsApp's tiers, throughput)

__all__ = [
    "MESSAGE_TAGS",
    "MESSAGING_LIMIT_PERIOD",
    "PRIVATE_REPLY_WINDOW",
    "WHATSAPP_THROUGHPUT_MAX_PER_S",
    "WHATSAPP_THROUGHPUT_PER_S",
    "WHATSAPP_TIER_LIMITS",
    "Counting",
    "ReplyRule",
    "messaging_limit",
    "rule_for",
    "rules",
]


@cache
def rules() -> dict[tuple[Provider, str], ReplyRule]:
    """Every provider plugin's reply rows (read from the registry once, on first use)."""
    return registry.reply_rules()


MESSAGE_TAGS = meta_rules.MESSAGE_TAGS
PRIVATE_REPLY_WINDOW = meta_rules.PRIVATE_REPLY_WINDOW
WHATSAPP_TIER_LIMITS = whatsapp_rules.WHATSAPP_TIER_LIMITS
MESSAGING_LIMIT_PERIOD = whatsapp_rules.MESSAGING_LIMIT_PERIOD
messaging_limit = whatsapp_rules.messaging_limit
WHATSAPP_THROUGHPUT_PER_S = whatsapp_rules.THROUGHPUT_PER_S
WHATSAPP_THROUGHPUT_MAX_PER_S = whatsapp_rules.THROUGHPUT_MAX_PER_S


def rule_for(provider: Provider, kind: str) -> ReplyRule:
    try:
        return rules()[(provider, kind)]
    except KeyError as exc:
        raise ValueError(f"no reply rule for {provider.value} {kind}") from exc
