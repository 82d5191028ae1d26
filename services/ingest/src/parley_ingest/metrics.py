"""Ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from starlette.responses import Response

DELIVERIES = Counter(
    "parley_ingest_deliveries_total",
    "Webhook deliveries by provider and outcome.",
    ["provider", "outcome"],
)
SIGNATURE_FAILURES = Counter(
    "parley_ingest_signature_failures_total",
    "Deliveries refused for a missing or wrong signature.",
    ["provider"],
)
HANDSHAKES = Counter(
    "parley_ingest_handshakes_total", "Subscription handshakes by outcome.", ["provider", "outcome"]
)
HANDSHAKE_REFUSALS = Counter(
    "parley_ingest_handshake_refusals_total",
    "Webhook handshakes not answered, by provider and reason: refused (Meta: wrong verify token), "
    "missing or malformed (X: no crc_token, or not a crc_token's shape), rate_limited.",
    ["provider", "reason"],
)
ACK_SECONDS = Histogram(
    "parley_ingest_broker_ack_seconds",
    "From request received to the raw record acknowledged.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PUBLISHES_IN_FLIGHT = Gauge(
    "parley_ingest_publishes_in_flight",
    "Raw archive publishes waiting for the broker's acknowledgement (at most "
    "PARLEY_MAX_PUBLISHES_IN_FLIGHT; deliveries beyond it are answered 503 with outcome overloaded).",
)
PROVIDER_CHARGES = Counter(
    "parley_normalizer_provider_charges",
    "Webhook deliveries the provider bills per event (X Activity API), by channel and the provider's "
    "billing category (a fixed set; free categories counted too): multiply by the category's price "
    "for a channel's cost (docs/operations.md).",
    ["provider", "channel_id", "category"],
)
NORMALIZED = Counter(
    "parley_normalizer_events_total", "Normalized events published.", ["provider", "event_type"]
)
DUPLICATES = Counter(
    "parley_normalizer_duplicates_total",
    "Events not republished: seen within the dedupe window.",
    ["provider"],
)
NORMALIZATION_FAILURES = Counter(
    "parley_normalizer_failures_total", "Archived deliveries that could not be normalized.", ["provider"]
)
ITEM_FAILURES = Counter(
    "parley_normalizer_item_failures_total",
    "Items of a delivery not normalized (each dead-lettered alone with its position and reason).",
    ["provider"],
)
SKIPPED = Counter(
    "parley_normalizer_skipped_events_total", "Provider events not normalized, by kind.", ["kind"]
)
CONTENT_LOOKUPS = Counter(
    "parley_normalizer_content_lookups_total",
    "Messages a webhook named by ids only (Instagram mentions) whose text and author were fetched.",
    ["provider"],
)
CONTENT_LOOKUP_RETRIES = Counter(
    "parley_normalizer_content_lookup_retries_total",
    "Content lookups asked again after a transient failure (an outage, throttling).",
    ["provider"],
)
CONTENT_UNAVAILABLE = Counter(
    "parley_normalizer_content_unavailable_total",
    "Messages published without the text their webhook did not carry, by reason (a fixed set: "
    "not_configured, no_credentials, reauth_required, permission_missing, not_found, rate_limited, "
    "provider_unavailable).",
    ["provider", "reason"],
)
UNKNOWN_ACCOUNTS = Counter(
    "parley_normalizer_unknown_accounts_total",
    "Events for accounts no channel claims.",
    ["provider"],
)


def outcome(provider: str, name: str, response: Response) -> Response:
    """Count a delivery's outcome and pass its response through."""
    DELIVERIES.labels(provider=provider, outcome=name).inc()
    return response
