"""Kafka plumbing: a durable broker, CloudEvents publishing, and retry-then-DLQ consumption.

Producers always use ``acks="all"`` with idempotence. Subscribers use ``NACK_ON_ERROR``: an
offset is committed only after the handler returned, so effects are durable first. A failing
record is retried in place with backoff (the partition waits, so per-key order holds); a record
that keeps failing for a reason other than an unreachable dependency is published to the
topic's DLQ with the error and its coordinates, and then committed so the partition flows on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiokafka.errors
import orjson
import pydantic
import pymongo.errors
import structlog
from faststream import AckPolicy, BaseMiddleware, StreamMessage
from faststream.kafka import KafkaBroker
from opentelemetry import propagate
from parley_events import CloudEventAttributes, Event, dlq_name, qualify

from parley_shared import metrics
from parley_shared.logging import get_logger
from parley_shared.settings import ServiceSettings

log = get_logger(__name__)

E = TypeVar("E", bound=Event)

CONSUMER_ACK_POLICY = AckPolicy.NACK_ON_ERROR
"""Every Parley subscriber commits after its effects, and rewinds on an escaped error."""


def make_broker(settings: ServiceSettings, client_id: str, middlewares: Sequence[Any] = ()) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and never duplicates on retry."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_batch_size=settings.kafka_max_batch_bytes,
        request_timeout_ms=int(settings.kafka_ack_timeout_s * 1000) + 5000,
        graceful_timeout=settings.shutdown_timeout_s,
        middlewares=tuple(middlewares),
        logger=None,
    )


def encode_event(event: Event) -> bytes:
    """The JSON data of an event (UTC datetimes, no unknown fields)."""
    return orjson.dumps(event.model_dump(mode="json"))


def event_headers(event: Event, *, event_id: str, source: str, time: datetime) -> dict[str, str]:
    """CloudEvents binary-mode headers for an event."""
    tenant = getattr(event, "tenant_id", None)
    return CloudEventAttributes(
        id=event_id,
        source=source,
        type=event.event_type,
        time=time,
        subject=event.subject(),
        tenantid=tenant if isinstance(tenant, str) else None,
    ).to_headers()


@dataclass(frozen=True, slots=True)
class EventPublisher:
    """Publishes events on their catalog topic, in a namespace, with CloudEvents headers."""

    broker: KafkaBroker
    source: str
    namespace: str = ""
    ack_timeout_s: float = 5.0
    inject_trace: bool = False
    """Write the current trace context (``traceparent``) into the headers here, for a broker
    without the telemetry middleware that would otherwise do it."""

    def topic_for(self, event: Event) -> str:
        return qualify(event.topic.name, self.namespace)

    async def publish(self, event: Event, *, event_id: str, time: datetime | None = None) -> None:
        """Publish and wait for the broker's acks=all acknowledgement (or raise)."""
        headers = event_headers(event, event_id=event_id, source=self.source, time=time or datetime.now(UTC))
        if self.inject_trace:
            propagate.inject(headers)
        # a timeout scope, not wait_for: no extra task per publish on ingest's hot path
        async with asyncio.timeout(self.ack_timeout_s):
            await self.broker.publish(
                encode_event(event),
                topic=self.topic_for(event),
                key=event.key().encode(),
                headers=headers,
            )
        metrics.EVENTS_PUBLISHED.labels(event_type=event.event_type).inc()


def decode_event(model: type[E], body: bytes) -> E:
    """Validate a record's JSON data against its model (raises on bad data)."""
    return model.model_validate_json(body)


# --- retry then dead-letter ------------------------------------------------------------


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    pymongo.errors.ConnectionFailure,
    pymongo.errors.ServerSelectionTimeoutError,
    pymongo.errors.NetworkTimeout,
    aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.KafkaTimeoutError,
    aiokafka.errors.NotLeaderForPartitionError,
    aiokafka.errors.RequestTimedOutError,
    TimeoutError,
)


class PermanentError(Exception):
    """Raise (or subclass) to say: this record can never succeed, dead-letter it at once."""


def is_permanent(exc: BaseException) -> bool:
    """Bad data (unparseable, invalid against its model): retrying cannot help."""
    return isinstance(exc, PermanentError | pydantic.ValidationError)


class TransientError(Exception):
    """Raise (or subclass) to say: retry this record until it works, never dead-letter it."""


def is_transient(exc: BaseException) -> bool:
    """An unreachable dependency: the record is fine, so wait instead of dead-lettering it."""
    return isinstance(exc, (TransientError, *TRANSIENT_ERRORS))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a failing record."""

    max_attempts: int = 5
    backoff_s: float = 0.2
    backoff_max_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, capped."""
        base: float = min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.consumer_max_attempts,
            backoff_s=settings.consumer_retry_backoff_s,
            backoff_max_s=settings.consumer_retry_backoff_max_s,
        )


DeadLetterSink = Callable[[Any, BaseException, int], Awaitable[None]]


def dlq_headers(record: Any, error: BaseException, attempts: int) -> dict[str, str]:
    """Headers of a dead-lettered record: its own headers plus why and where it came from."""
    headers = {
        k: (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v))
        for k, v in (record.headers or ())
    }
    headers.update(
        {
            "parley_dlq_error": f"{type(error).__name__}: {error}"[:2000],
            "parley_dlq_attempts": str(attempts),
            "parley_dlq_topic": record.topic,
            "parley_dlq_partition": str(record.partition),
            "parley_dlq_offset": str(record.offset),
            "parley_dlq_timestamp_ms": str(record.timestamp),
            "parley_dlq_failed_at": datetime.now(UTC).isoformat(),
        }
    )
    return headers


def kafka_dead_letter_sink(broker: KafkaBroker, timeout_s: float = 10.0) -> DeadLetterSink:
    """Publish a failed record, byte for byte, to ``<its topic>.dlq`` and wait for acks=all."""

    async def sink(record: Any, error: BaseException, attempts: int) -> None:
        await asyncio.wait_for(
            broker.publish(
                record.value,
                topic=dlq_name(record.topic),
                key=record.key,
                headers=dlq_headers(record, error, attempts),
            ),
            timeout=timeout_s,
        )
        metrics.DEAD_LETTERED.labels(topic=record.topic).inc()

    return sink


def record_log_context(record: Any) -> dict[str, str]:
    """Log context of a consumed record: its event id, tenant and subject from the ce_* headers."""
    wanted = {
        "ce_id": "event_id",
        "ce_tenantid": "tenant_id",
        "ce_subject": "subject",
        "ce_type": "event_type",
    }
    context: dict[str, str] = {}
    for key, value in getattr(record, "headers", None) or ():
        if key in wanted:
            context[wanted[key]] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return context


class RetryThenDeadLetter:
    """Broker middleware factory: retry a failing record, then send it to its DLQ.

    The sink may be set after construction, since the broker that publishes to the DLQ is
    built with this middleware.
    """

    def __init__(
        self,
        sink: DeadLetterSink | None,
        policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.sink = sink
        self.policy = policy
        self.sleep = sleep

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        return _RetryThenDeadLetter(msg, context=context, owner=self)

    async def run(self, work: Callable[[], Awaitable[Any]], record: Any) -> Any:
        """Run ``work`` for one record: wait out outages, retry failures, then dead-letter it.

        Returns what ``work`` returned, or ``DEAD_LETTERED``. Batch handlers call this for each
        record when a batch must be taken apart, so a poison record is isolated as it would be
        by a per-record subscriber.
        """
        policy = self.policy
        failures = 0  # only failures of the record itself count towards max_attempts
        outages = 0  # an unreachable dependency is waited out, however long it takes
        while True:
            try:
                return await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                where = {
                    "topic": getattr(record, "topic", None),
                    "partition": getattr(record, "partition", None),
                    "offset": getattr(record, "offset", None),
                }
                if is_transient(exc):
                    outages += 1
                    metrics.CONSUMER_RETRIES.labels(kind="transient").inc()
                    log.warning(
                        "dependency unavailable, will retry", error=repr(exc), outages=outages, **where
                    )
                    await self.sleep(policy.delay(min(outages, 16)))
                    continue
                failures += 1
                attempt = failures
                metrics.CONSUMER_RETRIES.labels(kind="failure").inc()
                if attempt < policy.max_attempts and not is_permanent(exc):
                    log.warning("record failed, will retry", error=repr(exc), attempt=attempt, **where)
                    await self.sleep(policy.delay(attempt))
                    continue
                log.error(
                    "record failed after all attempts, dead-lettering",
                    error=repr(exc),
                    attempt=attempt,
                    **where,
                )
                # If this raises, the record is not committed and comes back: never lost.
                try:
                    if self.sink is None:
                        raise RuntimeError("no dead-letter sink configured") from exc
                    await self.sink(record, exc, attempt)
                except Exception as sink_error:
                    log.error(
                        "dead-letter publish failed; record will be redelivered",
                        error=repr(sink_error),
                        **where,
                    )
                    # the subscriber rewinds to this record: pause so that is not a hot loop
                    await self.sleep(policy.delay(policy.max_attempts))
                    raise
                return DEAD_LETTERED

    async def run_batch(self, work: Callable[[], Awaitable[Any]], records: tuple[Any, ...]) -> Any:
        """Run a batch handler until it succeeds: a batch is never dead-lettered as a whole.

        Batch handlers isolate bad records themselves (with :meth:`run`); an error that still
        escapes them is a dependency or a bug, so the batch is retried with backoff, uncommitted.
        """
        attempts = 0
        while True:
            try:
                return await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts += 1
                kind = "transient" if is_transient(exc) else "failure"
                metrics.CONSUMER_RETRIES.labels(kind=kind).inc()
                first = records[0] if records else None
                log.warning(
                    "batch failed, will retry",
                    error=repr(exc),
                    attempts=attempts,
                    records=len(records),
                    topic=getattr(first, "topic", None),
                )
                await self.sleep(self.policy.delay(min(attempts, 16)))


DEAD_LETTERED = object()
"""What a record sent to its DLQ leaves behind (the handler's own result is None)."""


class _RetryThenDeadLetter(BaseMiddleware):
    __slots__ = ("owner",)

    def __init__(self, msg: Any, /, *, context: Any, owner: RetryThenDeadLetter) -> None:
        super().__init__(msg, context=context)
        self.owner = owner

    async def consume_scope(
        self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        record = msg.raw_message
        if isinstance(record, tuple):  # a batch subscriber
            started = time.perf_counter()
            try:
                return await self.owner.run_batch(lambda: call_next(msg), record)
            finally:
                metrics.HANDLER_SECONDS.labels(event_type="batch").observe(time.perf_counter() - started)
        context = record_log_context(record)
        event_type = context.get("event_type", "unknown")
        started = time.perf_counter()
        outcome = "failed"
        try:
            with structlog.contextvars.bound_contextvars(**context):
                result = await self.owner.run(lambda: call_next(msg), record)
            outcome = "dead_lettered" if result is DEAD_LETTERED else "ok"
            return None if result is DEAD_LETTERED else result
        finally:
            metrics.HANDLER_SECONDS.labels(event_type=event_type).observe(time.perf_counter() - started)
            metrics.EVENTS_CONSUMED.labels(event_type=event_type, outcome=outcome).inc()
