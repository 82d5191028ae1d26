"""Mark as read with the typing indicator, end to end against the real broker and store and the
provider sandbox: a Viewer is refused, a Contributor's call reaches the Cloud API as one
``status: read`` request naming the customer's last message, with ``typing_indicator``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import ChannelRole, Provider

from tests.conftest import Infra
from tests.support.policy import Sandbox, auth, channel, inbound, policy_stack

pytestmark = pytest.mark.integration

NUMBER = "106540352242922"
CUSTOMER = "15550001111"


async def test_a_contributor_marks_the_last_message_read_with_typing_and_a_viewer_may_not(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    whatsapp = channel(
        "ch-wa-read",
        Provider.WHATSAPP,
        NUMBER,
        user_access={"ana": ChannelRole.CONTRIBUTOR, "vic": ChannelRole.VIEWER},
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(whatsapp, await sandbox.whatsapp_number(NUMBER))]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        first = inbound(whatsapp, "conv-read", CUSTOMER, t0).model_copy(
            update={"provider_message_id": "wamid.first"}
        )
        await stack.customer_message(first)
        last = inbound(whatsapp, "conv-read", CUSTOMER, t0 + timedelta(seconds=30), n=2).model_copy(
            update={"provider_message_id": "wamid.second"}
        )
        await stack.customer_message(last)

        viewer = await stack.api.post(
            "/v1/conversations/conv-read/read", json={"typing": True}, headers=auth("vic")
        )
        assert viewer.status_code == 403, viewer.text
        assert viewer.json()["code"] == "ROLE_FORBIDDEN"
        stranger = await stack.api.post("/v1/conversations/conv-read/read", headers=auth("eve"))
        assert stranger.status_code == 404, stranger.text
        assert await stack.sandbox.sent("/messages") == []

        read = await stack.api.post(
            "/v1/conversations/conv-read/read", json={"typing": True}, headers=auth("ana")
        )
        assert read.status_code == 200, read.text
        assert read.json() == {"conversation_id": "conv-read", "message_id": "wamid.second", "typing": True}
        plain = await stack.api.post("/v1/conversations/conv-read/read", headers=auth("ana"))
        assert plain.status_code == 200, plain.text

        calls = await stack.sandbox.sent(f"/{NUMBER}/messages")
        assert [c["status"] for c in calls] == [200, 200]
        assert calls[0]["body"] == {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": "wamid.second",
            "typing_indicator": {"type": "text"},
        }
        assert "typing_indicator" not in calls[1]["body"]
