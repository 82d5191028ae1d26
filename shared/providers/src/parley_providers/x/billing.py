"""What X bills Parley for (pure): webhook events delivered and replies sent.

X's pay-per-use pricing (docs.x.com/x-api/getting-started/pricing) bills X Activity API webhook
events per event delivered (deduplicated within a 24-hour UTC window), and writes per request.
The services count these per channel so an operator sees what a channel costs; this module only
says, for a delivery or a reply, whether it is billable and in which category. The unit prices are
the documented ones at the time of writing (X: "prices are subject to change"; the Developer
Console has the current rates); ``None`` where the documentation names no price.

The categories are a fixed set (metric label values): an event type X does not document, or one
no price applies to, never becomes a new label.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from parley_events import Provider

from parley_providers.base import Charge, DeliveryCharge
from parley_providers.x import activity
from parley_providers.x.length import has_url

__all__ = ["Charge", "delivery_charge", "event_charge", "reply_charge", "webhook_charge"]

PRICING_SOURCE = "docs.x.com/x-api/getting-started/pricing"

_FREE = Decimal(0)
# Webhook events, per event delivered (the pricing page's "Webhook events" table)
_EVENT_PRICES: dict[str, Decimal | None] = {
    activity.POST_CREATE: Decimal("0.005"),
    activity.POST_DELETE: _FREE,
    "follow.follow": Decimal("0.010"),
    "follow.unfollow": Decimal("0.010"),
    "mute.mute": Decimal("0.001"),
    "mute.unmute": Decimal("0.001"),
    "block.block": Decimal("0.001"),
    "block.unblock": Decimal("0.001"),
    activity.CHAT_RECEIVED: Decimal("0.010"),
    activity.CHAT_SENT: _FREE,
    "chat.conversation_join": _FREE,
    activity.DM_RECEIVED: Decimal("0.010"),
    activity.DM_SENT: _FREE,
    activity.DM_READ: _FREE,
    activity.DM_INDICATE_TYPING: _FREE,
    "news.new": Decimal("0.005"),
    "spaces.start": Decimal("0.005"),
    "spaces.end": Decimal("0.005"),
    # "Each delivered Post event ... is billed as a Post" (docs.x.com/x-api/activity/introduction);
    # the pricing table lists no separate price for these four
    activity.POST_MENTION: None,
    activity.POST_REPLY: None,
    activity.POST_QUOTE: None,
    activity.POST_REPOST: None,
}
_PROFILE_PRICE = Decimal("0.005")  # profile.update.*

# Writes, per request (the pricing page's "Write operations" table)
DM_SEND = Charge("dm.send", True, Decimal("0.015"))  # DM Interaction: Create
POST_CREATE_URL = Charge("post.create.url", True, Decimal("0.200"))  # Post: Create (with URL)
POST_CREATE_SUMMONED = Charge("post.create.summoned", True, Decimal("0.010"))  # Post: Create (summoned)

EVENT_CATEGORIES: frozenset[str] = frozenset(
    {*(f"event.{name}" for name in _EVENT_PRICES), "event.profile.update", "event.other"}
)
REPLY_CATEGORIES: frozenset[str] = frozenset(
    c.category for c in (DM_SEND, POST_CREATE_URL, POST_CREATE_SUMMONED)
)


def event_charge(event_type: str) -> Charge:
    """What X charges for one delivered event of ``event_type``.

    An event type the pricing page does not list (likes, broadcasts, ``oauth.revoke``, anything
    new) is ``event.other``: counted as billed with no known price, so it shows up rather than
    passing as free.
    """
    if event_type.startswith("profile.update.") and event_type in activity.EVENT_TYPES:
        return Charge("event.profile.update", True, _PROFILE_PRICE)
    if event_type in _EVENT_PRICES:
        price = _EVENT_PRICES[event_type]
        return Charge(f"event.{event_type}", price != _FREE, price)
    return Charge("event.other", True, None)


def delivery_charge(payload: Any) -> Charge | None:
    """The charge of one webhook delivery: its X Activity API event, or None for anything else
    (an Account Activity API delivery, which X prices by subscription, not per event)."""
    if not isinstance(payload, Mapping):
        return None
    data = payload.get("data")
    if not isinstance(data, Mapping) or "for_user_id" in payload:
        return None
    event_type = data.get("event_type")
    return event_charge(event_type if isinstance(event_type, str) else "")


def reply_charge(kind: str, text: str) -> Charge:
    """What sending one approved reply costs: a DM, or a public reply post.

    Parley posts publicly only in answer to a post that mentions or quotes the handle, which is
    what X calls summoned (and, since 2026-02, the only programmatic reply self-serve apps may
    make). A post with a URL has its own, higher price; the pricing page does not say which of
    the two applies to a summoned reply with a URL, so the higher one is counted.
    """
    if kind != "mention":
        return DM_SEND
    return POST_CREATE_URL if has_url(text) else POST_CREATE_SUMMONED


def webhook_charge(payload: Any) -> DeliveryCharge | None:
    """The charge of one delivery to X's webhook and the handle it was delivered for (the
    subscription filter's ``user_id``); None when X does not bill it per event."""
    charge = delivery_charge(payload)
    if charge is None:
        return None
    data = payload.get("data")
    selector = data.get("filter") if isinstance(data, Mapping) else None
    user = selector.get("user_id") if isinstance(selector, Mapping) else None
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not user:
        return None  # no handle to attribute it to
    return DeliveryCharge(Provider.X, user, charge)
