"""Pre-aggregated report buckets: one per channel per UTC hour, built from deltas (pure).

An event changes the read model in two places: its conversation's timing state
(:mod:`parley_reports.domain.timing`) and the buckets of the hours its measures fall in. The
timing domain says what to add as :class:`Contribution` values; a bucket applies each event's
contribution at most once (it remembers the event ids it counted), so a redelivered event, or one
replayed by a rebuild, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_reports.domain.sketch import Durations

HOUR = timedelta(hours=1)


def hour_of(at: datetime) -> datetime:
    """The UTC hour an instant falls in (its start)."""
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


# --- what a bucket counts ----------------------------------------------------------------------
# counters (a key splits a counter: a reason, an error, a category)
CREATED = "conversations_created"
REOPENED = "conversations_reopened"
INBOUND = "inbound_messages"
REPLIES_HUMAN = "replies_human"
REPLIES_AUTOMATED = "replies_automated"
RESOLVED_AGENT = "resolved_by_agent"
RESOLVED_AUTO = "resolved_automatically"
REJECTED = "replies_rejected"  # key: the rejection reason's code
FAILED = "deliveries_failed"  # key: error kind and provider code, "rate_limited/613"
PRICED = "whatsapp_priced"  # key: WhatsApp's pricing category
AGENT_REPLIES = "agent_replies"  # key: agent id
AGENT_OWNED = "agent_owned"  # key: agent id
AGENT_RESOLVED = "agent_resolved"  # key: agent id
# durations, in seconds
FIRST_RESPONSE = "first_response"
REPLY_TIME = "reply_time"
RESOLUTION = "resolution"
AGENT_FIRST_RESPONSE = "agent_first_response"  # key: agent id
# the same durations in the channel's business time (docs/reports.md, "Business time")
FIRST_RESPONSE_BUSINESS = "first_response_business"
REPLY_TIME_BUSINESS = "reply_time_business"
RESOLUTION_BUSINESS = "resolution_business"
AGENT_FIRST_RESPONSE_BUSINESS = "agent_first_response_business"  # key: agent id


@dataclass(frozen=True, slots=True)
class Count:
    """Add ``n`` to a counter."""

    measure: str
    key: str = ""
    n: int = 1


@dataclass(frozen=True, slots=True)
class Sample:
    """Add one duration to a measure's sketch."""

    measure: str
    seconds: float
    key: str = ""


Delta = Count | Sample


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one event adds to one bucket (the channel's hour its measures fall in)."""

    event_id: str
    channel_id: str
    tenant_id: str
    hour: datetime
    deltas: tuple[Delta, ...]


def contribution_document(c: Contribution) -> dict[str, Any]:
    """A contribution as stored in its conversation's state until every bucket has it."""
    return {
        "event_id": c.event_id,
        "channel_id": c.channel_id,
        "tenant_id": c.tenant_id,
        "hour": c.hour,
        "deltas": [
            {"measure": d.measure, "key": d.key, "n": d.n}
            if isinstance(d, Count)
            else {"measure": d.measure, "key": d.key, "seconds": d.seconds}
            for d in c.deltas
        ],
    }


def contribution_from(doc: Mapping[str, Any]) -> Contribution:
    hour = doc["hour"]
    if isinstance(hour, str):
        hour = datetime.fromisoformat(hour)
    deltas: list[Delta] = [
        Sample(d["measure"], float(d["seconds"]), d.get("key", ""))
        if "seconds" in d
        else Count(d["measure"], d.get("key", ""), int(d["n"]))
        for d in doc["deltas"]
    ]
    return Contribution(doc["event_id"], doc["channel_id"], doc["tenant_id"], hour_of(hour), tuple(deltas))


def contribution(
    event_id: str, tenant_id: str, channel_id: str, at: datetime, *deltas: Delta
) -> Contribution:
    return Contribution(event_id, channel_id, tenant_id, hour_of(at), tuple(deltas))


def _slot(measure: str, key: str) -> str:
    return f"{measure}|{key}" if key else measure


def split_slot(slot: str) -> tuple[str, str]:
    measure, _, key = slot.partition("|")
    return measure, key


@dataclass
class Bucket:
    """One channel's hour: counters and duration sketches, and the events already counted."""

    tenant_id: str
    channel_id: str
    hour: datetime
    counts: dict[str, int] = field(default_factory=dict)
    durations: dict[str, Durations] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    version: int = 0

    @property
    def id(self) -> str:
        return bucket_id(self.channel_id, self.hour)

    def apply(self, contribution: Contribution) -> bool:
        """Add an event's deltas once; False (and no change) when the event was counted already."""
        if contribution.event_id in self.applied:
            return False
        for delta in contribution.deltas:
            slot = _slot(delta.measure, delta.key)
            if isinstance(delta, Count):
                self.counts[slot] = self.counts.get(slot, 0) + delta.n
            else:
                self.durations.setdefault(slot, Durations()).add(delta.seconds)
        self.applied.add(contribution.event_id)
        return True

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "hour": self.hour,
            "counts": dict(self.counts),
            "durations": {slot: d.dumps() for slot, d in self.durations.items()},
            "applied": sorted(self.applied),
            "version": self.version,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Bucket:
        hour = doc["hour"]
        return cls(
            tenant_id=doc["tenant_id"],
            channel_id=doc["channel_id"],
            hour=(hour if hour.tzinfo else hour.replace(tzinfo=UTC)).astimezone(UTC),
            counts={k: int(v) for k, v in doc.get("counts", {}).items()},
            durations={k: Durations.loads(v) for k, v in doc.get("durations", {}).items()},
            applied=set(doc.get("applied", ())),
            version=int(doc.get("version", 0)),
        )


def bucket_id(channel_id: str, hour: datetime) -> str:
    return f"{channel_id}|{hour.astimezone(UTC).strftime('%Y-%m-%dT%H')}"


def group_by_bucket(contributions: Iterable[Contribution]) -> dict[tuple[str, datetime], list[Contribution]]:
    """Contributions grouped by the bucket they go to, in order."""
    grouped: dict[tuple[str, datetime], list[Contribution]] = {}
    for c in contributions:
        grouped.setdefault((c.channel_id, c.hour), []).append(c)
    return grouped
