"""PolicyService against the in-memory store: windows, decisions once per key, the outbox of a
decision, roles, the send rate and window notices. No broker, no store, no provider."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from parley_events import (
    ChannelRole,
    ChannelSnapshot,
    ChannelStatus,
    ConversationThreadControlChanged,
    Event,
    MessageKind,
    Provider,
    ReplyApproved,
    ReplyRejected,
    ReplyRequested,
    ReplyWindowClosed,
    ReplyWindowClosing,
    ReplyWindowOpened,
    SenderType,
    ThreadControlReason,
    ThreadControlReleased,
    ThreadControlTaken,
)
from parley_policy.domain.decision import ReplyRequest, Template, TemplateInfo
from parley_policy.domain.rules import rule_for
from parley_policy.service import (
    AutomationScopeRequired,
    ConversationUnknown,
    PolicyService,
    ThreadControlForbidden,
    ThreadControlUnsupported,
)
from parley_providers import ErrorKind, ProviderError
from parley_providers.base import ThreadRef

from tests.support.fakes.policy import FakePolicyStore
from tests.unit.factories import CUSTOMER_ID, T0, channel, message

pytestmark = pytest.mark.unit

ROLES = {"ana": ChannelRole.CONTRIBUTOR, "vic": ChannelRole.VIEWER}


class Harness:
    def __init__(
        self,
        *,
        snapshot: ChannelSnapshot | None = None,
        whatsapp_throughput: int = 80,
        templates: dict[tuple[str, str], TemplateInfo] | None = None,
    ) -> None:
        self.store = FakePolicyStore()
        self.published: list[Event] = []
        self.now = T0 + timedelta(minutes=5)
        chan = snapshot or channel().model_copy(update={"status": ChannelStatus.ACTIVE})
        self.service = PolicyService(
            self.store,
            lambda cid: chan if cid == chan.channel_id else None,
            lambda tenant, user, cid: ROLES.get(user),
            lambda cid: templates or {},
            self.publish,
            lambda: self.now,
            whatsapp_throughput,
        )

    async def publish(self, event: Event, event_id: str) -> None:
        assert event.event_id == event_id
        self.published.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.published if isinstance(e, kind)]

    async def reply(self, user: str, key: str, text: str = "On it", **extra: Any) -> Any:
        return await self.service.request_reply(
            "ten_acme", user, False, "conv_1", ReplyRequest(text=text, **extra), key
        )


async def test_a_customer_message_opens_the_window_once_and_an_older_one_changes_nothing() -> None:
    h = Harness()
    await h.service.on_inbound(message(2))
    await h.service.on_inbound(message(1))  # sent earlier, delivered later
    [opened] = h.of(ReplyWindowOpened)
    assert opened.closes_at == message(2).provider_timestamp + timedelta(hours=24)
    assert h.store.conversations["conv_1"]["last_customer_message_at"] == message(2).provider_timestamp


async def test_an_approved_reply_is_announced_once_and_a_retry_answers_the_same_without_a_send() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))
    first = await h.reply("ana", "key-1")
    assert first.decision.approved
    assert first.decision.messaging_type == "RESPONSE"  # inside 24 hours: no tag
    [requested], [approved] = h.of(ReplyRequested), h.of(ReplyApproved)
    assert requested.requested_by == "ana"
    assert (approved.recipient_id, approved.requested_by, approved.agent_id) == (CUSTOMER_ID, "ana", "ana")
    assert h.store.decisions[first.reply_id]["published"] is True
    again = await h.reply("ana", "key-1")
    assert (again.reply_id, again.decision.approved) == (first.reply_id, True)
    assert len(h.of(ReplyApproved)) == 1 and len(h.of(ReplyRequested)) == 1


async def test_the_approval_carries_the_channels_way_of_connecting_for_the_sender() -> None:
    h = Harness()  # a channel with one way of connecting: none named
    await h.service.on_inbound(message(1))
    await h.reply("ana", "key-1")
    assert h.of(ReplyApproved)[0].connect_path is None
    login = channel().model_copy(update={"connect_path": "instagram_login"})
    h = Harness(snapshot=login)
    await h.service.on_inbound(message(1))
    await h.reply("ana", "key-1")
    assert h.of(ReplyApproved)[0].connect_path == "instagram_login"


async def test_a_red_template_is_approved_and_its_rating_announced_and_replayed() -> None:
    whatsapp = channel().model_copy(update={"provider": Provider.WHATSAPP})
    h = Harness(
        snapshot=whatsapp, templates={("flash_sale", "en_US"): TemplateInfo("APPROVED", 0, None, "RED")}
    )
    await h.service.on_inbound(message(1).model_copy(update={"provider": Provider.WHATSAPP}))
    sale = {"text": None, "template": Template("flash_sale", "en_US")}
    first = await h.reply("ana", "key-1", **sale)
    assert (first.decision.approved, first.decision.template_quality) == (True, "RED")
    assert h.of(ReplyApproved)[0].template_quality == "RED"
    again = await h.reply("ana", "key-1", **sale)
    assert again.decision.template_quality == "RED"  # the retry answers the same


async def test_a_decision_stored_but_never_announced_is_announced_by_the_retry() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))
    first = await h.reply("ana", "key-1")
    announced = [e.event_id for e in h.published if not isinstance(e, ReplyWindowOpened)]
    # as if the process died between storing the decision and publishing its events
    h.store.decisions[first.reply_id]["published"] = False
    h.published.clear()
    again = await h.reply("ana", "key-1")
    assert again.decision.approved
    assert [e.event_id for e in h.published] == announced  # the same events, the same ids
    assert h.store.decisions[first.reply_id]["published"] is True


async def test_who_may_reply() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))
    refused = await h.reply("vic", "key-v")
    assert [r.code for r in refused.decision.reasons] == ["ROLE_FORBIDDEN"]
    [rejected] = h.of(ReplyRejected)
    assert rejected.requested_by == "vic"
    with pytest.raises(ConversationUnknown):
        await h.reply("stranger", "key-s")  # no role: the conversation does not exist for them
    with pytest.raises(AutomationScopeRequired):
        await h.reply("ana", "key-a", sender_type=SenderType.AUTOMATED)
    assert not h.of(ReplyApproved)


async def test_the_send_rate_is_shared_per_channel_second_and_a_limited_request_can_be_retried() -> None:
    snapshot = channel().model_copy(update={"provider": Provider.WHATSAPP, "status": ChannelStatus.ACTIVE})
    h = Harness(snapshot=snapshot, whatsapp_throughput=1)
    wa = message(1).model_copy(update={"provider": Provider.WHATSAPP, "conversation_key": "wa:15551234567"})
    await h.service.on_inbound(wa)
    assert (await h.reply("ana", "key-1")).decision.approved
    limited = await h.reply("ana", "key-2")
    assert [r.code for r in limited.decision.reasons] == ["RATE_LIMITED"]
    assert limited.retry_after_s is not None and 0 < limited.retry_after_s <= 1
    assert limited.reply_id not in h.store.decisions  # not recorded: the same key may try again
    h.now += timedelta(seconds=1)
    assert (await h.reply("ana", "key-2")).decision.approved


async def test_window_notices_go_out_once_each_across_sweeps() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))
    h.now = message(1).provider_timestamp + timedelta(hours=23, minutes=30)
    assert await h.service.sweep_windows(timedelta(hours=1)) == 1
    assert await h.service.sweep_windows(timedelta(hours=1)) == 0  # a second replica, or a rerun
    h.now = message(1).provider_timestamp + timedelta(hours=24, seconds=1)
    await h.service.sweep_windows(timedelta(hours=1))
    assert len(h.of(ReplyWindowClosing)) == 1
    assert len(h.of(ReplyWindowClosed)) == 1


def thread_control(parley_active: bool, at_minutes: int) -> ConversationThreadControlChanged:
    return ConversationThreadControlChanged(
        event_id=f"cev_tc_{at_minutes}",
        conversation_id="conv_1",
        tenant_id="ten_acme",
        channel_id="chn_1",
        sequence=10 + at_minutes,
        occurred_at=T0 + timedelta(minutes=at_minutes),
        parley_active=parley_active,
        reason=ThreadControlReason.TAKEN if not parley_active else ThreadControlReason.PASSED,
    )


async def test_a_reply_waits_for_thread_control_routing_announces() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))

    await h.service.on_thread_control(thread_control(False, 1))
    refused = await h.reply("ana", "k1")
    await h.service.on_thread_control(thread_control(True, 2))
    approved = await h.reply("ana", "k2")

    assert [r.code for r in refused.decision.reasons] == ["NOT_THREAD_OWNER"]
    assert approved.decision.approved


async def test_an_older_thread_control_change_does_not_undo_a_newer_one() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))

    await h.service.on_thread_control(thread_control(True, 3))
    await h.service.on_thread_control(thread_control(False, 2))  # delivered late

    assert (await h.reply("ana", "k1")).decision.approved


class ThreadCalls:
    """The delivery side's thread-control call, recorded; ``refuse`` makes the provider say no."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ThreadRef, bool]] = []
        self.refuse: ProviderError | None = None

    async def __call__(self, channel_id: str, thread: ThreadRef, take: bool) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append((channel_id, thread, take))


def with_thread_calls() -> tuple[Harness, ThreadCalls]:
    h = Harness()
    calls = ThreadCalls()
    h.service.change_thread_control = calls
    return h, calls


async def test_a_contributor_takes_a_thread_and_may_reply_at_once() -> None:
    h, calls = with_thread_calls()
    await h.service.on_inbound(message(1))
    await h.service.on_thread_control(thread_control(False, 1))

    assert await h.service.thread_control("ten_acme", "ana", False, "conv_1", True) is True

    assert calls.calls == [("chn_1", ThreadRef(Provider.MESSENGER, message(1).account_id, CUSTOMER_ID), True)]
    [taken] = h.of(ThreadControlTaken)
    assert (taken.conversation_id, taken.actor_id, taken.occurred_at) == ("conv_1", "ana", h.now)
    assert (await h.reply("ana", "k1")).decision.approved


async def test_a_release_is_audited_and_refuses_replies_until_the_thread_comes_back() -> None:
    h, calls = with_thread_calls()
    await h.service.on_inbound(message(1))

    assert await h.service.thread_control("ten_acme", "ana", False, "conv_1", False) is False

    assert [take for _, _, take in calls.calls] == [False]
    [released] = h.of(ThreadControlReleased)
    assert released.actor_id == "ana"
    assert [r.code for r in (await h.reply("ana", "k1")).decision.reasons] == ["NOT_THREAD_OWNER"]


async def test_a_viewer_may_not_take_a_thread_and_a_stranger_does_not_see_it() -> None:
    h, calls = with_thread_calls()
    await h.service.on_inbound(message(1))

    with pytest.raises(ThreadControlForbidden):
        await h.service.thread_control("ten_acme", "vic", False, "conv_1", True)
    with pytest.raises(ConversationUnknown):
        await h.service.thread_control("ten_acme", "nobody", False, "conv_1", True)
    assert calls.calls == []
    assert h.of(ThreadControlTaken) == []


async def test_a_take_the_provider_refuses_changes_nothing() -> None:
    h, calls = with_thread_calls()
    await h.service.on_inbound(message(1))
    await h.service.on_thread_control(thread_control(False, 1))
    calls.refuse = ProviderError("meta", 400, 100, None, "refused", ErrorKind.INVALID_REQUEST)

    with pytest.raises(ProviderError):
        await h.service.thread_control("ten_acme", "ana", False, "conv_1", True)

    assert h.of(ThreadControlTaken) == []
    assert [r.code for r in (await h.reply("ana", "k1")).decision.reasons] == ["NOT_THREAD_OWNER"]


async def test_without_a_thread_control_call_the_provider_has_none() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))

    with pytest.raises(ThreadControlUnsupported):
        await h.service.thread_control("ten_acme", "ana", False, "conv_1", True)


# --- Meta's rates per account (Messenger Platform rate limiting) -------------------------------


@pytest.mark.parametrize("provider", [Provider.MESSENGER, Provider.INSTAGRAM])
async def test_the_300th_text_reply_in_a_second_passes_and_the_301st_waits_for_the_next(
    provider: Provider,
) -> None:
    snapshot = channel().model_copy(update={"provider": provider, "status": ChannelStatus.ACTIVE})
    h = Harness(snapshot=snapshot)
    await h.service.on_inbound(message(1).model_copy(update={"provider": provider}))
    h.now = h.now.replace(microsecond=250_000)

    for n in range(300):
        assert (await h.reply("ana", f"k{n}", "hi")).decision.approved, n
    limited = await h.reply("ana", "k300", "hi")

    assert [r.code for r in limited.decision.reasons] == ["RATE_LIMITED"]
    assert "300 per second" in limited.decision.reasons[0].message
    assert limited.retry_after_s == 0.75
    h.now += timedelta(seconds=1)
    assert (await h.reply("ana", "k300", "hi")).decision.approved


@pytest.mark.parametrize("provider", [Provider.MESSENGER, Provider.INSTAGRAM])
async def test_the_750th_private_reply_in_an_hour_passes_and_the_751st_waits_for_the_next_hour(
    provider: Provider,
) -> None:
    h = Harness(snapshot=channel().model_copy(update={"provider": provider}))
    for n in range(1, 752):
        await h.service.on_inbound(
            message(n).model_copy(update={"kind": MessageKind.COMMENT, "provider": provider})
        )
    await h.service.on_inbound(message(1000).model_copy(update={"provider": provider}))  # and a DM
    h.now = T0 + timedelta(minutes=5)  # T0 is 12:00: the hour ends at 13:00

    for n in range(1, 751):
        outcome = await h.reply("ana", f"k{n}", "We sent you a DM", kind="private_reply", comment_id=f"m_{n}")
        assert outcome.decision.approved, (n, outcome.decision.reasons)
    limited = await h.reply("ana", "k751", "We sent you a DM", kind="private_reply", comment_id="m_751")

    assert [r.code for r in limited.decision.reasons] == ["RATE_LIMITED"]
    assert "(750)" in limited.decision.reasons[0].message
    assert limited.retry_after_s == 55 * 60
    # direct messages have their own budget
    assert (await h.reply("ana", "direct", "Hello")).decision.approved
    h.now = T0 + timedelta(hours=1)
    again = await h.reply("ana", "k751", "We sent you a DM", kind="private_reply", comment_id="m_751")
    assert again.decision.approved, again.decision.reasons


def test_meta_counts_audio_and_video_sends_apart_from_text() -> None:
    for provider in (Provider.MESSENGER, Provider.INSTAGRAM):
        rule = rule_for(provider, "direct")
        assert (rule.rate_per_second, rule.media_rate_per_second) == (300, 10)
        assert rule_for(provider, "private_reply").rate_per_hour == 750


@pytest.mark.parametrize("provider", [Provider.MESSENGER, Provider.INSTAGRAM])
async def test_two_requests_for_one_comments_private_reply_before_either_is_sent_approve_one(
    provider: Provider,
) -> None:
    h = Harness(snapshot=channel().model_copy(update={"provider": provider}))
    await h.service.on_inbound(
        message(1).model_copy(update={"kind": MessageKind.COMMENT, "provider": provider})
    )
    first = await h.reply("ana", "k1", "We sent you a DM", kind="private_reply", comment_id="m_1")
    # nothing is delivered yet, so the conversation does not show the comment answered: the
    # store's claim refuses the second request all the same
    second = await h.reply("ana", "k2", "Us too", kind="private_reply", comment_id="m_1")
    assert first.decision.approved
    assert [r.code for r in second.decision.reasons] == ["PRIVATE_REPLY_USED"]
    assert second.retry_after_s is None  # waiting does not help
    [rejected] = h.of(ReplyRejected)
    assert rejected.reasons[0].code == "PRIVATE_REPLY_USED"
    again = await h.reply("ana", "k1", "We sent you a DM", kind="private_reply", comment_id="m_1")
    assert (again.reply_id, again.decision.approved) == (first.reply_id, True)  # the retry of the first
