"""WhatsApp's reply rules and messaging limits, with their sources (pure)."""

from __future__ import annotations

from parley_events import Provider

from parley_providers.rules import HOURS_24, Counting, ReplyRule

WHATSAPP_TEXT_MAX = 4096
THROUGHPUT_PER_S = 80
"""Messages per second a business number may send by default (WhatsApp throughput)."""
THROUGHPUT_MAX_PER_S = 1000
"""The most a number's throughput is raised to on request (WhatsApp throughput)."""

WHATSAPP_TIER_LIMITS = (250, 2_000, 10_000, 100_000, None)
"""Unique customers reached outside the window per rolling 24 h, by messaging tier (None: unlimited)."""
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
    ),
}
