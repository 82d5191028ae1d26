"""Prometheus metrics shared by every process (names follow Prometheus conventions)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_PUBLISHED = Counter("parley_events_published_total", "Events published to Kafka.", ["event_type"])
PRODUCER_RENEWALS = Counter(
    "parley_kafka_producer_renewals_total",
    "Kafka producers replaced after a fatal send error (the cluster lost the producer's state).",
)
EVENTS_CONSUMED = Counter(
    "parley_events_consumed_total", "Events handled by a subscriber.", ["event_type", "outcome"]
)
CONSUMER_RETRIES = Counter(
    "parley_consumer_retries_total", "Handler attempts that failed and were retried.", ["kind"]
)
DEAD_LETTERED = Counter("parley_dead_lettered_total", "Records sent to a DLQ after all retries.", ["topic"])
HANDLER_SECONDS = Histogram(
    "parley_handler_duration_seconds", "Time spent handling one record.", ["event_type"]
)
