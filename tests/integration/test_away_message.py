"""The away message on the real broker and store, sent through policy to the provider sandbox.

A customer writes to a channel out of its business hours: routing finds the away message due,
policy decides it like any automation's reply and the sandbox receives it once. A second message
in the same closed period gets none; a message to a channel in its hours gets none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import BusinessHours, Provider, topics
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.policy import JWT, Sandbox, channel, inbound, of_type, policy_stack

pytestmark = pytest.mark.integration

CLOSED_PAGE, OPEN_PAGE = "104500000000101", "104500000000102"
PSID_A, PSID_B = "2400000000000101", "2400000000000102"
AWAY = "Thanks for your message. We are back on Monday at nine."
ADDED = "parley.conversation.message_added.v1"
DUE = "parley.conversation.away_message_due.v1"
SENT = "parley.reply.sent.v1"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def test_an_away_message_goes_out_once_outside_hours_and_never_inside_them(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    # open one whole day, three days from now: closed at t0 and for the test's minutes after it
    open_day = DAYS[(t0 + timedelta(days=3)).weekday()]
    closed_now = BusinessHours.model_validate(
        {"time_zone": "UTC", "intervals": [{"day": open_day, "start": "00:00", "end": "24:00"}]}
    )
    always = BusinessHours.model_validate(
        {"time_zone": "UTC", "intervals": [{"day": d, "start": "00:00", "end": "24:00"} for d in DAYS]}
    )
    closed = channel(
        "ch-closed", Provider.MESSENGER, CLOSED_PAGE, business_hours=closed_now, away_message=AWAY
    )
    open_ = channel("ch-open", Provider.MESSENGER, OPEN_PAGE, business_hours=always, away_message=AWAY)

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(closed, await sandbox.page(CLOSED_PAGE)), (open_, await sandbox.page(OPEN_PAGE))]

    routing_settings = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
    )
    async with (
        policy_stack(infra, namespace, store_url, setup, now=t0) as stack,
        running(create_routing_app(routing_settings, clock=stack.clock)),
    ):
        # out of hours: one away message, sent to the customer as an automation's reply
        await stack.customer_message(inbound(closed, "conv-a", PSID_A, t0))
        replies = await stack.events(topics.REPLIES, lambda es: bool(of_type(es, SENT)), timeout=60)
        [sent] = of_type(replies, SENT)
        assert (sent["conversation_id"], sent["sender_type"], sent["agent_id"]) == (
            "conv-a",
            "automated",
            None,
        )
        assert (sent["requested_by"], sent["text"]) == ("parley:away-message", AWAY)
        [call] = await stack.sandbox.accepted(f"/{CLOSED_PAGE}/messages")
        assert call["body"]["recipient"] == {"id": PSID_A}
        assert call["body"]["message"] == {"text": AWAY}

        # the same closed period: routing records the message and asks for nothing
        stack.clock.advance(minutes=2)
        await stack.customer_message(inbound(closed, "conv-a", PSID_A, t0 + timedelta(minutes=2), n=2))
        # in hours: nothing either
        await stack.customer_message(inbound(open_, "conv-b", PSID_B, t0 + timedelta(minutes=2)))

        def recorded(events: list[dict[str, Any]]) -> bool:
            added = of_type(events, ADDED)
            return {(e["conversation_id"], e["message_event_id"]) for e in added} >= {
                ("conv-a", "msg_conv-a_2"),
                ("conv-b", "msg_conv-b_1"),
            }

        conversations = await stack.events(topics.CONVERSATIONS, recorded, timeout=60)
        # routing asks in the same change that records the message: none later can appear
        [due] = of_type(conversations, DUE)
        assert (due["conversation_id"], due["message_event_id"], due["text"]) == (
            "conv-a",
            "msg_conv-a_1",
            AWAY,
        )
        assert due["opens_at"] is not None
        assert await stack.sandbox.accepted(f"/{OPEN_PAGE}/messages") == []
        assert len(await stack.sandbox.accepted(f"/{CLOSED_PAGE}/messages")) == 1
