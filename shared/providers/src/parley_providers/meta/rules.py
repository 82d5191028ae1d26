"""Messenger's and Instagram's reply rules, with their sources (pure)."""

from __future__ import annotations

from datetime import date

from parley_events import Provider

from parley_providers.rules import DAYS_7, HOURS_24, Counting, ReplyRule

MESSENGER_TEXT_MAX = 2000
INSTAGRAM_TEXT_MAX_BYTES = 1000

HUMAN_AGENT = "HUMAN_AGENT"
"""The one message tag left: a person's reply between 24 hours and 7 days after the customer's last
message (Message Tags, https://developers.facebook.com/docs/messenger-platform/send-messages/message-tags/)."""

TAGS_RETIRED_ON = date(2026, 4, 27)
RETIRED_TAGS = {
    "ACCOUNT_UPDATE": TAGS_RETIRED_ON,
    "CONFIRMED_EVENT_UPDATE": TAGS_RETIRED_ON,
    "POST_PURCHASE_UPDATE": TAGS_RETIRED_ON,
}
"""Meta stopped accepting these tags on 2026-04-27: a send with one fails with error 100 ("Invalid
parameter"). Meta's own pages reachable to us do not state the date; it is the one reported by
integrators hit by it (chatwoot/chatwoot#14674) and in ../shared/PLATFORM-RULES.md."""

SEND_API_TAGS = frozenset({HUMAN_AGENT})
"""The ``tag`` values Messenger's Send API accepts with ``messaging_type: MESSAGE_TAG``."""

# Messenger Platform rate limiting (developers.facebook.com/docs/messenger-platform/overview/rate-limiting),
# the same numbers per Facebook Page and per Instagram professional account
SEND_API_TEXT_PER_SECOND = 300
"""Send API calls per second for text, links, reactions and stickers."""
SEND_API_MEDIA_PER_SECOND = 10
"""Send API calls per second for messages with audio or video."""
PRIVATE_REPLIES_PER_HOUR = 750
"""Private replies to comments on posts and reels, per hour."""

RULES: dict[tuple[Provider, str], ReplyRule] = {
    (Provider.MESSENGER, "direct"): ReplyRule(
        Provider.MESSENGER,
        "direct",
        HOURS_24,
        DAYS_7,
        MESSENGER_TEXT_MAX,
        Counting.CHARACTERS,
        False,
        SEND_API_TEXT_PER_SECOND,
        "Messenger Platform policy (24 h window), Send API reference (tags, 2000 characters), "
        "Messenger rate limiting (300 calls/s per Page for text, 10/s for audio and video); "
        "HUMAN_AGENT the only tag since 2026-04-27",
        human_agent_tag=HUMAN_AGENT,
        retired_tags=RETIRED_TAGS,
        media_rate_per_second=SEND_API_MEDIA_PER_SECOND,
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
        "Messenger private replies: one per comment within 7 days; Messenger rate limiting: 750/h per Page",
        rate_per_hour=PRIVATE_REPLIES_PER_HOUR,
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
        SEND_API_TEXT_PER_SECOND,
        "Instagram Messaging overview (24 h, HUMAN_AGENT 7 days), Instagram Messaging API (1000 bytes), "
        "Messenger Platform rate limiting for Instagram (300 calls/s per account for text, 10/s for "
        "audio and video)",
        human_agent_tag=HUMAN_AGENT,
        retired_tags=RETIRED_TAGS,
        media_rate_per_second=SEND_API_MEDIA_PER_SECOND,
    ),
    (Provider.INSTAGRAM, "private_reply"): ReplyRule(
        Provider.INSTAGRAM,
        "private_reply",
        DAYS_7,
        None,
        INSTAGRAM_TEXT_MAX_BYTES,
        Counting.UTF8_BYTES,
        False,
        None,
        "Instagram private replies: one per comment within 7 days (a live video's comments: only "
        "during the broadcast), sent as a DM of 1000 bytes at most; Messenger Platform rate "
        "limiting: 750/h per Instagram professional account",
        rate_per_hour=PRIVATE_REPLIES_PER_HOUR,
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
