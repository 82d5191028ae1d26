"""Messenger's and Instagram's reply rules, with their sources (pure)."""

from __future__ import annotations

from parley_events import Provider

from parley_providers.rules import DAYS_7, HOURS_24, Counting, ReplyRule

MESSENGER_TEXT_MAX = 2000
INSTAGRAM_TEXT_MAX_BYTES = 1000

RULES: dict[tuple[Provider, str], ReplyRule] = {
    (Provider.MESSENGER, "direct"): ReplyRule(
        Provider.MESSENGER,
        "direct",
        HOURS_24,
        DAYS_7,
        MESSENGER_TEXT_MAX,
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
        MESSENGER_TEXT_MAX,
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
        INSTAGRAM_TEXT_MAX_BYTES,
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
}

MESSAGE_TAGS = {"HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"}
"""Messenger message tags Parley lets agents use (Send API reference); others are refused."""

PRIVATE_REPLY_WINDOW = DAYS_7

SEND_API_TAGS = frozenset(
    {"HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "CUSTOMER_FEEDBACK"}
)
"""The ``tag`` values Messenger's Send API accepts with ``messaging_type: MESSAGE_TAG``."""
