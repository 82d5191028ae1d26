"""WhatsApp's reply rules and messaging limits, with their sources (pure)."""

from __future__ import annotations

from parley_events import Provider

from parley_providers.rules import HOURS_24, Counting, ReplyRule
from parley_providers.whatsapp.outbound import is_phone_number
from parley_providers.whatsapp.templates import PHONE_ONLY_CATEGORIES

WHATSAPP_TEXT_MAX = 4096
THROUGHPUT_PER_S = 80
"""Messages per second a business number may send by default (WhatsApp throughput)."""
THROUGHPUT_MAX_PER_S = 1000
"""The most a number's throughput is raised to on request (WhatsApp throughput)."""
THROUGHPUT_COEXISTENCE_PER_S = 20
"""The fixed throughput of a number in use with both the WhatsApp Business app and the Cloud API
(WhatsApp throughput, "WhatsApp Business app phone numbers")."""
THROUGHPUT_LEVELS: dict[str, int] = {"STANDARD": THROUGHPUT_PER_S, "HIGH": THROUGHPUT_MAX_PER_S}
"""The phone number's ``throughput.level`` (Graph API, WhatsApp Business phone number) in messages
per second: the default, and after Meta's automatic upgrade."""

TYPING_INDICATOR_S = 25
"""Seconds a typing indicator shows unless the business replies first (WhatsApp typing indicators)."""

WHATSAPP_TIER_LIMITS = (250, 2_000, 10_000, 100_000, None)
"""Unique customers reached outside the window per rolling 24 h, by messaging tier (None: unlimited)."""
MESSAGING_LIMIT_TIERS: dict[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
"""The provider's names of the limits in its webhooks (``business_capability_update`` and
``phone_number_quality_update``'s ``max_daily_conversations_per_business``); TIER_50 is a legacy
per-number value still listed by ``phone_number_quality_update``."""
UNLIMITED = -1
"""The number the legacy ``max_daily_conversation_per_phone`` gives for an unlimited business."""
MESSAGING_LIMIT_PERIOD = HOURS_24
"""The rolling period the messaging limits count unique customers over."""

RULES: dict[tuple[Provider, str], ReplyRule] = {
    (Provider.WHATSAPP, "direct"): ReplyRule(
        Provider.WHATSAPP,
        "direct",
        HOURS_24,
        None,
        WHATSAPP_TEXT_MAX,
        Counting.CHARACTERS,
        True,
        THROUGHPUT_PER_S,
        "WhatsApp Cloud API (24 h customer service window, templates outside it, 4096 characters), "
        "WhatsApp throughput (80 messages/s per number by default), WhatsApp messaging limits (tiers)",
        messaging_tiers=WHATSAPP_TIER_LIMITS,
        messaging_limit_period=MESSAGING_LIMIT_PERIOD,
        rate_max_per_second=THROUGHPUT_MAX_PER_S,
        phone_only_template_categories=PHONE_ONLY_CATEGORIES,
        is_phone_address=is_phone_number,
    ),
}


def throughput_per_s(level: str | None, coexistence: bool) -> int:
    """Messages per second a business number may send (pure): 20 in coexistence with the WhatsApp
    Business app whatever its level, 1,000 once Meta upgraded it (``HIGH``), else 80 (``STANDARD``,
    or a level Parley has not read or does not know)."""
    if coexistence:
        return THROUGHPUT_COEXISTENCE_PER_S
    return THROUGHPUT_LEVELS.get((level or "").upper(), THROUGHPUT_PER_S)
