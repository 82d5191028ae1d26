"""Policy's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DECISIONS = Counter(
    "parley_policy_decisions_total",
    "Reply decisions by provider and outcome (approved or the first reason).",
    ["provider", "outcome"],
)
TEMPLATE_APPROVALS = Counter(
    "parley_policy_template_approvals_total",
    "WhatsApp template replies approved, by the template's quality rating when approved (GREEN, "
    "YELLOW, RED, UNKNOWN; NOT_KNOWN before policy heard one): sends of low-quality templates.",
    ["quality"],
)
READS_ON_OPEN = Counter(
    "parley_policy_reads_on_open_total",
    "Customer messages marked read because an agent opened the conversation (channels with "
    "mark_read_on_open), by provider and outcome (read, or why not).",
    ["provider", "outcome"],
)
DELIVERIES = Counter(
    "parley_policy_deliveries_total",
    "Replies delivered to providers, by provider and outcome.",
    ["provider", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "parley_policy_delivery_duration_seconds",
    "From the start of a delivery to the provider's answer (retries included).",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
)
DELIVERY_RETRIES = Counter(
    "parley_policy_delivery_retries_total",
    "Sends retried after a transient provider error, by provider and error kind.",
    ["provider", "error_kind"],
)
PROVIDER_CHARGES = Counter(
    "parley_policy_provider_charges",
    "Replies sent that the provider bills per request (X), by channel and the provider's billing "
    "category (a fixed set): multiply by the category's price for a channel's cost (docs/operations.md).",
    ["provider", "channel_id", "category"],
)
