"""X user tokens kept fresh by onboarding, against the real broker and store and the provider sandbox
served over HTTP (whose access tokens end after X's two hours on its own clock, and whose refresh
tokens work once): a handle whose token ended is refreshed and a DM goes out again on the stored
credential, exactly as policy sends it; two onboarding replicas refreshing at once spend the
refresh token once; a grant the user revoked gives one reauth_required, with X's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from parley_events import ChannelStatus, ChannelTokenRefreshRequested, Provider, ReplyApproved, topics
from parley_onboarding.service import OnboardingService
from parley_providers import ErrorKind, ProviderError, registry
from parley_providers.base import Sender

from tests.conftest import Infra
from tests.support.kafka import eventually, publish_events
from tests.support.onboarding import TENANT, X_REDIRECT, Stack, of_type, onboarding_stack

pytestmark = pytest.mark.integration

HANDLE = "1500000000000000001"
CUSTOMER = "1500000000000000777"
TOKEN_ENDPOINT = "/2/oauth2/token"
REAUTH = "parley.channel.reauth_required.v1"
PAST_ITS_END = 2 * 3600 + 60  # X's access tokens live two hours


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    async with onboarding_stack(infra, namespace, store_url) as s:
        yield s


async def connect(stack: Stack) -> dict[str, Any]:
    code, verifier = await stack.x_code(HANDLE, "acme")
    await stack.sandbox_admin("POST", "/x/users", {"id": CUSTOMER, "username": "customer"})
    body = {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    return dict(await stack.call("POST", "/connections/x", body))


def later(stack: Stack, seconds: int) -> None:
    """Time passes for X (the sandbox's clock) and for onboarding alike. A token X issues after this
    still gets its end from the wall clock (``expires_in`` added to now), so to the moved clock of
    onboarding it is due at once: a replica coming late may refresh again, with the new token.
    What must never happen is one refresh token offered to X twice."""
    stack.sandbox.advance(seconds)
    stack.clock.advance(seconds=seconds)


def spent(stack: Stack) -> list[str]:
    """Every refresh token X was asked to spend, in order (the recorder keeps each request body)."""
    from urllib.parse import parse_qs

    bodies = [parse_qs(r.body.decode()) for r in stack.recorder.matching(TOKEN_ENDPOINT)]
    return [b["refresh_token"][0] for b in bodies if b.get("grant_type") == ["refresh_token"]]


def refreshes(stack: Stack) -> list[int]:
    """The status of every refresh-token grant X was asked for (the token endpoint's calls after
    the connect's code exchange)."""
    return [c.status for c in stack.sandbox.calls if c.path == TOKEN_ENDPOINT][1:]


async def send_dm(stack: Stack, sender: Sender, channel_id: str, text: str) -> str:
    """A DM to the customer on the channel's stored credential, through X's sender as policy does."""
    credential = await stack.service.stores.credential(channel_id)
    assert credential is not None
    reply = ReplyApproved(
        event_id=f"rep-{text}:approved",
        reply_id=f"rep-{text}",
        conversation_id="conv-1",
        tenant_id=TENANT,
        channel_id=channel_id,
        sender_type="human",
        agent_id="usr-agent",
        requested_by="usr-agent",
        occurred_at=datetime.now(UTC),
        provider=Provider.X,
        account_id=HANDLE,
        kind="dm",
        recipient_id=CUSTOMER,
        text=text,
    )
    return await sender.send(reply, credential.access_token)


def replica(stack: Stack) -> OnboardingService:
    """A second onboarding replica: its own service object on the same store and provider."""
    service = stack.service
    return OnboardingService(service.stores, service.connectors, service.publish, stack.settings, stack.clock)


async def test_a_handle_whose_token_ended_is_refreshed_and_a_dm_goes_out_again(stack: Stack) -> None:
    channel = await connect(stack)
    async with httpx.AsyncClient(timeout=10) as http:
        sender = registry.senders(http, stack.settings)[Provider.X]
        assert await send_dm(stack, sender, channel["id"], "hello")
        held = await stack.service.stores.credential(channel["id"])
        assert held is not None and held.refresh_token

        later(stack, PAST_ITS_END)
        with pytest.raises(ProviderError) as refused:
            await send_dm(stack, sender, channel["id"], "stale")
        assert (refused.value.status, refused.value.kind) == (401, ErrorKind.REAUTH_REQUIRED)

        assert await stack.service.refresh_rotating_tokens() == 1
        assert refreshes(stack) == [200]
        fresh = await stack.service.stores.credential(channel["id"])
        assert fresh is not None and fresh.refresh_token not in (None, held.refresh_token)
        assert fresh.access_token != held.access_token
        assert await send_dm(stack, sender, channel["id"], "after the refresh")
        stored = await stack.call("GET", f"/channels/{channel['id']}")
        assert stored["status"] == "active"
        assert fresh.expires_at is not None
        ends = datetime.fromisoformat(stored["token_expires_at"])
        assert abs(ends - fresh.expires_at) < timedelta(seconds=1)

        # and it stays fresh: the next one is refreshed with the token X gave last
        later(stack, PAST_ITS_END)
        assert await stack.service.refresh_rotating_tokens() == 1
        assert refreshes(stack) == [200, 200]
        assert await send_dm(stack, sender, channel["id"], "two refreshes on")


async def test_two_replicas_refreshing_at_once_spend_the_refresh_token_once(stack: Stack) -> None:
    await two_replicas_race(stack)


@pytest.mark.mongodb
async def test_two_replicas_on_mongodb_spend_the_refresh_token_once(stack: Stack) -> None:
    """The same race on the MongoDB adapter (FerretDB here): its claim is a unique ``_id`` insert."""
    await two_replicas_race(stack)


async def two_replicas_race(stack: Stack) -> None:
    channel = await connect(stack)
    held = await stack.service.stores.credential(channel["id"])
    assert held is not None
    later(stack, PAST_ITS_END)
    other = replica(stack)
    done = await asyncio.gather(
        stack.service.refresh_rotating_tokens(),
        other.refresh_rotating_tokens(),
        other.refresh_channel_token(channel["id"]),
        stack.service.refresh_channel_token(channel["id"]),
    )
    assert sum(int(d) for d in done) >= 1
    # no refresh token was offered to X twice (X would refuse the second: 400), none was refused
    assert len(spent(stack)) == len(set(spent(stack))) >= 1
    assert held.refresh_token in spent(stack) and 400 not in refreshes(stack)
    assert (await stack.call("GET", f"/channels/{channel['id']}"))["status"] == "active"
    assert of_type(await stack.events(topics.CHANNEL_EVENTS), REAUTH) == []
    fresh = await stack.service.stores.credential(channel["id"])
    assert fresh is not None and fresh.refresh_token != held.refresh_token


async def test_a_revoked_grant_gives_one_reauth_required_with_x_s_reason(stack: Stack) -> None:
    channel = await connect(stack)
    await stack.sandbox_admin("POST", f"/x/users/{HANDLE}/revoke")  # the user removed the app
    later(stack, PAST_ITS_END)
    other = replica(stack)
    await asyncio.gather(stack.service.refresh_rotating_tokens(), other.refresh_rotating_tokens())
    await stack.service.refresh_rotating_tokens()  # the next run, too, leaves it alone
    assert refreshes(stack) == [400]
    stored = await stack.call("GET", f"/channels/{channel['id']}")
    assert stored["status"] == ChannelStatus.REAUTH_REQUIRED.value
    [reauth] = of_type(await stack.events(topics.CHANNEL_EVENTS), REAUTH, channel_id=channel["id"])
    assert (reauth["reason"], reauth["provider_code"], reauth["provider"]) == (
        "refresh_token_invalid",
        None,
        "x",
    )


async def test_a_send_s_request_on_the_bus_has_onboarding_refresh_the_token_at_once(stack: Stack) -> None:
    """What policy publishes when a send finds the token past its end (onboarding's job has not
    run): onboarding's subscriber refreshes it through the same claim, once for two requests."""
    channel = await connect(stack)
    held = await stack.service.stores.credential(channel["id"])
    assert held is not None and held.expires_at is not None
    later(stack, PAST_ITS_END)
    requests = [
        ChannelTokenRefreshRequested(
            event_id=f"rpl_{n}:refresh",
            channel_id=channel["id"],
            tenant_id=TENANT,
            provider=Provider.X,
            occurred_at=datetime.now(UTC),
            reply_id=f"rpl_{n}",
            expired_at=held.expires_at,
        )
        for n in (1, 2)
    ]
    await publish_events(stack.infra.kafka, stack.namespace, *requests, source="/parley/policy")

    async def refreshed() -> bool:
        fresh = await stack.service.stores.credential(channel["id"])
        return fresh is not None and fresh.refresh_token != held.refresh_token

    await eventually(refreshed, timeout=60)
    assert spent(stack)[0] == held.refresh_token
    assert len(spent(stack)) == len(set(spent(stack))) and 400 not in refreshes(stack)
    async with httpx.AsyncClient(timeout=10) as http:
        sender = registry.senders(http, stack.settings)[Provider.X]
        assert await send_dm(stack, sender, channel["id"], "on the refreshed token")
