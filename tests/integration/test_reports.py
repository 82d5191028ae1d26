"""Reports against the real broker and store: public events through Kafka into the reports
process, a report's numbers checked exactly, and a rebuild that yields the same report."""

from __future__ import annotations

from typing import Any

import pytest
from parley_events import (
    ChannelRole,
    ChannelSnapshot,
    ChannelStatus,
    Provider,
    ProviderError,
    RejectionReason,
    ReplyFailed,
    ReplyRejected,
    SenderType,
)
from parley_reports.bootstrap import create_reports_app
from parley_reports.entrypoints.cli import rebuild
from parley_reports.settings import ReportsSettings
from parley_shared.auth import issue_dev_token

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually, publish_events
from tests.support.reports import CHANNEL, TENANT, Conversation, at

pytestmark = pytest.mark.integration

JWT = "reports-test-secret-of-at-least-32-bytes"
DAY = {"from": "2026-03-27", "to": "2026-03-27", "tz": "Europe/Paris", "bucket": "hour", "target_s": "600"}


def settings(infra: Infra, namespace: str, store_url: str) -> ReportsSettings:
    return ReportsSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
    )


def supervisor() -> dict[str, str]:
    return {"authorization": f"Bearer {issue_dev_token(JWT, 'sam', TENANT, [])}"}


def history() -> list[Any]:
    """Two conversations on one channel, 09:00 to 11:00 UTC on a Friday, some events twice."""
    a, b = Conversation("conv_a"), Conversation("conv_b")
    a_reply, b_bot, b_reply = a.reply(5, agent="ana"), b.reply(31, agent=None), b.reply(50, agent="bo")
    rejected = ReplyRejected(
        event_id="rej_1",
        reply_id="rpl_rej",
        conversation_id="conv_a",
        tenant_id=TENANT,
        channel_id=CHANNEL,
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        occurred_at=at(4),
        reasons=(RejectionReason(code="TOO_LONG", message="too long"),),
    )
    failed = ReplyFailed(
        event_id="fail_1",
        reply_id="rpl_fail",
        conversation_id="conv_b",
        tenant_id=TENANT,
        channel_id=CHANNEL,
        sender_type=SenderType.HUMAN,
        agent_id="bo",
        occurred_at=at(45),
        error=ProviderError(code=10),
        error_kind="permission",
        attempts=1,
    )
    return [
        a_reply,  # the reply outcome first: it waits for its conversation
        a.created(0),
        a.message(0),
        rejected,
        a.echo(a_reply),
        a.owned(5, "ana"),
        a.resolved(20, actor="ana"),
        a.owner_cleared(20, "ana"),
        a.reopened(70),
        a.message(70),
        b.created(30),
        b.message(30),
        b_bot,
        b.echo(b_bot),
        b.message(40),
        failed,
        b_reply,
        b.echo(b_reply),
        b.owned(50, "bo"),
        a_reply,  # redelivered
        failed,
    ]


async def report_of(client: Any) -> dict[str, Any]:
    response = await client.get("/v1/reports/activity", params=DAY, headers=supervisor())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def check_reports_end_to_end(infra: Infra, namespace: str, store_url: str) -> None:
    channel = ChannelSnapshot(
        channel_id=CHANNEL,
        tenant_id=TENANT,
        provider=Provider.MESSENGER,
        account_id="page_1",
        status=ChannelStatus.ACTIVE,
        revision=1,
        user_access={"sam": ChannelRole.SUPERVISOR},
    )
    await publish_events(infra.kafka, namespace, channel, *history())
    config = settings(infra, namespace, store_url)

    async with running(create_reports_app(config)) as client:

        async def complete() -> tuple[dict[str, Any], dict[str, Any]] | None:
            # every event applied: the last of each kind is in (the assertions below say the rest)
            body = await report_of(client)
            t = body["total"]
            seen = (
                t["conversations_reopened"],
                t["inbound_messages"],
                t["replies_human"] + t["replies_automated"],
                t["first_response"]["count"],
                t["reply_time"]["count"],
                sum(t["failed_by_error"].values()) + sum(t["rejected_by_reason"].values()),
            )
            if seen != (1, 4, 3, 2, 3, 2):
                return None
            # the backlog reads the conversations' state: conv_b's last event (bo owns it) may be
            # applied after everything the totals count
            backlog = (await client.get("/v1/reports/backlog", headers=supervisor())).json()
            return (body, backlog) if backlog["unassigned"] == 1 else None

        live, backlog = await eventually(complete, timeout=60)

    total = live["total"]
    assert {k: total[k] for k in ("conversations_created", "conversations_reopened", "inbound_messages")} == {
        "conversations_created": 2,
        "conversations_reopened": 1,
        "inbound_messages": 4,
    }
    assert (total["replies_human"], total["replies_automated"]) == (2, 1)
    assert (total["resolved_by_agent"], total["resolved_automatically"], total["reopen_rate"]) == (1, 0, 1.0)
    assert total["rejected_by_reason"] == {"TOO_LONG": 1}
    assert total["failed_by_error"] == {"permission/10": 1}
    # first responses: ana after 5 minutes, bo after 20 (the bot's reply is not one)
    assert total["first_response"]["count"] == 2
    assert total["first_response"]["median_s"] == pytest.approx(300, rel=0.01)
    assert total["first_response"]["within_target"] == 0.5
    # reply times: 5 min (ana), 1 min (the bot), 10 min (bo answering the 09:40 message)
    assert total["reply_time"]["count"] == 3
    assert total["reply_time"]["median_s"] == pytest.approx(300, rel=0.01)
    assert total["resolution"]["count"] == 1
    assert total["resolution"]["median_s"] == pytest.approx(1200, rel=0.01)
    # Paris is UTC+1 on the 27th of March: the 09:00 UTC hour is 10:00 there
    assert [(r["period_start"], r["activity"]["conversations_created"]) for r in live["rows"]] == [
        ("2026-03-27T10:00:00+01:00", 2),
        ("2026-03-27T11:00:00+01:00", 0),
    ]
    assert backlog["open_by_queue"] == {"new": 2, "pending": 0}
    assert backlog["unassigned"] == 1  # conv_a lost ana when it was resolved; bo owns conv_b
    assert backlog["oldest_waiting_since"] == "2026-03-27T10:10:00Z"  # conv_a's reopening message

    done = await rebuild(config)
    assert done.deleted > 0
    assert (done.read, done.applied, done.duplicates) == (21, 19, 2)  # a reply and a failure came twice
    async with running(create_reports_app(config)) as client:
        rebuilt = await report_of(client)
    assert rebuilt == live


async def test_a_report_from_real_events_and_its_rebuild_on_postgresql(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await check_reports_end_to_end(infra, namespace, store_url)


@pytest.mark.mongodb
async def test_a_report_from_real_events_and_its_rebuild_on_mongodb(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await check_reports_end_to_end(infra, namespace, store_url)
