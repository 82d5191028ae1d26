"""The Grafana dashboard queries only metrics Parley exports (or the documented kafka-exporter lag)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import parley_ingest.metrics  # noqa: F401 - registers ingest's metrics
import parley_onboarding.metrics  # noqa: F401 - registers onboarding's metrics
import parley_policy.metrics  # noqa: F401 - registers policy's metrics
import parley_providers.metrics  # noqa: F401 - registers the providers' gauge
import parley_reports.metrics  # noqa: F401 - registers the reports read model's metrics
import parley_routing.metrics  # noqa: F401 - registers routing's metrics
import parley_shared.metrics  # noqa: F401 - registers the shared metrics
import pytest
from prometheus_client import REGISTRY

pytestmark = pytest.mark.unit

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "parley-dashboard.json"
EXTERNAL = {"kafka_consumergroup_lag"}  # from kafka_exporter, see docs/operations.md ("Lag and dead letters")
NOT_ON_THE_DASHBOARD = {
    # detail an operator reads while investigating, not while watching (docs/operations.md)
    "parley_ingest_handshakes": "CRC and verify-token handshakes: a handful an hour",
    "parley_ingest_handshake_refusals": "probes of the handshake; the security alert, not a panel",
    "parley_normalizer_duplicates": "provider redeliveries skipped: expected, not actionable",
    "parley_normalizer_failures": "whole deliveries dead-lettered: on the dead-lettered panel",
    "parley_normalizer_item_failures": "items dead-lettered alone: on the dead-lettered panel",
    "parley_normalizer_skipped_events": "provider events Parley deliberately skips, by kind",
    "parley_events_published": "the throughput of each event type: the normalized events panel shows intake",
    "parley_events_consumed": "the same records as the handler time panel",
    "parley_onboarding_page_unsubscribes": "one per disconnect",
    "parley_reports_last_event_timestamp_seconds": "the lag panel's source, as a timestamp",
    "parley_reports_write_conflicts": "races between report writers, retried; read when reports look slow",
    "parley_policy_reads_on_open": "read receipts sent when agents open conversations: best effort, "
    "read while investigating a customer's report",
    "parley_routing_changes_of_unknown_messages": "edits and removals of comments Parley never received "
    "(older ones, posts): expected, not actionable",
}


def exported_samples() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("parley_"):
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(
                family.type, ("",)
            )
            names |= {family.name + s for s in suffixes}
    return names


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\b(parley_[a-z0-9_]+|kafka_[a-z0-9_]+)", e)}
    unknown = used - exported_samples() - EXTERNAL
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("webhooks", "lag", "dead-lettered", "decisions", "delivery latency"):
        assert topic in titles


def test_every_metric_is_on_the_dashboard_or_said_why_not() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("parley_")}
    missing = {name for name in families if name not in queried} - set(NOT_ON_THE_DASHBOARD)
    assert not missing, f"add a panel for these metrics or say why not in NOT_ON_THE_DASHBOARD: {missing}"
    assert set(NOT_ON_THE_DASHBOARD) <= families  # no reason kept for a metric that is gone
