"""What a provider allows for a reply, as data every provider package fills in (pure).

Each provider's ``rules.py`` lists its rows with the document each number comes from; policy
assembles them into one table. Every number is also in ../shared/PLATFORM-RULES.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from parley_events import Provider

__all__ = ["DAYS_7", "HOURS_24", "Counting", "ReplyRule"]


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
    human_agent_tag: str | None = None
    """The message tag that extends the window to ``human_agent_window`` (None: no tags at all)."""
    retired_tags: Mapping[str, date] = field(default_factory=dict, hash=False)
    """Tags the provider accepted once, and the day it stopped: a reply asking one is refused."""
    messaging_tiers: tuple[int | None, ...] = ()
    """Business-initiated conversations allowed per rolling 24 h, by tier (None: unlimited)."""
    messaging_limit_period: timedelta | None = None
    """The rolling period ``messaging_tiers`` count unique customers over."""
    rate_max_per_second: int | None = None
    """The most ``rate_per_second`` may be raised to, on the provider's approval (None: fixed)."""
    rate_per_hour: int | None = None
    """Calls per account per hour for this kind (Meta's private replies: 750/h)."""
    media_rate_per_second: int | None = None
    """Calls per account per second for messages with audio or video (Meta: 10/s); Parley's
    replies are text today, so policy has nothing to count against it yet."""
    phone_only_template_categories: frozenset[str] = frozenset()
    """Template categories the provider sends only to a phone number (WhatsApp: AUTHENTICATION,
    never to a business-scoped user id)."""
    is_phone_address: Callable[[str], bool] | None = field(default=None, compare=False, hash=False)
    """Whether a recipient id is a phone number (None: the provider does not tell them apart)."""


HOURS_24 = timedelta(hours=24)
DAYS_7 = timedelta(days=7)
