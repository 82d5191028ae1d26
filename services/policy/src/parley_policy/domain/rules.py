"""The providers' reply rules as one data table (pure). Sources: docs/policy.md.

Every number here is in ../shared/PLATFORM-RULES.md with the provider document it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from parley_events import Provider


class Counting(StrEnum):
    """How a provider measures text length."""

    CHARACTERS = "characters"  # Unicode code points
    UTF8_BYTES = "utf8_bytes"
    X_WEIGHTED = "x_weighted"  # twitter-text: URLs count 23, CJK and emoji count 2


@dataclass(frozen=True, slots=True)
class ReplyRule:
    """What a provider allows for one kind of reply."""

    provider: Provider
    kind: str
    window: timedelta | None
    """Free-form replies are allowed this long after the customer's last message (None: no window)."""
    human_agent_window: timedelta | None
    """The HUMAN_AGENT tag extends the window to this, for human senders, where the channel allows it."""
    text_limit: int
    counting: Counting
    template_outside_window: bool
    """Outside the window only an approved template may be sent (WhatsApp)."""
    rate_per_second: int | None
    source: str


HOURS_24 = timedelta(hours=24)
DAYS_7 = timedelta(days=7)

RULES: dict[tuple[Provider, str], ReplyRule] = {
    (Provider.MESSENGER, "direct"): ReplyRule(
        Provider.MESSENGER,
        "direct",
        HOURS_24,
        DAYS_7,
        2000,
        Counting.CHARACTERS,
        False,
        300,
        "Messenger Platform policy (24 h window), Send API reference (tags, 2000 characters), "
        "Messenger rate limiting (300 calls/s per Page)",
    ),
    (Provider.MESSENGER, "private_reply"): ReplyRule(
        Provider.MESSENGER,
        "private_reply",
        DAYS_7,
        None,
        2000,
        Counting.CHARACTERS,
        False,
        None,
        "Messenger private replies: one per comment within 7 days; 750/h per Page",
    ),
    (Provider.MESSENGER, "comment"): ReplyRule(
        Provider.MESSENGER,
        "comment",
        None,
        None,
        8000,
        Counting.CHARACTERS,
        False,
        None,
        "Graph API comments: public replies have no messaging window",
    ),
    (Provider.INSTAGRAM, "direct"): ReplyRule(
        Provider.INSTAGRAM,
        "direct",
        HOURS_24,
        DAYS_7,
        1000,
        Counting.UTF8_BYTES,
        False,
        None,
        "Instagram Messaging overview (24 h, HUMAN_AGENT 7 days), Instagram Messaging API (1000 bytes)",
    ),
    (Provider.INSTAGRAM, "comment"): ReplyRule(
        Provider.INSTAGRAM,
        "comment",
        None,
        None,
        2200,
        Counting.CHARACTERS,
        False,
        None,
        "Instagram comment replies: public, no messaging window",
    ),
    (Provider.WHATSAPP, "direct"): ReplyRule(
        Provider.WHATSAPP,
        "direct",
        HOURS_24,
        None,
        4096,
        Counting.CHARACTERS,
        True,
        80,
        "WhatsApp Cloud API (24 h customer service window, templates outside it, 4096 characters), "
        "WhatsApp throughput (80 messages/s per number by default)",
    ),
    (Provider.X, "direct"): ReplyRule(
        Provider.X,
        "direct",
        None,
        None,
        10_000,
        Counting.CHARACTERS,
        False,
        None,
        "X developer docs: direct messages up to 10,000 characters",
    ),
    (Provider.X, "mention"): ReplyRule(
        Provider.X,
        "mention",
        None,
        None,
        280,
        Counting.X_WEIGHTED,
        False,
        None,
        "X developer docs and twitter-text: posts up to 280 weighted characters",
    ),
}

MESSAGE_TAGS = {"HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"}
"""Messenger message tags Parley lets agents use (Send API reference); others are refused."""

WHATSAPP_TIER_LIMITS = (250, 2_000, 10_000, 100_000, None)
"""Unique customers reached outside the window per rolling 24 h, by messaging tier (None: unlimited)."""
PRIVATE_REPLY_WINDOW = DAYS_7


def rule_for(provider: Provider, kind: str) -> ReplyRule:
    try:
        return RULES[(provider, kind)]
    except KeyError as exc:
        raise ValueError(f"no reply rule for {provider.value} {kind}") from exc


def messaging_limit(tier: int) -> int | None:
    """Unique customers a WhatsApp number may reach outside the window per rolling 24 h."""
    return WHATSAPP_TIER_LIMITS[min(max(tier, 0), len(WHATSAPP_TIER_LIMITS) - 1)]
