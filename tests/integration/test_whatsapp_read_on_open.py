"""Marked read when an agent opens a conversation, end to end on the real broker and store with
the provider sandbox: on a WhatsApp channel whose ``mark_read_on_open`` setting is on, routing's
``POST /v1/conversations/{id}/open`` by a Contributor becomes one Cloud API ``status: read`` for
the customer's last message (no typing indicator), sent by policy; a Viewer's open and the GET
send nothing, and opening again sends nothing more until the customer writes again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import ChannelRole, Provider
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually
from tests.support.policy import JWT, Sandbox, auth, channel, inbound, policy_stack

pytestmark = pytest.mark.integration

NUMBER = "106540352242931"
CUSTOMER = "15550003333"


async def test_a_contributor_opening_the_conversation_marks_the_last_message_read_once(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    whatsapp = channel(
        "ch-wa-open",
        Provider.WHATSAPP,
        NUMBER,
        user_access={"ana": ChannelRole.CONTRIBUTOR, "vic": ChannelRole.VIEWER},
        mark_read_on_open=True,
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(whatsapp, await sandbox.whatsapp_number(NUMBER))]

    routing_settings = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
        log_level="warning",
    )
    async with (
        policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=5)) as stack,
        running(create_routing_app(routing_settings)) as routing,
    ):

        def customer(n: int) -> Any:
            return inbound(whatsapp, "conv-open", CUSTOMER, t0 + timedelta(seconds=n), n=n).model_copy(
                update={"provider_message_id": f"wamid.open{n}"}
            )

        await stack.customer_message(customer(1))
        await stack.customer_message(customer(2))

        async def messages_in_routing(count: int) -> bool:
            response = await routing.get("/v1/conversations/conv-open", headers=auth("ana"))
            if response.status_code != 200:
                return False
            added = [
                e for e in response.json()["history"] if e["type"] == "parley.conversation.message_added.v1"
            ]
            return len(added) >= count

        async def reads() -> list[Any]:
            return [c["body"] for c in await stack.sandbox.sent(f"/{NUMBER}/messages")]

        await eventually(lambda: messages_in_routing(2))
        viewer = await routing.post("/v1/conversations/conv-open/open", headers=auth("vic"))
        assert viewer.status_code == 200, viewer.text  # a Viewer sees it, and tells the customer nothing
        assert (await routing.get("/v1/conversations/conv-open", headers=auth("ana"))).status_code == 200
        stranger = await routing.post("/v1/conversations/conv-open/open", headers=auth("eve"))
        assert stranger.status_code == 404, stranger.text

        opened = await routing.post("/v1/conversations/conv-open/open", headers=auth("ana"))
        assert opened.status_code == 200, opened.text
        assert opened.json()["id"] == "conv-open" and opened.json()["history"]
        [first] = await eventually(reads)
        assert first == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.open2"}

        # opened again: nothing new to read; then the customer writes and the next open reads it
        assert (
            await routing.post("/v1/conversations/conv-open/open", headers=auth("ana"))
        ).status_code == 200
        await stack.customer_message(customer(3))
        await eventually(lambda: messages_in_routing(3))
        assert (
            await routing.post("/v1/conversations/conv-open/open", headers=auth("ana"))
        ).status_code == 200

        async def two_reads() -> list[Any] | None:
            found = await reads()
            return found if len(found) >= 2 else None

        # the requests of one conversation reach policy in order: the second open's came first
        assert [b["message_id"] for b in await eventually(two_reads)] == ["wamid.open2", "wamid.open3"]
