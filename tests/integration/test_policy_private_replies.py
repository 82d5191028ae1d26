"""One private reply per comment across policy replicas: two services, each on its own connection
to the same store, race for one comment's private reply (Messenger and Instagram alike)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import (
    Author,
    ChannelRole,
    ChannelSnapshot,
    ChannelStatus,
    Content,
    Direction,
    MessageKind,
    MessageReceived,
    Provider,
)
from parley_policy.domain.decision import ReplyRequest
from parley_policy.service import PolicyService

from tests.support.policy import policy_stores

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RACERS = 6


def snapshot(provider: Provider) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id=f"ch-{provider.value}",
        tenant_id="t",
        provider=provider,
        account_id=f"acct-{provider.value}",
        status=ChannelStatus.ACTIVE,
        revision=1,
    )


def comment(provider: Provider) -> MessageReceived:
    return MessageReceived(
        event_id=f"msg-{provider.value}",
        tenant_id="t",
        channel_id=f"ch-{provider.value}",
        provider=provider,
        account_id=f"acct-{provider.value}",
        conversation_id=f"conv-{provider.value}",
        conversation_key="dm:customer-1",
        direction=Direction.INBOUND,
        author=Author(id="customer-1"),
        content=Content(text="How much is it?"),
        kind=MessageKind.COMMENT,
        provider_message_id=f"comment-{provider.value}",
        provider_timestamp=T0,
        delivery_id="d",
    )


async def race_for_one_comment(store_url: str) -> None:
    async def publish(event: Any, _id: str) -> None:
        return None

    channels = {c.channel_id: c for c in map(snapshot, (Provider.MESSENGER, Provider.INSTAGRAM))}
    async with policy_stores(store_url) as (first, _), policy_stores(store_url) as (second, _):
        replicas = [
            PolicyService(
                store,
                channels.get,
                lambda *_: ChannelRole.CONTRIBUTOR,
                lambda _cid: {},
                publish,
                clock=lambda: T0 + timedelta(days=7) - timedelta(seconds=1),
            )
            for store in (first, second)
        ]
        for provider in (Provider.MESSENGER, Provider.INSTAGRAM):
            await replicas[0].on_inbound(comment(provider))
            request = ReplyRequest(
                kind="private_reply", text="We sent you a DM", comment_id=f"comment-{provider.value}"
            )
            racing = await asyncio.gather(
                *(
                    replicas[n % 2].request_reply(
                        "t", f"agent-{n}", False, f"conv-{provider.value}", request, f"key-{n}"
                    )
                    for n in range(RACERS)
                )
            )
            approved = [o for o in racing if o.decision.approved]
            assert len(approved) == 1, provider
            refused = [[r.code for r in o.decision.reasons] for o in racing if not o.decision.approved]
            assert refused == [["PRIVATE_REPLY_USED"]] * (RACERS - 1)
            # the winner's retry, on the other replica, still holds it
            winner = racing.index(approved[0])
            again = await replicas[(winner + 1) % 2].request_reply(
                "t", f"agent-{winner}", False, f"conv-{provider.value}", request, f"key-{winner}"
            )
            assert (again.reply_id, again.decision.approved) == (approved[0].reply_id, True)


async def test_racing_replicas_approve_one_private_reply_per_comment_on_postgresql(store_url: str) -> None:
    await race_for_one_comment(store_url)


@pytest.mark.mongodb
async def test_racing_replicas_approve_one_private_reply_per_comment_on_mongodb(store_url: str) -> None:
    await race_for_one_comment(store_url)
