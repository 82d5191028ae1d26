"""Mentions recorded before policy remembered them (security #13 review, P2-5), against the real store.

Policy's conversation documents written before the ``mentions`` field existed name no mention, and
nothing policy keeps says which of their posts mentioned the account. docs/policy.md's procedure
replays ``parley.messages.inbound.v1`` (7 days) through the same handler: this test shows the replay
fills the field in and changes nothing else (no window reopened, comments and private replies kept).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import Author, Content, Direction, MessageKind, MessageReceived, Provider
from parley_policy.adapters.stores import PolicyStore
from parley_shared import mongo

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def tweet(n: int, kind: MessageKind) -> MessageReceived:
    return MessageReceived(
        event_id=f"msg-{n}",
        tenant_id="t",
        channel_id="ch-x",
        provider=Provider.X,
        account_id="brand",
        conversation_id="conv-x",
        conversation_key="tweets:cust",
        direction=Direction.INBOUND,
        author=Author(id="cust"),
        content=Content(text=f"@brand {n}"),
        provider_message_id=f"17900000000000000{n:02d}",
        provider_timestamp=T0 + timedelta(minutes=n),
        delivery_id=f"d{n}",
        kind=kind,
    )


async def test_replaying_the_inbound_topic_backfills_the_mentions_of_an_older_document(
    database_url: str,
) -> None:
    client: Any = mongo.open_client(database_url)
    store = PolicyStore(mongo.database(client, database_url))
    try:
        dm = tweet(1, MessageKind.DIRECT)
        mentions = [tweet(2, MessageKind.MENTION), tweet(3, MessageKind.MENTION)]
        await store.conversations.insert_one(
            {  # as the version before the mentions field wrote it
                "_id": "conv-x",
                "tenant_id": "t",
                "channel_id": "ch-x",
                "provider": "x",
                "account_id": "brand",
                "conversation_key": "tweets:cust",
                "recipient_id": "cust",
                "last_customer_message_at": dm.provider_timestamp,
                "comments": {},
                "private_replied": ["c-1"],
            }
        )
        before = await store.conversation("conv-x")
        assert before is not None
        assert not store.facts(before).has_item(mentions[0].provider_message_id)

        # the replay, in the topic's order, twice (a replay may be run again)
        newer = [await store.record_inbound(m) for m in [dm, *mentions, dm, *mentions]]

        assert newer == [False] * 6  # no reply window opens again
        after = await store.conversation("conv-x")
        assert after is not None
        facts = store.facts(after)
        assert facts.mention_ids == {m.provider_message_id for m in mentions}
        assert after["mentions"] == [m.provider_message_id for m in mentions]
        assert facts.last_customer_message_at == dm.provider_timestamp
        assert after["private_replied"] == ["c-1"]
    finally:
        await client.drop_database(mongo.database_name(database_url))
        await client.close()
