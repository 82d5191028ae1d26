"""The reports service: public events into the read model, reports out to Supervisors.

``ReportService.apply`` is the only writer: for each event it loads the conversation's timing
state, lets the domain say what the event adds to which buckets, saves the state with those
contributions (an outbox), then adds them to each bucket (once: a bucket remembers the events it
counted) and clears them. ``ReportQueries`` answers the API, for the Supervisors of a channel
and the tenant's administrators only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from parley_events import BusinessHours, ChannelRole, Provider
from parley_shared.access import Actor, Forbidden, acting_role
from parley_shared.logging import get_logger

from parley_reports import metrics
from parley_reports.adapters.stores import ConcurrentUpdate, ReportStore
from parley_reports.domain.buckets import Bucket, Contribution, group_by_bucket
from parley_reports.domain.report import (
    Activity,
    AgentRow,
    Backlog,
    Granularity,
    PeriodRow,
    activity_report,
    agent_report,
    backlog,
)
from parley_reports.domain.timing import ConversationTiming, ReportEvent, new_state

log = get_logger(__name__)

MAX_CONFLICT_RETRIES = 20


def utcnow() -> datetime:
    return datetime.now(UTC)


class ChannelDirectory(Protocol):
    """The channels and who may see their reports (the channel and team read models)."""

    def role_of(self, tenant_id: str, user_id: str, channel_id: str) -> ChannelRole | None:
        """The user's own role on a channel of their tenant; None: no access or not their tenant's."""
        ...

    def channel_ids_of(self, tenant_id: str) -> list[str]:
        """Every channel of the tenant."""
        ...

    def has_channel(self, tenant_id: str, channel_id: str) -> bool:
        """Whether the channel exists and is the tenant's."""
        ...

    def provider_of(self, channel_id: str) -> Provider | None:
        """The provider of a channel (None: unknown)."""
        ...


class ChannelNotFound(Exception):
    """No such channel in the caller's tenant (another tenant's looks the same)."""


def event_time(event: ReportEvent) -> datetime:
    for name in ("occurred_at", "sent_at", "provider_timestamp"):
        value = getattr(event, name, None)
        if isinstance(value, datetime):
            return value
    raise AssertionError(f"{type(event).__name__} carries no time")


def no_schedule(_channel_id: str) -> BusinessHours | None:
    return None


class ReportService:
    """Applies public events to the read model, each at most once.

    ``hours_of`` gives a channel's business hours as its snapshot has them when the event is
    applied (the channel read model); business-time measures use it (None: always open)."""

    def __init__(
        self,
        store: ReportStore,
        clock: Callable[[], datetime] = utcnow,
        hours_of: Callable[[str], BusinessHours | None] = no_schedule,
    ) -> None:
        self.store = store
        self.clock = clock
        self.hours_of = hours_of
        self.last_applied: dict[str, datetime] = {}

    async def apply(self, event: ReportEvent, topic: str) -> bool:
        """Apply one event; False when it had been applied already.

        The state is saved first, with what the event adds to the buckets (``pending``); then
        the buckets get it (each skips an event it counted already) and the state is saved again
        without it. A writer that finds a state with pending contributions (its writer stopped
        in between) hands them to the buckets first, so a contribution reaches its bucket exactly
        once whatever stops where, and a lost race for the state leaves no trace in the buckets.
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            state = await self.store.get_state(event.conversation_id) or new_state(event)
            flushed = await self._flush(state)
            if state.has_applied(event):
                if flushed:
                    await self._save_quietly(state)
                metrics.EVENTS.labels(topic, "duplicate").inc()
                return False
            state.pending = state.apply(event, self.hours_of(event.channel_id))
            try:
                await self.store.save_state(state)
            except ConcurrentUpdate:
                # the other topic's consumer changed this conversation meanwhile: apply the event
                # again on its state (nothing of this attempt reached the buckets)
                metrics.CONFLICTS.labels("state").inc()
                continue
            if await self._flush(state):
                await self._save_quietly(state)
            self._applied(topic, event)
            return True
        raise ConcurrentUpdate(event.conversation_id)

    async def _flush(self, state: ConversationTiming) -> bool:
        """Hand the state's pending contributions to their buckets; whether there were any."""
        if not state.pending:
            return False
        for (channel_id, hour), parts in group_by_bucket(state.pending).items():
            await self._add(channel_id, hour, parts)
        state.pending = []
        return True

    async def _save_quietly(self, state: ConversationTiming) -> None:
        """Save a state whose pending contributions are in the buckets now; a writer that saved
        another version first finds them still pending and its buckets skip them."""
        try:
            await self.store.save_state(state)
        except ConcurrentUpdate:
            metrics.CONFLICTS.labels("state").inc()

    async def _add(self, channel_id: str, hour: datetime, parts: Sequence[Contribution]) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            bucket = await self.store.get_bucket(channel_id, hour) or Bucket(
                parts[0].tenant_id, channel_id, hour
            )
            if not [p for p in parts if bucket.apply(p)]:
                return
            try:
                await self.store.save_bucket(bucket)
                return
            except ConcurrentUpdate:
                metrics.CONFLICTS.labels("bucket").inc()
        raise ConcurrentUpdate(f"{channel_id}|{hour.isoformat()}")

    def _applied(self, topic: str, event: ReportEvent) -> None:
        at = event_time(event)
        if at > self.last_applied.get(topic, at - timedelta(seconds=1)):
            self.last_applied[topic] = at
            metrics.LAST_APPLIED.labels(topic).set(at.timestamp())
        metrics.EVENTS.labels(topic, "applied").inc()

    async def report_lag(self) -> None:
        """Set the lag gauges: how old the newest applied event of each topic is now."""
        now = self.clock()
        for topic, at in self.last_applied.items():
            metrics.LAG_SECONDS.labels(topic).set(max(0.0, (now - at).total_seconds()))


@dataclass(frozen=True)
class ReportRequest:
    """What a caller asks for: channels (one, or all they supervise), a range, a zone, periods."""

    channel_id: str | None
    start: datetime
    end: datetime
    tz: ZoneInfo
    granularity: Granularity = Granularity.DAY
    target_s: float | None = None
    group_by: str = "none"  # none, channel or provider


@dataclass(frozen=True)
class ActivityReport:
    channel_ids: list[str]
    rows: list[PeriodRow]
    total: Activity


class ReportQueries:
    """Reports for Supervisors of a channel and tenant administrators (others: Forbidden)."""

    def __init__(self, store: ReportStore, channels: ChannelDirectory) -> None:
        self.store = store
        self.channels = channels

    def supervised(self, actor: Actor, channel_id: str | None) -> list[str]:
        """The channels the report covers; Forbidden or ChannelNotFound otherwise."""
        if channel_id is not None:
            if not self.channels.has_channel(actor.tenant_id, channel_id):
                raise ChannelNotFound(channel_id)
            role = acting_role(actor, self.channels.role_of(actor.tenant_id, actor.user_id, channel_id))
            if role is not ChannelRole.SUPERVISOR:
                raise Forbidden("SUPERVISOR_REQUIRED", "reports need the Supervisor role on the channel")
            return [channel_id]
        ids = sorted(
            c
            for c in self.channels.channel_ids_of(actor.tenant_id)
            if acting_role(actor, self.channels.role_of(actor.tenant_id, actor.user_id, c))
            is ChannelRole.SUPERVISOR
        )
        if not ids:
            raise Forbidden("SUPERVISOR_REQUIRED", "you supervise no channel")
        return ids

    def _group_of(self, group_by: str) -> Callable[[Bucket], str]:
        if group_by == "channel":
            return lambda b: b.channel_id
        if group_by == "provider":
            return lambda b: p.value if (p := self.channels.provider_of(b.channel_id)) else "unknown"
        return lambda _: "all"

    async def _buckets(self, actor: Actor, request: ReportRequest) -> tuple[list[str], list[Bucket]]:
        ids = self.supervised(actor, request.channel_id)
        start, end = request.start.astimezone(UTC), request.end.astimezone(UTC)
        return ids, await self.store.buckets(ids, start, end)

    async def activity(self, actor: Actor, request: ReportRequest) -> ActivityReport:
        ids, found = await self._buckets(actor, request)
        rows, total = activity_report(
            found, request.tz, request.granularity, request.target_s, self._group_of(request.group_by)
        )
        return ActivityReport(ids, rows, total)

    async def agents(self, actor: Actor, request: ReportRequest) -> tuple[list[str], list[AgentRow]]:
        ids, found = await self._buckets(actor, request)
        return ids, agent_report(found, request.target_s)

    async def backlog(self, actor: Actor, channel_id: str | None) -> tuple[list[str], Backlog]:
        ids = self.supervised(actor, channel_id)
        return ids, backlog(await self.store.open_conversations(ids))
