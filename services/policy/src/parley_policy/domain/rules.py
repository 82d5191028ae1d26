"""The providers' reply rules as one table (pure), assembled from each provider's ``rules.py``.

Sources: docs/policy.md and each provider package; every number is in ../shared/PLATFORM-RULES.md.
"""

from __future__ import annotations

from parley_events import Provider
from parley_providers.meta import rules as meta_rules
from parley_providers.rules import Counting, ReplyRule
from parley_providers.whatsapp import rules as whatsapp_rules
from parley_providers.x import rules as x_rules

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

RULES: dict[tuple[Provider, str], ReplyRule] = {**meta_rules.RULES, **whatsapp_rules.RULES, **x_rules.RULES}
MESSAGE_TAGS = meta_rules.MESSAGE_TAGS
PRIVATE_REPLY_WINDOW = meta_rules.PRIVATE_REPLY_WINDOW
WHATSAPP_TIER_LIMITS = whatsapp_rules.WHATSAPP_TIER_LIMITS
messaging_limit = whatsapp_rules.messaging_limit


def rule_for(provider: Provider, kind: str) -> ReplyRule:
    try:
        return RULES[(provider, kind)]
    except KeyError as exc:
        raise ValueError(f"no reply rule for {provider.value} {kind}") from exc
