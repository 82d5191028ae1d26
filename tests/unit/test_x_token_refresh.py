"""X user tokens: X's refresh rule (lead time, the token's end), and onboarding's refresh of them on
its fake store and connector: due tokens refreshed and not before, a refresh token spent once by
replicas racing for it, a holder that stopped taken over after the lease, an outage given back, a
refusal announced once; and X's subscription check announcing a gap once and its end."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from parley_events import (
    ChannelReauthRequired,
    ChannelSnapshot,
    ChannelStatus,
    ChannelSubscriptionLost,
    ChannelSubscriptionRepaired,
    ChannelTokenExpiring,
    ChannelTokenRefreshRequested,
    Event,
    Provider,
    ReplyApproved,
    ReplyFailed,
    ReplySent,
    SenderType,
)
from parley_onboarding.domain.channels import Channel
from parley_onboarding.entrypoints.subscribers import onboarding_router
from parley_onboarding.service import REFRESH_LEASE, OnboardingService
from parley_policy.domain.retry import RetryBudget
from parley_policy.service import Delivery
from parley_providers import ErrorKind, ProviderError
from parley_providers.base import RefreshStep, RotatingGrant
from parley_providers.oauth import UserToken
from parley_providers.x.connect import ACCESS_TOKEN_LIFETIME, XConnector, refresh_step, refusal_reason
from parley_shared.vault import Credential

from tests.support.fakes.bus import FakePublisher, on_test_broker
from tests.support.fakes.onboarding import FakeAccountConnector, refused
from tests.support.fakes.policy import FakeCredentials, FakePolicyStore
from tests.unit.factories import T0
from tests.unit.test_onboarding_service import ACME, ADMIN, REDIRECT, Harness

pytestmark = pytest.mark.unit

LEAD = timedelta(minutes=30)  # the setting's default
END = T0 + ACCESS_TOKEN_LIFETIME


# --- X's rule --------------------------------------------------------------------------------------


def test_a_token_is_refreshed_from_the_lead_before_its_end_and_after_it_never_replaced() -> None:
    assert refresh_step(END, END - LEAD - timedelta(microseconds=1), LEAD) is RefreshStep.WAIT
    assert refresh_step(END, END - LEAD, LEAD) is RefreshStep.REFRESH
    assert refresh_step(END, END, LEAD) is RefreshStep.REFRESH
    # past its end the refresh token still works: only X's refusal says a reconnect is needed
    assert refresh_step(END, END + timedelta(days=30), LEAD) is RefreshStep.REFRESH


def test_x_s_refusals_give_fixed_reasons_never_its_text() -> None:
    assert refusal_reason("invalid_request") == "refresh_token_invalid"  # used or revoked
    assert refusal_reason("invalid_grant") == "grant_revoked"
    assert refusal_reason(None) == refusal_reason("something new") == "refresh_refused"


def test_x_s_connector_rotates_grants_and_meta_s_login_connector_does_not_pass_for_one() -> None:
    from parley_providers.meta.connect import MetaInstagramConnector

    assert issubclass(XConnector, RotatingGrant)
    assert not issubclass(MetaInstagramConnector, RotatingGrant)


# --- onboarding's refresh ----------------------------------------------------------------------------


async def x_channel(h: Harness, refresh: str | None = "refresh-1") -> Channel:
    token = {"expires_at": END, "refresh_token": refresh, "scopes": ("dm.read", "offline.access")}
    h.accounts.authorizes("code", "42", "acme", **token)
    return await h.service.connect_x(ACME, ADMIN, "code", REDIRECT, "verifier")


def renewed(n: int, at: object = END) -> UserToken:
    assert isinstance(at, type(END))
    return UserToken(f"tok-{n}", at + ACCESS_TOKEN_LIFETIME, f"refresh-{n}", ("dm.read", "offline.access"))


def digest(refresh: str) -> str:
    return hashlib.sha256(refresh.encode()).hexdigest()[:32]


async def test_a_due_token_is_refreshed_and_the_next_refresh_token_replaces_the_spent_one() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.now = END - LEAD - timedelta(seconds=1)
    assert await h.service.refresh_rotating_tokens() == 0
    assert h.accounts.made("refresh_grant") == []
    h.now = END - LEAD
    h.accounts.grants["refresh-1"] = renewed(2, h.now)
    assert await h.service.refresh_rotating_tokens() == 1
    assert h.accounts.made("refresh_grant") == [("refresh-1",)]
    credential = h.store.credentials[channel.id]
    assert (credential.access_token, credential.refresh_token, credential.expires_at) == (
        "tok-2",
        "refresh-2",
        h.now + ACCESS_TOKEN_LIFETIME,
    )
    stored = await h.service.channel(ACME, channel.id)
    assert (stored.status, stored.token_expires_at) == (ChannelStatus.ACTIVE, credential.expires_at)
    assert h.of(ChannelSnapshot)[-1].revision == stored.revision
    # refreshed: not due again until the lead before its new end
    assert await h.service.refresh_rotating_tokens() == 0
    assert len(h.accounts.made("refresh_grant")) == 1


async def test_two_replicas_refreshing_at_once_spend_the_refresh_token_once() -> None:
    h = Harness()
    channel = await x_channel(h)
    other = OnboardingService(
        h.store, {p: c for p, c in h.service.connectors.items()}, h.publish, h.settings, lambda: h.now
    )
    h.now = END - timedelta(minutes=5)
    h.accounts.grants["refresh-1"] = renewed(2, h.now)
    results = await asyncio.gather(
        h.service.refresh_rotating_tokens(),
        other.refresh_rotating_tokens(),
        h.service.refresh_channel_token(channel.id),
    )
    assert sum(int(r) for r in results) == 1
    assert h.accounts.made("refresh_grant") == [("refresh-1",)]
    assert h.store.credentials[channel.id].refresh_token == "refresh-2"
    assert h.of(ChannelReauthRequired) == []


async def test_a_reconnect_while_a_refresh_is_on_its_way_keeps_the_reconnect_s_grant() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.now = END - timedelta(minutes=5)
    h.accounts.grants["refresh-1"] = renewed(2, h.now)
    h.accounts.authorizes(
        "code-2", "42", "acme", expires_at=END + LEAD, refresh_token="refresh-new", scopes=("dm.read",)
    )
    spend = h.accounts.refresh_grant

    async def reconnected_meanwhile(refresh_token: str) -> UserToken:
        token = await spend(refresh_token)
        await h.service.connect_x(ACME, ADMIN, "code-2", REDIRECT, "verifier")  # the admin reconnects
        return token

    h.accounts.refresh_grant = reconnected_meanwhile  # type: ignore[method-assign]

    assert await h.service.refresh_rotating_tokens() == 0
    credential = h.store.credentials[channel.id]
    assert (credential.access_token, credential.refresh_token) != ("tok-2", "refresh-2")
    assert credential.refresh_token == "refresh-new"
    stored = await h.service.channel(ACME, channel.id)
    assert stored.token_expires_at == END + LEAD  # the reconnect's end, not the refresh's
    assert h.of(ChannelSnapshot)[-1].revision == stored.revision
    # the reconnect's grant is the one refreshed next
    h.accounts.grants["refresh-new"] = renewed(3, h.now)
    h.accounts.refresh_grant = spend  # type: ignore[method-assign]
    h.now = END + LEAD - timedelta(minutes=1)
    assert await h.service.refresh_rotating_tokens() == 1
    assert h.store.credentials[channel.id].refresh_token == "refresh-3"


async def test_a_claim_whose_holder_stopped_is_taken_over_after_the_lease_and_not_before() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.now = END - timedelta(minutes=5)
    held = h.now - REFRESH_LEASE + timedelta(seconds=1)  # a replica claimed it and is still busy
    h.store.refresh_claims[(channel.id, digest("refresh-1"), 0)] = held
    h.accounts.grants["refresh-1"] = renewed(2, h.now)
    assert await h.service.refresh_rotating_tokens() == 0
    assert h.accounts.made("refresh_grant") == []
    h.now = held + REFRESH_LEASE  # that replica stopped: one other takes the token over
    assert await h.service.refresh_rotating_tokens() == 1
    assert (channel.id, digest("refresh-1"), 1) in h.store.refresh_claims


async def test_an_outage_gives_the_token_back_and_no_answer_keeps_it_claimed_for_the_lease() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.now = END - timedelta(minutes=5)
    h.accounts.grants["refresh-1"] = renewed(2, h.now)
    h.accounts.fail("refresh_grant", refused("x", 503, None, ErrorKind.RETRYABLE))
    assert await h.service.refresh_rotating_tokens() == 0
    assert h.store.refresh_claims == {}  # X answered without taking it: given back
    h.accounts.fail("refresh_grant", ProviderError("x", 0, None, None, "timed out", ErrorKind.RETRYABLE))
    assert await h.service.refresh_rotating_tokens() == 0
    assert list(h.store.refresh_claims) == [(channel.id, digest("refresh-1"), 0)]  # may be spent
    assert await h.service.refresh_rotating_tokens() == 0  # within the lease: nobody tries it
    h.now += REFRESH_LEASE
    assert await h.service.refresh_rotating_tokens() == 1
    assert h.of(ChannelReauthRequired) == []
    assert [c for c in h.accounts.made("refresh_grant")] == [("refresh-1",)] * 3


async def test_a_refused_refresh_token_is_announced_once_with_x_s_reason() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.now = END + timedelta(minutes=1)  # the access token has ended; its refresh token was revoked
    assert await h.service.refresh_rotating_tokens() == 0
    [reauth] = h.of(ChannelReauthRequired)
    assert (reauth.channel_id, reauth.reason, reauth.provider_code) == (
        channel.id,
        "refresh_token_invalid",
        None,
    )
    assert (await h.service.channel(ACME, channel.id)).status is ChannelStatus.REAUTH_REQUIRED
    # the next runs, and a send that finds it expired, leave a channel awaiting a reconnect alone
    assert await h.service.refresh_rotating_tokens() == 0
    assert await h.service.refresh_channel_token(channel.id) is False
    assert len(h.accounts.made("refresh_grant")) == 1
    assert len(h.of(ChannelReauthRequired)) == 1


async def test_a_grant_without_a_refresh_token_is_not_refreshed() -> None:
    h = Harness()
    await x_channel(h, refresh=None)
    h.now = END
    assert await h.service.refresh_rotating_tokens() == 0
    assert h.accounts.made("refresh_grant") == [] and h.of(ChannelReauthRequired) == []


async def test_old_claims_are_pruned_after_a_day() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.store.refresh_claims[(channel.id, "spent-long-ago", 0)] = T0 - timedelta(days=1, seconds=1)
    h.store.refresh_claims[(channel.id, "spent-recently", 0)] = T0 - timedelta(hours=23)
    await h.service.refresh_rotating_tokens()
    assert [key[1] for key in h.store.refresh_claims] == ["spent-recently"]


# --- X's subscription check: a gap announced once ------------------------------------------------


async def test_a_subscription_gap_is_announced_once_while_it_lasts_and_its_end_is_announced() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.accounts.refusing["42"] = "permission_missing"
    for _ in range(3):  # three hourly checks during the gap
        h.accounts.lacking["42"] = ("dm.received",)
        assert await h.service.check_kept_subscriptions() == 1
    [lost] = h.of(ChannelSubscriptionLost)
    assert (lost.channel_id, lost.missing, lost.reason) == (channel.id, ["dm.received"], "permission_missing")
    assert h.store.channels[channel.id].subscription_gap == ("dm.received",)
    # X takes the subscription again (the permission was granted back): the gap's end is announced
    del h.accounts.refusing["42"]
    h.accounts.lacking["42"] = ("dm.received",)
    assert await h.service.check_kept_subscriptions() == 1
    [repaired] = h.of(ChannelSubscriptionRepaired)
    assert (repaired.channel_id, repaired.restored) == (channel.id, ["dm.received"])
    assert h.store.channels[channel.id].subscription_gap == ()
    # complete from then on: nothing more; a new gap is announced again
    assert await h.service.check_kept_subscriptions() == 1
    assert len(h.of(ChannelSubscriptionLost)) == 1 and len(h.of(ChannelSubscriptionRepaired)) == 1
    h.accounts.refusing["42"] = "reauth_required"
    h.accounts.lacking["42"] = ("dm.sent",)
    assert await h.service.check_kept_subscriptions() == 1
    assert [e.missing for e in h.of(ChannelSubscriptionLost)] == [["dm.received"], ["dm.sent"]]
    # every announcement is a new revision, with its snapshot
    assert h.of(ChannelSnapshot)[-1].revision == h.store.channels[channel.id].revision


async def test_a_gap_that_closes_without_a_restore_of_its_own_is_announced_as_repaired() -> None:
    h = Harness()
    channel = await x_channel(h)
    h.accounts.refusing["42"] = "provider_refused"
    h.accounts.lacking["42"] = ("chat.received",)
    await h.service.check_kept_subscriptions()
    # someone re-created it at X meanwhile: the next check finds it whole and restores nothing
    await h.service.check_kept_subscriptions()
    [repaired] = h.of(ChannelSubscriptionRepaired)
    assert (repaired.channel_id, repaired.restored) == (channel.id, ["chat.received"])


def test_the_fake_connector_keeps_x_s_rule() -> None:
    fake = FakeAccountConnector()
    for now in (END - LEAD - timedelta(seconds=1), END - LEAD, END + timedelta(hours=1)):
        assert fake.grant_refresh_step(END, now, LEAD) is refresh_step(END, now, LEAD)


# --- on demand: policy finds the token ended, onboarding refreshes it ------------------------------


class RecordingSender:
    """A sender that records the token of every send."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def send(self, reply: ReplyApproved, token: str) -> str:
        self.tokens.append(token)
        return f"dm-{len(self.tokens)}"


def x_reply() -> ReplyApproved:
    return ReplyApproved(
        event_id="rpl_x:approved",
        reply_id="rpl_x",
        conversation_id="conv-x",
        tenant_id=ACME,
        channel_id="ch-x",
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        occurred_at=END,
        provider=Provider.X,
        account_id="42",
        recipient_id="777",
        kind="dm",
        text="hello",
    )


def delivery(
    credentials: FakeCredentials, sender: RecordingSender, on_wait: Any, status: Any = lambda _c: None
) -> tuple[Delivery, list[Event]]:
    published: list[Event] = []
    elapsed = [0.0]

    async def publish(event: Event, event_id: str) -> None:
        published.append(event)

    async def sleep(seconds: float) -> None:
        elapsed[0] += seconds
        await on_wait()

    made = Delivery(
        FakePolicyStore(),
        credentials,
        {Provider.X: sender},
        publish,
        lambda: END + timedelta(minutes=1),
        RetryBudget(budget_s=60.0),
        sleep,
        lambda: elapsed[0],
        status,
    )
    return made, published


async def test_a_send_that_finds_the_token_ended_asks_onboarding_once_and_goes_out_on_the_new_one() -> None:
    credentials = FakeCredentials(Credential("ch-x", "tok-old", END, (), "refresh-1"))
    sender = RecordingSender()
    waits = 0

    async def onboarding_refreshes_after_two_waits() -> None:
        nonlocal waits
        waits += 1
        if waits == 2:
            await credentials.put(Credential("ch-x", "tok-new", END + ACCESS_TOKEN_LIFETIME, (), "refresh-2"))

    made, published = delivery(credentials, sender, onboarding_refreshes_after_two_waits)
    await made.deliver(x_reply())
    assert sender.tokens == ["tok-new"]  # never sent on the token that ended
    [request] = [e for e in published if isinstance(e, ChannelTokenRefreshRequested)]
    assert (request.channel_id, request.reply_id, request.expired_at, request.provider) == (
        "ch-x",
        "rpl_x",
        END,
        Provider.X,
    )
    assert [type(e) for e in published] == [ChannelTokenRefreshRequested, ReplySent]


async def test_a_refresh_that_never_comes_fails_the_reply_when_the_budget_is_spent() -> None:
    credentials = FakeCredentials(Credential("ch-x", "tok-old", END, (), "refresh-1"))
    sender = RecordingSender()

    async def nothing() -> None:
        return None

    made, published = delivery(credentials, sender, nothing)
    await made.deliver(x_reply())
    assert sender.tokens == []
    assert len([e for e in published if isinstance(e, ChannelTokenRefreshRequested)]) == 1
    [failed] = [e for e in published if isinstance(e, ReplyFailed)]
    assert (failed.reason, failed.error_kind) == ("retry_budget_exhausted", "retryable")


async def test_a_token_past_its_end_without_a_refresh_token_is_left_to_the_provider_to_judge() -> None:
    credentials = FakeCredentials(Credential("ch-x", "tok-old", END, ()))
    sender = RecordingSender()

    async def nothing() -> None:
        return None

    made, published = delivery(credentials, sender, nothing)
    await made.deliver(x_reply())
    assert sender.tokens == ["tok-old"]
    assert not [e for e in published if isinstance(e, ChannelTokenRefreshRequested)]


async def test_onboarding_refreshes_a_channel_when_policy_asks_on_the_bus() -> None:
    h = Harness(topic_namespace="", consumer_group_prefix="parley")
    channel = await x_channel(h)
    h.now = END + timedelta(minutes=1)
    h.accounts.grants["refresh-1"] = renewed(2, h.now)
    publisher = FakePublisher()
    router = onboarding_router(h.settings, h.service)
    request = ChannelTokenRefreshRequested(
        event_id="rpl_x:refresh",
        channel_id=channel.id,
        tenant_id=ACME,
        provider=Provider.X,
        occurred_at=h.now,
        reply_id="rpl_x",
        expired_at=END,
    )
    async with on_test_broker(router, publisher) as bus:
        await bus.publish(request)
        await bus.publish(request)  # delivered twice: the token is fresh by then, nothing more
    assert h.accounts.made("refresh_grant") == [("refresh-1",)]
    assert h.store.credentials[channel.id].access_token == "tok-2"


async def test_a_token_the_job_renews_is_never_warned_about_and_one_without_a_refresh_token_is() -> None:
    h = Harness()
    await x_channel(h)
    h.now = END - LEAD
    for n in range(2, 6):  # four refreshes, each a new end within the 7-day warning lead
        h.accounts.grants[f"refresh-{n - 1}"] = renewed(n, h.now)
        assert await h.service.refresh_rotating_tokens() == 1
        assert await h.service.check_token_expiry() == 0
        h.now += ACCESS_TOKEN_LIFETIME
    assert h.of(ChannelTokenExpiring) == []
    h.accounts.authorizes("code-2", "43", "acme2", expires_at=END)  # no offline.access
    short = await h.service.connect_x(ACME, ADMIN, "code-2", REDIRECT, "verifier")
    assert await h.service.check_token_expiry() == 1
    assert [e.channel_id for e in h.of(ChannelTokenExpiring)] == [short.id]


async def test_a_refresh_onboarding_could_not_make_fails_the_waiting_reply_as_reauth_required() -> None:
    """X refused the refresh: onboarding marked the channel reauth_required. A reply waiting for
    the refresh fails at once with that reason, not after the retry budget as retryable."""
    credentials = FakeCredentials(Credential("ch-x", "tok-old", END, (), "refresh-1"))
    sender = RecordingSender()
    status = {"ch-x": ChannelStatus.ACTIVE}
    waits = 0

    async def onboarding_is_refused() -> None:
        nonlocal waits
        waits += 1
        status["ch-x"] = ChannelStatus.REAUTH_REQUIRED

    made, published = delivery(credentials, sender, onboarding_is_refused, status.get)
    await made.deliver(x_reply())
    assert sender.tokens == []
    assert waits == 1  # one wait for the refresh, then the channel's state decides
    [failed] = [e for e in published if isinstance(e, ReplyFailed)]
    assert failed.error_kind == "reauth_required"
    assert failed.reason != "retry_budget_exhausted"
