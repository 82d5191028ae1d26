"""The reports API (``/v1/reports``): JSON or CSV, for Supervisors of a channel and administrators.

No ``from __future__ import annotations`` here: FastAPI must see the dependency objects built
inside ``create_api`` when it reads the route signatures.
"""

import csv
import io
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, Query
from fastapi.responses import Response
from parley_shared.access import Actor, Forbidden
from parley_shared.api import ApiError, error_responses, install_error_handlers, principal_dependency
from parley_shared.auth import Principal, TokenVerifier
from pydantic import BaseModel, Field

from parley_reports.domain.report import Activity, Granularity, Timing
from parley_reports.service import ChannelNotFound, ReportQueries, ReportRequest


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class GroupBy(StrEnum):
    NONE = "none"
    CHANNEL = "channel"
    PROVIDER = "provider"


class TimingOut(BaseModel):
    """A duration measure: how many, median and p90 (seconds, within 1%), share within the target."""

    count: int
    median_s: float | None
    p90_s: float | None
    within_target: float | None = Field(description="Share of them at most `target_s` (null without one).")


class ActivityOut(BaseModel):
    """Volume, response and resolution times and policy outcomes over a period."""

    conversations_created: int
    conversations_reopened: int
    inbound_messages: int = Field(description="Customer messages (reactions and deletions aside).")
    replies_human: int
    replies_automated: int
    resolved_by_agent: int
    resolved_automatically: int
    reopen_rate: float | None = Field(description="Reopenings per resolution in the period.")
    first_response: TimingOut = Field(description="First message or reopening to the first human reply.")
    reply_time: TimingOut = Field(description="Each waiting customer message to the next reply.")
    resolution: TimingOut = Field(description="Created or reopened to resolved.")
    first_response_business: TimingOut = Field(
        description="First response in the channel's business time: only the seconds its business "
        "hours were open count (no schedule: equal to wall time)."
    )
    reply_time_business: TimingOut = Field(description="Reply time in the channel's business time.")
    resolution_business: TimingOut = Field(description="Resolution in the channel's business time.")
    rejected_by_reason: dict[str, int]
    failed_by_error: dict[str, int] = Field(description="By `<error kind>/<provider code>`.")
    whatsapp_by_pricing_category: dict[str, int]


class PeriodOut(BaseModel):
    period_start: datetime = Field(description="The period's start in the requested time zone.")
    group: str = Field(description="The channel id or provider with `group_by`; `all` otherwise.")
    activity: ActivityOut


class ActivityReportOut(BaseModel):
    channel_ids: list[str] = Field(description="The channels the report covers.")
    time_zone: str
    bucket: Granularity
    start: datetime
    end: datetime = Field(description="Exclusive.")
    rows: list[PeriodOut]
    total: ActivityOut


class AgentOut(BaseModel):
    agent_id: str
    replies: int
    conversations_owned: int = Field(description="Times they were made owner in the range.")
    conversations_resolved: int
    first_response: TimingOut
    first_response_business: TimingOut = Field(description="Their first responses in business time.")


class AgentsReportOut(BaseModel):
    channel_ids: list[str]
    start: datetime
    end: datetime
    agents: list[AgentOut]


class BacklogOut(BaseModel):
    channel_ids: list[str]
    open_by_queue: dict[str, int]
    unassigned: int
    oldest_waiting_since: datetime | None = Field(
        description="The oldest customer message still waiting for an answer."
    )
    waiting_conversations: int


def _timing(t: Timing) -> TimingOut:
    return TimingOut(**asdict(t))


def _activity(a: Activity) -> ActivityOut:
    data = asdict(a)
    for name in (
        "first_response",
        "reply_time",
        "resolution",
        "first_response_business",
        "reply_time_business",
        "resolution_business",
    ):
        data[name] = TimingOut(**data[name])
    return ActivityOut(**data)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ApiError(422, "UNKNOWN_TIME_ZONE", f"no IANA time zone {name!r}") from exc


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict) and prefix.endswith(("_by_reason", "_by_error", "_category")):
        return {prefix: ";".join(f"{k}={v}" for k, v in value.items())}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else key, item))
        return out
    return {prefix: value.isoformat() if isinstance(value, datetime) else value}


def _csv(rows: list[dict[str, Any]]) -> Response:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")


CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "With `format=csv`."}
}


def create_api(queries: ReportQueries, verifier: TokenVerifier, max_days: int = 366) -> FastAPI:
    """HTTP only: authentication, parameters and answer shapes; the rules are the service's."""
    api = FastAPI(
        title="Parley reports API",
        version="1.0.0",
        description="Reports for the Supervisors of a channel and tenant administrators, from the "
        "public events (docs/reports.md). Bearer JWT on every route.",
        responses=error_responses(401, 403, 404, 422),
    )
    install_error_handlers(api)
    caller = Depends(principal_dependency(verifier))

    def request(
        channel_id: str | None,
        first: date,
        last: date,
        tz: str,
        bucket: Granularity,
        target_s: float | None,
        group_by: GroupBy,
    ) -> ReportRequest:
        zone = _zone(tz)
        if last < first:
            raise ApiError(422, "INVALID_RANGE", "`to` is before `from`")
        if (last - first).days + 1 > max_days:
            raise ApiError(422, "RANGE_TOO_LONG", f"a report covers at most {max_days} days")
        try:
            start = datetime.combine(first, time(), zone)
            end = datetime.combine(last + timedelta(days=1), time(), zone)
            start.astimezone(UTC), end.astimezone(UTC)  # the stored hours are UTC
        except OverflowError as exc:
            raise ApiError(422, "INVALID_RANGE", "the range is outside the calendar") from exc
        return ReportRequest(channel_id, start, end, zone, bucket, target_s, group_by.value)

    def actor(principal: Principal) -> Actor:
        return Actor(principal.user_id, principal.tenant_id, principal.is_admin)

    async def answer(call: Any) -> Any:
        try:
            return await call
        except ChannelNotFound as exc:
            raise ApiError(404, "CHANNEL_NOT_FOUND", "no such channel") from exc
        except Forbidden as exc:
            raise ApiError(403, exc.code, exc.message) from exc

    ChannelQuery = Annotated[
        str | None, Query(description="One channel; all the channels you supervise when left out.")
    ]
    From = Annotated[date, Query(alias="from", description="First day, in `tz`.")]
    To = Annotated[date, Query(alias="to", description="Last day (included), in `tz`.")]
    Tz = Annotated[str, Query(description="IANA time zone the days and periods are in.", max_length=64)]
    Target = Annotated[
        float | None, Query(gt=0, description="Response target in seconds: the share within it.")
    ]

    @api.get(
        "/reports/activity",
        response_model=ActivityReportOut,
        responses=CSV | error_responses(403, 404),
    )
    async def activity(
        principal: Annotated[Principal, caller],
        first: From,
        last: To,
        channel_id: ChannelQuery = None,
        tz: Tz = "UTC",
        bucket: Granularity = Granularity.DAY,
        target_s: Target = None,
        group_by: GroupBy = GroupBy.NONE,
        format: Format = Format.JSON,
    ) -> Any:
        """Volume, first response, reply and resolution times, policy outcomes, per period."""
        asked = request(channel_id, first, last, tz, bucket, target_s, group_by)
        report = await answer(queries.activity(actor(principal), asked))
        rows = [
            PeriodOut(period_start=r.period_start, group=r.group, activity=_activity(r.activity))
            for r in report.rows
        ]
        if format is Format.CSV:
            return _csv(
                [
                    {**_flat("", {"period_start": r.period_start, "group": r.group}), **_flat("", r.activity)}
                    for r in rows
                ]
            )
        return ActivityReportOut(
            channel_ids=report.channel_ids,
            time_zone=tz,
            bucket=bucket,
            start=asked.start,
            end=asked.end,
            rows=rows,
            total=_activity(report.total),
        )

    @api.get("/reports/agents", response_model=AgentsReportOut, responses=CSV | error_responses(403, 404))
    async def agents(
        principal: Annotated[Principal, caller],
        first: From,
        last: To,
        channel_id: ChannelQuery = None,
        tz: Tz = "UTC",
        target_s: Target = None,
        format: Format = Format.JSON,
    ) -> Any:
        """Per agent: replies sent, conversations owned and resolved, median first response."""
        asked = request(channel_id, first, last, tz, Granularity.DAY, target_s, GroupBy.NONE)
        ids, found = await answer(queries.agents(actor(principal), asked))
        out = [
            AgentOut(
                agent_id=a.agent_id,
                replies=a.replies,
                conversations_owned=a.conversations_owned,
                conversations_resolved=a.conversations_resolved,
                first_response=_timing(a.first_response),
                first_response_business=_timing(a.first_response_business),
            )
            for a in found
        ]
        if format is Format.CSV:
            return _csv([_flat("", a) for a in out])
        return AgentsReportOut(channel_ids=ids, start=asked.start, end=asked.end, agents=out)

    @api.get("/reports/backlog", response_model=BacklogOut, responses=error_responses(403, 404))
    async def backlog(principal: Annotated[Principal, caller], channel_id: ChannelQuery = None) -> BacklogOut:
        """Open conversations now: per queue, unassigned, the oldest waiting customer message."""
        ids, found = await answer(queries.backlog(actor(principal), channel_id))
        return BacklogOut(channel_ids=ids, **asdict(found))

    return api
