"""The providers' reply rules as one table (pure), assembled from every provider plugin's rows.

Sources: docs/policy.md and each provider package; every number is in ../shared/PLATFORM-RULES.md.
Message tags and WhatsApp's messaging tiers are Meta's and WhatsApp's own rules, which policy's
decision applies by name.
"""

from __future__ import annotations

from parley_events import Provider
from parley_providers import registry
from parley_providers.meta import rules as meta_rules
from parley_providers.rules import Counting, ReplyRule
from parley_providers.whatsapp import rules as whatsapp_rules

__all__ = [
    "MESSAGE_TAGS",
    "PRIVATE_REPLY_WINDOW",
    "RULES",
    "WHATSAPP_TIER_LIMITS",
    "Counting",
    "ReplyRule",
    "messaging_limit",
    "rule_for",
]

RULES: dict[tuple[Provider, str], ReplyRule] = registry.reply_rules()
MESSAGE_TAGS = meta_rules.MESSAGE_TAGS
PRIVATE_REPLY_WINDOW = meta_rules.PRIVATE_REPLY_WINDOW
WHATSAPP_TIER_LIMITS = whatsapp_rules.WHATSAPP_TIER_LIMITS
messaging_limit = whatsapp_rules.messaging_limit


def rule_for(provider: Provider, kind: str) -> ReplyRule:
    try:
        return RULES[(provider, kind)]
    except KeyError as exc:
        raise ValueError(f"no reply rule for {provider.value} {kind}") from exc
