"""The reports process wired by ``build`` with a fake store: its router on FastStream's in-memory
broker feeds the read model, and its API answers Supervisors and administrators only."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from parley_events import (
    Author,
    ChannelRole,
    ChannelSnapshot,
    ChannelStatus,
    Content,
    ConversationCreated,
    ConversationMessageAdded,
    ConversationOwnerAssigned,
    Direction,
    OwnerChangeReason,
    Provider,
    Queue,
    ReplyApproved,
    ReplySent,
    SenderType,
    TeamSnapshot,
)
from parley_reports.bootstrap import ReportsAdapters, ReportsWiring, build
from parley_reports.domain.timing import ReportEvent
from parley_reports.service import ReportService
from parley_reports.settings import ReportsSettings
from parley_shared.auth import issue_dev_token
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory
from starlette.applications import Starlette

from tests.support.fakes.bus import on_test_broker
from tests.support.fakes.reports import FakeReportStore

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-of-at-least-32-bytes"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
PLAIN: dict[str, Any] = {"topic_namespace": "", "consumer_group_prefix": "parley"}


def snapshot(channel_id: str, tenant_id: str = "ten_acme", **access: Any) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id=channel_id,
        tenant_id=tenant_id,
        provider=Provider.MESSENGER if channel_id != "chn_wa" else Provider.WHATSAPP,
        account_id=f"acct_{channel_id}",
        status=ChannelStatus.ACTIVE,
        revision=1,
        **access,
    )


def wired(store: FakeReportStore) -> ReportsWiring:
    channels = KafkaChannelDirectory("unused:9092", "parley.channels.v1")
    teams = KafkaTeamDirectory("unused:9092", "parley.teams.v1")
    for snap in (
        snapshot(
            "chn_1",
            user_access={
                "sam": ChannelRole.SUPERVISOR,
                "cora": ChannelRole.CONTRIBUTOR,
                "vic": ChannelRole.VIEWER,
            },
            team_access={"team_leads": ChannelRole.SUPERVISOR},
        ),
        snapshot("chn_wa", user_access={"sam": ChannelRole.CONTRIBUTOR}),
        snapshot("chn_other", tenant_id="ten_other", user_access={"sam": ChannelRole.SUPERVISOR}),
    ):
        channels.apply(snap.channel_id.encode(), snap.model_dump_json().encode())
    lead = TeamSnapshot(
        team_id="team_leads", tenant_id="ten_acme", name="Leads", members=("tia",), revision=1
    )
    teams.apply(b"team_leads", lead.model_dump_json().encode())
    settings = ReportsSettings(jwt_hs256_secret=SECRET, **PLAIN)
    return build(settings, ReportsAdapters(store=store, channels=channels, teams=teams), clock=lambda: T0)


def bearer(user: str, tenant: str = "ten_acme", roles: tuple[str, ...] = ()) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_dev_token(SECRET, user, tenant, list(roles))}"}


async def call(wiring: ReportsWiring, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    app = Starlette(routes=list(wiring.routes))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reports") as client:
        return await client.get(path, headers=headers, params=params)


def conversation(cid: str = "conv_1", channel_id: str = "chn_1") -> list[ReportEvent]:
    """Created at 08:00, answered by ana at 08:10 (routing records the reply), owned by ana."""

    def base(seq: int, minutes: int) -> dict[str, Any]:
        return {
            "event_id": f"{cid}:{seq}",
            "conversation_id": cid,
            "tenant_id": "ten_acme",
            "channel_id": channel_id,
            "sequence": seq,
            "occurred_at": T0 + timedelta(minutes=minutes),
        }

    def added(seq: int, minutes: int, direction: Direction, pmid: str) -> ConversationMessageAdded:
        return ConversationMessageAdded(
            **base(seq, minutes),
            message_event_id=f"msg_{cid}_{seq}",
            direction=direction,
            author=Author(id="cust"),
            content=Content(text="hi"),
            provider_message_id=pmid,
            provider_timestamp=T0 + timedelta(minutes=minutes),
        )

    reply = ReplySent(
        reply_id=f"rpl_{cid}",
        conversation_id=cid,
        tenant_id="ten_acme",
        channel_id=channel_id,
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        provider_message_id=f"m_out_{cid}",
        sent_at=T0 + timedelta(minutes=10),
    )
    return [
        reply,  # policy's topic ran ahead of routing's
        ConversationCreated(
            **base(1, 0), provider=Provider.MESSENGER, conversation_key="dm:1", queue=Queue.NEW
        ),
        added(2, 0, Direction.INBOUND, f"m_in_{cid}"),
        added(3, 10, Direction.OUTBOUND, f"m_out_{cid}"),
        ConversationOwnerAssigned(**base(4, 10), owner_id="ana", reason=OwnerChangeReason.AUTO_OWNERSHIP),
    ]


def approved() -> ReplyApproved:
    return ReplyApproved(
        event_id="rpl_x:approved",
        reply_id="rpl_x",
        conversation_id="conv_1",
        tenant_id="ten_acme",
        channel_id="chn_1",
        sender_type=SenderType.HUMAN,
        occurred_at=T0,
        provider=Provider.MESSENGER,
        account_id="acct",
        recipient_id="psid",
        kind="text",
    )


async def fed(store: FakeReportStore, *events: ReportEvent) -> ReportsWiring:
    wiring = wired(store)
    async with on_test_broker(wiring.router) as bus:
        for event in events:
            await bus.publish(event, event_id=getattr(event, "event_id", None))
    return wiring


DAY = {"from": "2026-11-02", "to": "2026-11-02"}


async def test_the_router_feeds_the_read_model_and_acknowledges_other_types() -> None:
    store = FakeReportStore()
    wiring = await fed(store, approved(), *conversation(), *conversation())  # every event twice
    response = await call(
        wiring, "/v1/reports/activity", bearer("sam"), channel_id="chn_1", target_s=600, **DAY
    )
    assert response.status_code == 200, response.text
    total = response.json()["total"]
    assert (total["conversations_created"], total["inbound_messages"], total["replies_human"]) == (1, 1, 1)
    assert total["first_response"]["count"] == 1
    assert total["first_response"]["median_s"] == pytest.approx(600, rel=0.01)
    assert total["first_response"]["within_target"] == 1.0
    assert store.states["conv_1"].parked == []


async def test_a_supervisor_sees_their_channels_per_period_in_their_time_zone() -> None:
    store = FakeReportStore()
    wiring = await fed(store, *conversation("conv_1"), *conversation("conv_2"))
    response = await call(
        wiring, "/v1/reports/activity", bearer("sam"), tz="America/New_York", bucket="hour", **DAY
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["channel_ids"] == ["chn_1"]  # sam is only a Contributor on chn_wa
    # 08:00 UTC is 03:00 in New York (UTC-5 in November)
    assert [(r["period_start"], r["activity"]["conversations_created"]) for r in body["rows"]] == [
        ("2026-11-02T03:00:00-05:00", 2)
    ]


async def test_activity_and_agents_as_csv() -> None:
    wiring = await fed(FakeReportStore(), *conversation())
    activity = await call(wiring, "/v1/reports/activity", bearer("sam"), format="csv", **DAY)
    assert activity.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(activity.text)))
    assert [(r["period_start"], r["conversations_created"], r["first_response.count"]) for r in rows] == [
        ("2026-11-02T00:00:00+00:00", "1", "1")
    ]
    agents = await call(wiring, "/v1/reports/agents", bearer("sam"), format="csv", **DAY)
    rows = list(csv.DictReader(io.StringIO(agents.text)))
    assert [(r["agent_id"], r["replies"], r["conversations_owned"]) for r in rows] == [("ana", "1", "1")]


async def test_backlog_now() -> None:
    wiring = await fed(FakeReportStore(), *conversation())
    response = await call(wiring, "/v1/reports/backlog", bearer("sam"), channel_id="chn_1")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channel_ids": ["chn_1"],
        "open_by_queue": {"new": 1, "pending": 0},
        "unassigned": 0,
        "oldest_waiting_since": None,  # ana answered
        "waiting_conversations": 0,
    }


@pytest.mark.parametrize(
    ("headers", "channel_id", "status"),
    [
        (bearer("sam"), "chn_1", 200),  # Supervisor directly
        (bearer("tia"), "chn_1", 200),  # Supervisor through a team
        (bearer("boss", roles=("admin",)), "chn_1", 200),  # tenant administrator
        (bearer("boss", roles=("admin",)), None, 200),
        (bearer("cora"), "chn_1", 403),  # Contributor
        (bearer("vic"), "chn_1", 403),  # Viewer
        (bearer("nobody"), "chn_1", 403),  # no role
        (bearer("sam"), "chn_wa", 403),  # Contributor there
        (bearer("cora"), None, 403),  # supervises nothing
        (bearer("sam"), "chn_other", 404),  # another tenant's channel
        (bearer("boss", tenant="ten_other", roles=("admin",)), "chn_1", 404),
        (bearer("sam"), "chn_missing", 404),
        ({}, "chn_1", 401),
    ],
)
@pytest.mark.parametrize("path", ["/v1/reports/activity", "/v1/reports/agents", "/v1/reports/backlog"])
async def test_only_supervisors_and_administrators_see_reports(
    path: str, headers: dict[str, str], channel_id: str | None, status: int
) -> None:
    wiring = wired(FakeReportStore())
    params: dict[str, Any] = dict(DAY)
    if channel_id is not None:
        params["channel_id"] = channel_id
    response = await call(wiring, path, headers, **params)
    assert response.status_code == status, response.text


async def test_an_administrator_sees_every_channel_of_the_tenant_grouped_by_provider() -> None:
    wiring = await fed(
        FakeReportStore(), *conversation("conv_1"), *conversation("conv_w", channel_id="chn_wa")
    )
    response = await call(
        wiring, "/v1/reports/activity", bearer("boss", roles=("admin",)), group_by="provider", **DAY
    )
    body = response.json()
    assert body["channel_ids"] == ["chn_1", "chn_wa"]
    assert [(r["group"], r["activity"]["conversations_created"]) for r in body["rows"]] == [
        ("messenger", 1),
        ("whatsapp", 1),
    ]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"tz": "Mars/Olympus"}, "UNKNOWN_TIME_ZONE"),
        ({"from": "2026-11-03", "to": "2026-11-02"}, "INVALID_RANGE"),
        ({"from": "2020-01-01", "to": "2026-11-02"}, "RANGE_TOO_LONG"),
        ({"bucket": "month"}, "VALIDATION_ERROR"),
        ({"from": "9999-12-31", "to": "9999-12-31"}, "INVALID_RANGE"),
        ({"from": "0001-01-01", "to": "0001-01-01", "tz": "Etc/GMT-14"}, "INVALID_RANGE"),
    ],
)
async def test_invalid_requests_are_refused_with_a_code(params: dict[str, str], code: str) -> None:
    wiring = wired(FakeReportStore())
    response = await call(wiring, "/v1/reports/activity", bearer("sam"), **{**DAY, **params})
    assert response.status_code == 422
    assert response.json()["code"] == code


async def test_a_lost_race_for_the_state_is_applied_again_without_double_counting() -> None:
    store = FakeReportStore()
    service = ReportService(store, clock=lambda: T0)
    events = conversation()
    store.conflicts_to_raise = 1  # the first state save loses to the other topic's consumer
    for event in events:
        await service.apply(event, "parley.conversations.v1")
    [bucket] = store.bucket_docs.values()
    assert bucket.counts["replies_human"] == 1
    assert bucket.counts["conversations_created"] == 1


async def test_contributions_saved_with_the_state_reach_the_buckets_once_after_a_failure() -> None:
    store = FakeReportStore()
    service = ReportService(store, clock=lambda: T0)
    created = conversation()[1]
    store.bucket_failures = 1  # the state is saved with its contributions, the bucket write fails
    with pytest.raises(ConnectionError):
        await service.apply(created, "parley.conversations.v1")
    assert store.states["conv_1"].pending and not store.bucket_docs
    # the record comes again: the pending contribution goes to its bucket, the event is a duplicate
    assert await service.apply(created, "parley.conversations.v1") is False
    [bucket] = store.bucket_docs.values()
    assert bucket.counts == {"conversations_created": 1}
    assert store.states["conv_1"].pending == []
    # a later event of the conversation finds nothing pending and counts once too
    await service.apply(conversation()[2], "parley.conversations.v1")
    assert store.bucket_docs[bucket.id].counts == {"conversations_created": 1, "inbound_messages": 1}


async def test_the_lag_gauge_follows_the_newest_applied_event() -> None:
    from prometheus_client import REGISTRY

    store = FakeReportStore()
    service = ReportService(store, clock=lambda: T0 + timedelta(minutes=30))
    for event in conversation():
        await service.apply(event, "parley.conversations.v1")
    await service.report_lag()
    lag = REGISTRY.get_sample_value("parley_reports_lag_seconds", {"topic": "parley.conversations.v1"})
    assert lag == 20 * 60  # the newest event (the owner) was at 08:10


async def test_it_prepares_its_indexes_and_keeps_the_channel_and_team_read_models() -> None:
    store = FakeReportStore()
    wiring = wired(store)
    await wiring.prepare()  # before the broker starts: no event is applied before the tables exist
    assert store.indexed
    await wiring.start()
    assert [m.source.name for m in wiring.read_models] == ["parley.channels.v1", "parley.teams.v1"]
    assert [p.name for p in wiring.periodic] == ["report-lag"]
