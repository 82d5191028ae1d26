"""A real conversation through routing and policy (against the provider sandbox) into reports.

The customer's message enters as the normalizer publishes it (ingest and the normalizer have
tests of their own); routing opens the conversation, an agent's replies go through policy's API
(one refused as too long, one delivered to the sandbox), routing records the sent reply and gives
the agent the conversation, the agent resolves it through routing's API, and the report reads
each of those from the public topics alone. Every process runs in this test's event loop on the
real broker and store, with one frozen clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import ChannelRole, Provider
from parley_reports.bootstrap import create_reports_app
from parley_reports.settings import ReportsSettings
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings
from parley_shared.auth import issue_dev_token

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually
from tests.support.policy import JWT, TENANT, Sandbox, channel, inbound, key, policy_stack

pytestmark = pytest.mark.integration

PAGE = "104512345678901"
PSID = "2400000000000001"


def bearer(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_dev_token(JWT, user, TENANT, [])}"}


async def test_a_conversation_answered_and_resolved_through_routing_and_policy_is_reported_exactly(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    messenger = channel(
        "ch-m",
        Provider.MESSENGER,
        PAGE,
        user_access={"ana": ChannelRole.CONTRIBUTOR, "sam": ChannelRole.SUPERVISOR},
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    common: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka,
        "store_url": store_url,
        "topic_namespace": namespace,
        "consumer_group_prefix": namespace,
        "jwt_hs256_secret": JWT,
    }
    async with policy_stack(infra, namespace, store_url, setup, now=t0) as stack:
        routing_app = create_routing_app(RoutingSettings(**common), clock=stack.clock)
        reports_app = create_reports_app(ReportsSettings(**common), clock=stack.clock)
        async with running(routing_app) as routing, running(reports_app) as reports:
            await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))

            async def routed() -> bool:
                response = await routing.get("/v1/conversations/conv-1", headers=bearer("ana"))
                return response.status_code == 200

            await eventually(routed, timeout=30)
            stack.clock.advance(minutes=3)
            too_long = await stack.reply("conv-1", {"text": "x" * 2001}, "ana")
            assert too_long.status_code == 422, too_long.text
            stack.clock.advance(minutes=2)  # t0 + 5 min
            sent = await stack.reply("conv-1", {"text": "On it"}, "ana")
            assert sent.status_code == 202, sent.text

            async def owned() -> bool:
                response = await routing.get("/v1/conversations/conv-1", headers=bearer("ana"))
                return bool(response.json()["owner_id"] == "ana")

            await eventually(owned, timeout=30)  # routing applied the sent reply (auto-ownership)
            stack.clock.advance(minutes=15)  # t0 + 20 min
            resolved = await routing.post(
                "/v1/conversations/conv-1/status",
                json={"queue": "resolved"},
                headers={**bearer("ana"), **key()},
            )
            assert resolved.status_code == 200, resolved.text

            # two days: the conversation may straddle midnight UTC
            first, last = t0.date().isoformat(), (t0 + timedelta(days=1)).date().isoformat()
            params = {"channel_id": "ch-m", "from": first, "to": last, "target_s": "600"}

            async def reported() -> dict[str, Any] | None:
                response = await reports.get("/v1/reports/activity", params=params, headers=bearer("sam"))
                assert response.status_code == 200, response.text
                total: dict[str, Any] = response.json()["total"]
                return total if total["resolved_by_agent"] == 1 and total["rejected_by_reason"] else None

            total = await eventually(reported, timeout=60)
            agents = (await reports.get("/v1/reports/agents", params=params, headers=bearer("sam"))).json()
            backlog = (await reports.get("/v1/reports/backlog", params=params, headers=bearer("sam"))).json()

    assert (total["conversations_created"], total["inbound_messages"]) == (1, 1)
    assert (total["replies_human"], total["replies_automated"]) == (1, 0)
    assert total["rejected_by_reason"] == {"TOO_LONG": 1}
    assert total["failed_by_error"] == {}
    assert (total["resolved_by_agent"], total["resolved_automatically"], total["conversations_reopened"]) == (
        1,
        0,
        0,
    )
    assert total["first_response"]["count"] == 1
    assert total["first_response"]["median_s"] == pytest.approx(300, rel=0.01)
    assert total["first_response"]["within_target"] == 1.0
    assert total["reply_time"]["median_s"] == pytest.approx(300, rel=0.01)
    assert total["resolution"]["median_s"] == pytest.approx(1200, rel=0.01)
    assert [
        (a["agent_id"], a["replies"], a["conversations_owned"], a["conversations_resolved"])
        for a in agents["agents"]
    ] == [("ana", 1, 1, 1)]
    assert backlog["open_by_queue"] == {"new": 0, "pending": 0}
