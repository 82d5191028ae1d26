"""Policy's store contract: what ``PolicyStorePort`` (and the template cache) promise, on every store.

Every "exactly once" of policy (a decision per reply, a window notice, a delivery, a rate slot, a
comment's private reply) is raced here by concurrent writers: one of them wins, and every other
sees the winner's result.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from parley_events import ChannelTemplateStatusChanged, MessageKind, MessageReceived, Provider
from parley_policy.domain.decision import KnownLimit

from tests.unit.factories import CUSTOMER_ID, T0, message

pytestmark = pytest.mark.store


def inbound(
    n: int, conversation_id: str = "conv_1", *, minutes: float = 0, kind: MessageKind = MessageKind.DIRECT
) -> MessageReceived:
    return message(n, conversation_id=conversation_id, at=T0 + timedelta(minutes=minutes)).model_copy(
        update={"kind": kind}
    )


async def test_customer_messages_move_the_window_forward_only(policy_store: Any) -> None:
    assert await policy_store.record_inbound(inbound(1, minutes=10)) is True
    assert await policy_store.record_inbound(inbound(0, minutes=5)) is False  # older: a late delivery
    assert await policy_store.record_inbound(inbound(2, minutes=20, kind=MessageKind.COMMENT)) is False
    assert await policy_store.record_inbound(inbound(3, minutes=30)) is True

    doc = await policy_store.conversation("conv_1")
    assert doc is not None
    assert (doc["_id"], doc["channel_id"], doc["recipient_id"]) == ("conv_1", "chn_1", CUSTOMER_ID)
    facts = policy_store.facts(doc)
    assert facts.provider is Provider.MESSENGER
    assert facts.last_customer_message_at == T0 + timedelta(minutes=30)
    assert facts.comment_times == {"m_2": T0 + timedelta(minutes=20)}
    assert await policy_store.conversation("conv_missing") is None


async def test_a_private_reply_is_marked_once_and_survives_later_messages(policy_store: Any) -> None:
    await policy_store.record_inbound(inbound(1, kind=MessageKind.COMMENT))
    await policy_store.mark_private_replied("conv_1", "m_1")
    await policy_store.mark_private_replied("conv_1", "m_1")
    await policy_store.record_inbound(inbound(2, minutes=1))
    await policy_store.mark_private_replied("conv_missing", "m_1")  # nothing to mark: no error

    doc = await policy_store.conversation("conv_1")
    assert doc is not None
    assert policy_store.facts(doc).private_replied_comments == frozenset({"m_1"})
    assert doc["private_replied"] == ["m_1"]


async def test_thread_control_is_kept_per_conversation_and_an_older_change_is_ignored(
    policy_store: Any,
) -> None:
    assert await policy_store.parley_active("conv_1") is True  # nothing said yet: Parley answers
    await policy_store.record_inbound(inbound(1))

    await policy_store.record_thread_control("conv_1", False, T0 + timedelta(minutes=2))
    await policy_store.record_thread_control("conv_1", True, T0 + timedelta(minutes=1))  # late
    await policy_store.record_inbound(inbound(2, minutes=3))  # a customer message keeps it

    assert await policy_store.parley_active("conv_1") is False
    assert await policy_store.parley_active("conv_2") is True
    await policy_store.record_thread_control("conv_1", True, T0 + timedelta(minutes=4))
    assert await policy_store.parley_active("conv_1") is True


async def test_of_racing_decisions_on_one_reply_the_first_is_kept_and_returned_to_the_others(
    policy_store: Any,
) -> None:
    results = [{"approved": n % 2 == 0, "attempt": n, "published": False} for n in range(8)]

    earlier = await asyncio.gather(*(policy_store.claim_decision("reply-1", r) for r in results))

    winners = [n for n, e in enumerate(earlier) if e is None]
    assert len(winners) == 1, earlier
    assert all(e == results[winners[0]] for e in earlier if e is not None)
    assert await policy_store.decision("reply-1") == results[winners[0]]
    await policy_store.mark_published("reply-1")
    assert await policy_store.decision("reply-1") == {**results[winners[0]], "published": True}
    assert await policy_store.decision("reply-missing") is None


async def test_a_window_notice_is_claimed_once_across_racing_replicas(policy_store: Any) -> None:
    claims = await asyncio.gather(*(policy_store.claim_notice("notice-1", T0) for _ in range(8)))
    assert claims.count(True) == 1
    assert await policy_store.claim_notice("notice-2", T0) is True


async def test_a_comments_private_reply_goes_to_one_of_racing_replies_and_back_if_it_fails(
    policy_store: Any,
) -> None:
    racing = [f"reply-{n}" for n in range(8)]
    claims = await asyncio.gather(*(policy_store.claim_private_reply("conv_1", "m_1", r) for r in racing))
    assert claims.count(True) == 1
    winner = racing[claims.index(True)]
    loser = next(r for r in racing if r != winner)
    assert await policy_store.claim_private_reply("conv_1", "m_1", winner) is True  # its retry
    assert await policy_store.claim_private_reply("conv_1", "m_2", loser) is True  # another comment
    assert await policy_store.claim_private_reply("conv_2", "m_1", loser) is True  # another conversation
    await policy_store.release_private_reply("conv_1", "m_1", loser)  # not the holder: nothing given
    assert await policy_store.claim_private_reply("conv_1", "m_1", loser) is False
    await policy_store.release_private_reply("conv_1", "m_1", winner)  # its send failed
    assert await policy_store.claim_private_reply("conv_1", "m_1", loser) is True


async def test_a_delivery_keeps_the_first_provider_message_id(policy_store: Any) -> None:
    assert await policy_store.delivered("reply-1") is None
    await policy_store.record_delivery("reply-1", "mid-first")
    await policy_store.record_delivery("reply-1", "mid-second")
    assert await policy_store.delivered("reply-1") == "mid-first"


async def test_racing_senders_share_a_channel_seconds_slots_and_no_more(policy_store: Any) -> None:
    second = int(T0.timestamp())
    slots = await asyncio.gather(*(policy_store.take_rate_slot("chn_1", second, 5, 3) for _ in range(12)))

    taken = [s for s in slots if s is not None]
    assert sorted(taken) == [0, 1, 2, 3, 4]  # five distinct slots, then refusals
    assert slots.count(None) == 7
    # another channel and another second have their own slots, whatever the hints
    assert await policy_store.take_rate_slot("chn_2", second, 5, 2) is not None
    later = [await policy_store.take_rate_slot("chn_1", second + 1, 5, hint) for hint in (4, 0, 0, 2, 1, 3)]
    assert sorted(s for s in later if s is not None) == [0, 1, 2, 3, 4]
    assert later[-1] is None
    assert await policy_store.take_rate_slot("chn_1", second + 2, 0) is None

    await policy_store.forget_slots_before(second + 1)
    assert await policy_store.take_rate_slot("chn_1", second, 5) is not None  # forgotten: free again
    assert await policy_store.take_rate_slot("chn_1", second + 1, 5) is None  # still full


async def test_an_hours_budget_keyed_by_the_second_it_ends_outlives_the_sweep_of_past_seconds(
    policy_store: Any,
) -> None:
    # policy's private-reply budget: key "<channel>/private_reply/hour", window = the hour's end
    now = int(T0.timestamp()) + 300
    hour_end = (now // 3600 + 1) * 3600
    key = "chn_1/private_reply/hour"
    assert [await policy_store.take_rate_slot(key, hour_end, 2, hint) for hint in (0, 1, 0)][-1] is None

    await policy_store.forget_slots_before(now - 60)  # the sweep, mid-hour

    assert await policy_store.take_rate_slot(key, hour_end, 2) is None  # still used up
    assert await policy_store.take_rate_slot("chn_1", now, 2) is not None  # the channel's seconds apart


async def test_due_windows_are_every_conversation_in_the_range_in_time_order(policy_store: Any) -> None:
    # two conversations share each minute, so pages must break ties by id
    for n in range(8):
        await policy_store.record_inbound(inbound(n, f"conv_{n}", minutes=n // 2))
    await policy_store.record_inbound(inbound(20, "conv_late", minutes=60))
    await policy_store.record_inbound(inbound(21, "conv_comment_only", minutes=1, kind=MessageKind.COMMENT))

    due = await policy_store.windows_due(T0 + timedelta(minutes=3), T0 + timedelta(minutes=1), page=3)

    assert [d["_id"] for d in due] == ["conv_2", "conv_3", "conv_4", "conv_5", "conv_6", "conv_7"]
    assert due[0]["last_customer_message_at"] == T0 + timedelta(minutes=1)
    assert await policy_store.windows_due(T0 - timedelta(minutes=1), T0 - timedelta(hours=1)) == []


async def test_customers_reached_outside_the_window_are_counted_per_scope_from_their_last_contact(
    policy_store: Any,
) -> None:
    since = T0 - timedelta(hours=24)
    assert await policy_store.claim_reach("waba:1", "customer-1", T0, since, 2) is True
    assert await policy_store.claim_reach("waba:1", "customer-2", T0 + timedelta(hours=1), since, 2) is True
    # a customer already counted counts once, and the last contact moves its time on
    assert await policy_store.claim_reach("waba:1", "customer-1", T0 + timedelta(hours=2), since, 2) is True
    assert await policy_store.claim_reach("waba:1", "customer-3", T0 + timedelta(hours=2), since, 2) is False
    assert await policy_store.claim_reach("waba:other", "customer-3", T0, since, 2) is True

    assert await policy_store.business_initiated_recipients("waba:1", T0 + timedelta(minutes=90)) == {
        "customer-1"
    }
    assert await policy_store.business_initiated_recipients("waba:1", T0) == {"customer-1", "customer-2"}
    assert await policy_store.business_initiated_recipients("waba:none", T0) == set()


async def test_a_place_frees_up_once_its_customer_was_reached_a_period_ago(policy_store: Any) -> None:
    day = timedelta(hours=24)
    assert await policy_store.claim_reach("waba:1", "customer-1", T0, T0 - day, 1) is True
    assert (
        await policy_store.claim_reach(
            "waba:1", "customer-2", T0 + timedelta(hours=23), T0 - timedelta(hours=1), 1
        )
        is False
    )

    later = T0 + day + timedelta(minutes=1)
    assert await policy_store.claim_reach("waba:1", "customer-2", later, later - day, 1) is True
    assert await policy_store.business_initiated_recipients("waba:1", later - day) == {"customer-2"}
    # and it is taken again: the next new customer waits
    assert await policy_store.claim_reach("waba:1", "customer-3", later, later - day, 1) is False


async def test_of_customers_racing_for_the_last_places_only_as_many_as_there_are_places_pass(
    policy_store: Any,
) -> None:
    since = T0 - timedelta(hours=24)
    for n in range(8):
        assert await policy_store.claim_reach("waba:1", f"early-{n}", T0, since, 10) is True

    passed = await asyncio.gather(
        *(policy_store.claim_reach("waba:1", f"racer-{n}", T0, since, 10) for n in range(6))
    )

    assert sorted(passed) == [False] * 4 + [True] * 2
    assert len(await policy_store.business_initiated_recipients("waba:1", since)) == 10


async def test_an_accounts_customers_carried_to_its_portfolio_count_there_once_at_their_times(
    policy_store: Any,
) -> None:
    since = T0 - timedelta(hours=24)
    hour = timedelta(hours=1)
    assert await policy_store.claim_reach("waba:1", "old", T0 - 2 * hour, T0 - 3 * hour, 10) is True
    for n, customer in enumerate(("both", "account-only")):
        assert await policy_store.claim_reach("waba:1", customer, T0 + n * hour, since, 10) is True
    assert (
        await policy_store.claim_reach("portfolio:9", "both", T0 - hour, since, 3) is True
    )  # seen earlier there

    # "old" was reached before the period: not carried; "both" is not counted twice
    assert await policy_store.carry_reach("waba:1", "portfolio:9", T0 - hour) >= 1
    assert await policy_store.carry_reach("waba:1", "portfolio:9", T0 - hour) == 0  # idempotent

    assert await policy_store.business_initiated_recipients("portfolio:9", T0 - hour) == {
        "both",
        "account-only",
    }
    # "both" carries its later time (T0): still counted when the period no longer covers T0 - 1h
    assert await policy_store.business_initiated_recipients("portfolio:9", T0 - timedelta(minutes=30)) == {
        "both",
        "account-only",
    }
    # the portfolio's three places: two taken by carried customers, one left
    assert await policy_store.claim_reach("portfolio:9", "new-1", T0 + 2 * hour, T0 - hour, 3) is True
    assert await policy_store.claim_reach("portfolio:9", "new-2", T0 + 2 * hour, T0 - hour, 3) is False
    assert await policy_store.carry_reach("waba:none", "portfolio:9", since) == 0


async def test_template_reviews_are_kept_and_loaded_by_a_new_process(store: Any, templates: Any) -> None:
    def review(status: str, name: str = "order_update") -> ChannelTemplateStatusChanged:
        return ChannelTemplateStatusChanged(
            event_id=f"tpl-{name}-{status}",
            channel_id="chn_wa",
            tenant_id="ten_acme",
            provider=Provider.WHATSAPP,
            occurred_at=T0,
            template_name=name,
            language="en_US",
            status=status,
        )

    await templates.record(review("APPROVED"))
    await templates.record(review("APPROVED", "welcome"))
    await templates.record(review("PAUSED"))
    assert templates.of("chn_wa")[("order_update", "en_US")].status == "PAUSED"

    restarted = type(templates)(store.postgres if store.kind == "postgresql" else store.db)
    assert restarted.of("chn_wa") == {}
    await restarted.load()
    assert {key: info.status for key, info in restarted.of("chn_wa").items()} == {
        ("order_update", "en_US"): "PAUSED",
        ("welcome", "en_US"): "APPROVED",
    }


async def test_a_business_messaging_limit_is_the_latest_the_provider_set(policy_store: Any) -> None:
    assert await policy_store.messaging_limit("waba:1") is None

    await policy_store.record_messaging_limit("waba:1", 2_000, T0 + timedelta(hours=2))
    await policy_store.record_messaging_limit("waba:1", 250, T0 + timedelta(hours=1))  # older: late
    await policy_store.record_messaging_limit("waba:2", None, T0)

    assert await policy_store.messaging_limit("waba:1") == KnownLimit(2_000)
    assert await policy_store.messaging_limit("waba:2") == KnownLimit(None)  # unlimited
    await policy_store.record_messaging_limit("waba:1", 10_000, T0 + timedelta(hours=3))
    assert await policy_store.messaging_limit("waba:1") == KnownLimit(10_000)
