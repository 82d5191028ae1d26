"""``parley replay``: re-normalize archived deliveries, e.g. after a normalizer fix.

Reads ``parley.webhooks.raw.v1`` from the first record at or after ``--since`` up to ``--until``
(or the end as it was when the command started), runs each delivery through the same normalizer
the service uses, and publishes the results. Event ids are deterministic, so events that were
already published come out with the same ids and downstream consumers apply them once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from parley_events import WebhookReceived, qualify, topics
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import (
    EventPublisher,
    RetryPolicy,
    RetryThenDeadLetter,
    kafka_dead_letter_sink,
    make_broker,
)
from parley_shared.progress import Progress
from parley_shared.settings import ServiceSettings, load_settings

from parley_ingest.adapters.aliases import KafkaCustomerAliases
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.entrypoints.subscribers import normalizer_router
from parley_ingest.service import Normalizer, UnprocessableDelivery
from parley_ingest.settings import NormalizerSettings

STALL_TIMEOUT_S = 30.0


@dataclass
class ReplayReport:
    """What a replay did."""

    read: int = 0
    replayed: int = 0
    failed: int = 0
    skipped_provider: int = 0
    failed_items: int = 0


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def replay(
    settings: NormalizerSettings, since: datetime, until: datetime | None, provider: str | None
) -> ReplayReport:
    raw_topic = qualify(topics.WEBHOOKS_RAW.name, settings.topic_namespace)
    directory = KafkaChannelDirectory(
        settings.kafka_bootstrap_servers, qualify(topics.CHANNELS.name, settings.topic_namespace)
    )
    aliases = KafkaCustomerAliases(
        settings.kafka_bootstrap_servers, qualify(topics.CUSTOMER_ALIASES.name, settings.topic_namespace)
    )
    broker = make_broker(settings, client_id="parley-replay")
    publisher = EventPublisher(
        broker,
        source="/parley/normalizer",
        namespace=settings.topic_namespace,
        ack_timeout_s=settings.kafka_ack_timeout_s,
    )

    async def publish(event: Any, event_id: str) -> None:
        await publisher.publish(event, event_id=event_id)

    # an empty dedupe memory: replaying means publishing again, with the same ids
    normalizer = Normalizer(directory, publish, catch_up_s=5.0, recent=RecentIds(0), aliases=aliases)
    # it publishes as the normalizer does: what the normalizer's router declares
    sink = kafka_dead_letter_sink(broker)
    publisher.declare(normalizer_router(settings, normalizer, sink, RetryThenDeadLetter(sink, RetryPolicy())))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    report = ReplayReport()
    await broker.connect()
    await directory.start()
    await aliases.start()
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(raw_topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(raw_topic) or set()
        tps = [TopicPartition(raw_topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        pending = set()
        for tp in tps:
            start = starts.get(tp)
            if start is None:
                continue
            consumer.seek(tp, start.offset)
            if start.offset < ends[tp]:
                pending.add(tp)
        until_ms = int(until.timestamp() * 1000) if until else None
        last_progress = time.monotonic()
        # at most this many records (fewer with --until): on a terminal, done, rate and time left
        total = sum(ends[tp] - starts[tp].offset for tp in pending if starts.get(tp) is not None)
        progress = Progress("replay", total=total, unit="deliveries")
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            if any(batches.values()):
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_TIMEOUT_S:
                raise RuntimeError(
                    f"no records from {sorted(str(tp) for tp in pending)} for {STALL_TIMEOUT_S}s"
                )
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp] or (until_ms is not None and record.timestamp >= until_ms):
                        pending.discard(tp)
                        break
                    report.read += 1
                    progress.advance()
                    await _replay_one(normalizer, record.value, provider, report)
                    if record.offset + 1 >= ends[tp]:
                        pending.discard(tp)
        progress.close()
    finally:
        await consumer.stop()
        await aliases.stop()
        await directory.stop()
        await broker.stop()
    return report


async def _replay_one(
    normalizer: Normalizer, value: bytes, provider: str | None, report: ReplayReport
) -> None:
    raw = WebhookReceived.model_validate_json(value)
    if provider and raw.provider != provider:
        report.skipped_provider += 1
        return
    try:
        failures = await normalizer.normalize(raw)
        report.replayed += 1
    except UnprocessableDelivery as exc:
        report.failed += 1
        print(f"cannot normalize {raw.delivery_id}: {exc}")
        return
    for failure in failures:
        # the delivery's other events were published; this item still cannot be normalized
        report.failed_items += 1
        print(f"cannot normalize {raw.delivery_id} at {failure.position}: {failure.reason}")


def _run(_settings: ServiceSettings, args: argparse.Namespace) -> int:
    settings = load_settings(NormalizerSettings)
    report = asyncio.run(replay(settings, args.since, args.until, args.provider))
    print(
        f"read {report.read} archived deliveries; replayed {report.replayed}; "
        f"failed {report.failed}; items not normalized {report.failed_items}; "
        f"other providers {report.skipped_provider}"
    )
    return 1 if report.failed or report.failed_items else 0


def register(commands: Any) -> None:
    """Add ``parley replay`` to the ops CLI."""
    parser = commands.add_parser(
        "replay",
        help="re-normalize archived webhook deliveries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--since", type=_when, required=True, help="ISO 8601 time, e.g. 2026-11-20T00:00Z")
    parser.add_argument("--until", type=_when, default=None, help="ISO 8601 time (default: now)")
    parser.add_argument("--provider", choices=["meta", "x"], default=None, help="only this webhook endpoint")
    parser.set_defaults(run=_run)
