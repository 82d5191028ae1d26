"""The reports process's Prometheus metrics: how far behind the public topics the read model is."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LAG_SECONDS = Gauge(
    "parley_reports_lag_seconds",
    "Seconds between now and the time of the last event the read model applied, by topic "
    "(grows while the consumer falls behind, or while the topic is quiet).",
    ["topic"],
)
LAST_APPLIED = Gauge(
    "parley_reports_last_event_timestamp_seconds",
    "Unix time of the last event the read model applied, by topic.",
    ["topic"],
)
EVENTS = Counter(
    "parley_reports_events_total",
    "Public events applied to the read model, by topic and outcome (applied or duplicate).",
    ["topic", "outcome"],
)
CONFLICTS = Counter(
    "parley_reports_write_conflicts_total",
    "Bucket or state saves that lost a race with another writer and were applied again.",
    ["kind"],
)
