"""What X bills per delivered X Activity API event and per reply (X API pricing page)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from parley_providers.x.billing import (
    EVENT_CATEGORIES,
    REPLY_CATEGORIES,
    Charge,
    delivery_charge,
    event_charge,
    reply_charge,
    webhook_charge,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers" / "x"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize(
    ("fixture", "charge"),
    [
        ("xaa_dm_received", Charge("event.dm.received", True, Decimal("0.010"))),
        ("xaa_dm_sent", Charge("event.dm.sent", False, Decimal(0))),
        ("xaa_chat_received", Charge("event.chat.received", True, Decimal("0.010"))),
        ("xaa_chat_sent", Charge("event.chat.sent", False, Decimal(0))),
        ("xaa_business_post", Charge("event.post.create", True, Decimal("0.005"))),
        ("xaa_post_delete", Charge("event.post.delete", False, Decimal(0))),
        ("xaa_mention", Charge("event.post.mention.create", True, None)),
        ("xaa_reply", Charge("event.post.reply.create", True, None)),
        ("xaa_quote", Charge("event.post.quote.create", True, None)),
    ],
)
def test_each_delivered_event_has_its_documented_charge(fixture: str, charge: Charge) -> None:
    assert delivery_charge(load(fixture)) == charge


def test_account_activity_deliveries_are_not_billed_per_event() -> None:
    assert delivery_charge(load("dm_inbound")) is None
    assert delivery_charge(load("tweet_mention")) is None
    assert delivery_charge(["not", "a", "delivery"]) is None


def test_profile_updates_share_one_category() -> None:
    assert event_charge("profile.update.bio") == Charge("event.profile.update", True, Decimal("0.005"))
    assert event_charge("profile.update.handle").category == "event.profile.update"


def test_an_event_without_a_documented_price_is_billed_other_whatever_its_name() -> None:
    for name in ("like.create", "oauth.revoke", "profile.update.forged", "x" * 5_000, ""):
        assert event_charge(name) == Charge("event.other", True, None)
    assert delivery_charge({"data": {"event_type": 42}}) == Charge("event.other", True, None)


def test_event_categories_are_a_fixed_set() -> None:
    names = ["dm.received", "profile.update.url", "like.create", "forged", *(f"n{i}" for i in range(500))]
    assert {event_charge(n).category for n in names} <= EVENT_CATEGORIES
    assert len(EVENT_CATEGORIES) < 40


def test_a_dm_reply_is_a_dm_interaction() -> None:
    assert reply_charge("direct", "Your order ships today") == Charge("dm.send", True, Decimal("0.015"))


def test_a_public_reply_is_a_summoned_post_unless_it_carries_a_url() -> None:
    assert reply_charge("mention", "Sorry! We are on it.") == Charge(
        "post.create.summoned", True, Decimal("0.010")
    )
    assert reply_charge("mention", "Track it at https://example.com/t/1042") == Charge(
        "post.create.url", True, Decimal("0.200")
    )
    assert reply_charge("mention", "See example.com for details").category == "post.create.url"
    assert {
        reply_charge(k, t).category for k in ("direct", "mention") for t in ("a", "x.com")
    } <= REPLY_CATEGORIES


def test_a_delivery_is_attributed_to_the_handle_its_subscription_filters_on() -> None:
    from parley_events import Provider

    charged = webhook_charge(load("xaa_dm_received"))
    assert charged is not None
    assert (charged.provider, charged.account_id, charged.charge.category) == (
        Provider.X,
        "3000000000000000001",
        "event.dm.received",
    )
    assert webhook_charge(load("dm_inbound")) is None  # Account Activity: priced by subscription
    unfiltered = load("xaa_dm_received")
    del unfiltered["data"]["filter"]
    assert webhook_charge(unfiltered) is None  # no handle to attribute it to
