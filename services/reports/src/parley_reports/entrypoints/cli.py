"""``parley reports rebuild`` (also ``parley-reports rebuild``): recompute the read model.

Deletes every bucket and timing state, then reads the retained history of the public topics
reports consumes (``parley.conversations.v1``, ``parley.replies.v1``, ``parley.messages.inbound.v1``)
from their first records up to their ends as they were when the command started, and applies
every event through the same service the process runs. Measures are taken in event time and a
reply seen early waits for its conversation (docs/reports.md), so the order the topics are read
in does not change the result. Stop the reports deployment first (runbook): its consumer groups
keep their offsets, so it goes on from where it was once the rebuild is done.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from parley_events import TopicSpec, qualify, topics
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import FROM_THE_BEGINNING, decode_event
from parley_shared.progress import Progress
from parley_shared.settings import ServiceSettings, load_settings
from parley_shared.store import open_store

from parley_reports.adapters.channels import hours_from
from parley_reports.bootstrap import report_store
from parley_reports.domain.timing import ReportEvent
from parley_reports.entrypoints.subscribers import CONVERSATION_EVENTS, REPLY_EVENTS, STATUS_EVENTS
from parley_reports.service import ReportService
from parley_reports.settings import ReportsSettings

SOURCES: tuple[tuple[TopicSpec, tuple[type[ReportEvent], ...]], ...] = (
    (topics.CONVERSATIONS, CONVERSATION_EVENTS),
    (topics.REPLIES, REPLY_EVENTS),
    (topics.MESSAGES_INBOUND, STATUS_EVENTS),
)
STALL_TIMEOUT_S = 30.0


@dataclass
class RebuildReport:
    """What a rebuild did."""

    deleted: int = 0
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    seconds: float = 0.0


def _ce_type(record: Any) -> str | None:
    for key, value in record.headers or ():
        if key == "ce_type":
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


async def rebuild(settings: ReportsSettings) -> RebuildReport:
    """Clear the read model and apply the topics' retained history to it again."""
    started = time.monotonic()
    report = RebuildReport()
    store = await open_store(settings.store)
    # business-time measures need each channel's schedule: the channels' compacted topic, read
    # to its end first (the schedule as it is now; docs/reports.md, "Business time")
    channels = KafkaChannelDirectory(
        settings.kafka_bootstrap_servers, qualify(topics.CHANNELS.name, settings.topic_namespace)
    )
    await channels.start()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        client_id="parley-reports-rebuild",
        auto_offset_reset=FROM_THE_BEGINNING,
    )
    try:
        reports = report_store(store)
        await reports.ensure_indexes()
        report.deleted = await reports.clear()
        service = ReportService(reports, hours_of=hours_from(channels))
        await consumer.start()
        models: dict[str, dict[str, type[ReportEvent]]] = {}
        names: dict[str, str] = {}
        partitions: list[TopicPartition] = []
        for spec, handled in SOURCES:
            name = qualify(spec.name, settings.topic_namespace)
            names[name] = spec.name
            models[name] = {m.event_type: m for m in handled}
            found = consumer.partitions_for_topic(name)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(name) or set()
            partitions += [TopicPartition(name, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        starts = {tp: await consumer.position(tp) for tp in partitions}
        pending = {tp for tp in partitions if starts[tp] < ends[tp]}
        last_progress = time.monotonic()
        progress = Progress("rebuild", total=sum(ends[tp] - starts[tp] for tp in pending), unit="events")
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
                    if record.offset >= ends[tp]:
                        break
                    report.read += 1
                    progress.advance()
                    model = models[tp.topic].get(_ce_type(record) or "")
                    if model is None:
                        report.skipped += 1
                        continue
                    event = decode_event(model, record.value)
                    if await service.apply(event, names[tp.topic]):
                        report.applied += 1
                    else:
                        report.duplicates += 1
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        progress.close()
    finally:
        await consumer.stop()
        await channels.stop()
        await store.close()
    report.seconds = time.monotonic() - started
    return report


def _run(_settings: ServiceSettings, _args: argparse.Namespace) -> int:
    settings = load_settings(ReportsSettings)
    report = asyncio.run(rebuild(settings))
    print(
        f"deleted {report.deleted} bucket(s) and state(s); read {report.read} record(s): "
        f"applied {report.applied}, duplicates {report.duplicates}, other types {report.skipped}; "
        f"{report.seconds:.1f}s"
    )
    return 0


def main(argv: Sequence[str]) -> int:
    """``parley-reports rebuild``."""
    parser = argparse.ArgumentParser(prog="parley-reports rebuild", description=__doc__)
    args = parser.parse_args(list(argv))
    return _run(load_settings(ReportsSettings), args)


def register(commands: Any) -> None:
    """Add ``parley reports rebuild`` to the ops CLI."""
    parser = commands.add_parser("reports", help="the Supervisors' reports read model")
    sub = parser.add_subparsers(dest="reports_command", required=True)
    rebuild_parser = sub.add_parser(
        "rebuild",
        help="recompute the reports from the topics' retained history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rebuild_parser.set_defaults(run=_run)
