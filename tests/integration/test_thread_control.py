"""Conversation Routing end to end against the real broker and store, with the provider sandbox:
a message Meta delivered on standby is recorded (marked) by routing, policy refuses a reply while
another app answers the thread, an agent takes the thread through policy's API (the sandbox's
take_thread_control), and the reply is then sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import ChannelRole, Provider, topics
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually
from tests.support.policy import JWT, SENT, Sandbox, auth, channel, inbound, of_type, policy_stack

pytestmark = pytest.mark.integration

PAGE = "104512345678901"
PSID = "2400000000000031"
THREAD_CONTROL_CHANGED = "parley.conversation.thread_control_changed.v1"
TAKEN = "parley.thread_control.taken.v1"


async def test_a_standby_thread_is_recorded_refused_taken_and_then_answered(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    messenger = channel(
        "ch-m",
        Provider.MESSENGER,
        PAGE,
        user_access={"ana": ChannelRole.CONTRIBUTOR, "vic": ChannelRole.VIEWER},
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    routing_settings = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
        log_level="warning",
    )
    async with (
        policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack,
        running(create_routing_app(routing_settings)) as routing,
    ):
        # a bot (another app) answers the thread: Meta delivers the customer's message on standby
        standby = inbound(messenger, "conv-tc", PSID, t0).model_copy(update={"standby": True})
        await stack.customer_message(standby)

        async def recorded() -> dict[str, Any] | None:
            response = await routing.get("/v1/conversations/conv-tc", headers=auth("ana"))
            if response.status_code != 200:
                return None
            body = dict(response.json())
            return body if of_type(body["history"], THREAD_CONTROL_CHANGED) else None

        conversation = await eventually(recorded)
        [added] = [h for h in conversation["history"] if h.get("provider_message_id") == "m_conv-tc_1"]
        assert added["standby"] is True
        [change] = of_type(conversation["history"], THREAD_CONTROL_CHANGED)
        assert (change["parley_active"], change["reason"]) == (False, "standby_message")

        async def refused() -> dict[str, Any] | None:
            response = await stack.check("conv-tc", {"text": "Hello"}, "ana")
            codes = [r["code"] for r in response.json()["reasons"]]
            return dict(response.json()) if "NOT_THREAD_OWNER" in codes else None

        await eventually(refused)  # policy follows routing's announcement
        response = await stack.reply("conv-tc", {"text": "Hello"}, "ana", idempotency_key="before")
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "NOT_THREAD_OWNER"
        assert await stack.sandbox.sent("/messages") == []

        # a Viewer may not take the thread; a Contributor may
        viewer = await stack.api.post("/v1/conversations/conv-tc/thread-control:take", headers=auth("vic"))
        assert viewer.status_code == 403, viewer.text
        taken = await stack.api.post("/v1/conversations/conv-tc/thread-control:take", headers=auth("ana"))
        assert taken.status_code == 200, taken.text
        assert taken.json() == {"conversation_id": "conv-tc", "parley_active": True}
        page = await stack.sandbox.admin("GET", f"/meta/pages/{PAGE}")
        assert page["thread_owners"] == {PSID: stack.sandbox.state.meta_app_id}

        response = await stack.reply(
            "conv-tc", {"text": "Hello, a person here"}, "ana", idempotency_key="after"
        )
        assert response.status_code == 202, response.text
        reply_id = response.json()["decision_id"]
        events = await stack.events(
            topics.REPLIES,
            lambda evs: bool(of_type(evs, SENT, reply_id=reply_id)) and bool(of_type(evs, TAKEN)),
        )
        [audit] = of_type(events, TAKEN)
        assert (audit["conversation_id"], audit["actor_id"]) == ("conv-tc", "ana")
        [sent] = await stack.sandbox.sent("/messages")
        assert sent["body"]["recipient"] == {"id": PSID}

        async def taken_in_routing() -> dict[str, Any] | None:
            current = await recorded()
            changes = of_type(current["history"], THREAD_CONTROL_CHANGED) if current else []
            return current if len(changes) == 2 else None

        after = await eventually(taken_in_routing)
        last = of_type(after["history"], THREAD_CONTROL_CHANGED)[-1]
        assert (last["parley_active"], last["reason"], last["actor_id"]) == (True, "agent_take", "ana")
