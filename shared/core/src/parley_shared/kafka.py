"""Kafka plumbing: a durable broker, routers, CloudEvents publishing, and retry-then-DLQ consumption.

Producers always use ``acks="all"`` with idempotence. Subscribers use ``NACK_ON_ERROR``: an
offset is committed only after the handler returned, so effects are durable first. A failing
record is retried in place with backoff (the partition waits, so per-key order holds); a record
that keeps failing for a reason other than an unreachable dependency is published to the
topic's DLQ with the error and its coordinates, and then committed so the partition flows on.

Each service declares its place on the bus on one ``KafkaRouter`` (:func:`service_router`):
subscribers with typed event bodies, chosen by the ``ce_type`` header (:func:`of_type`, with
:func:`acknowledge_other_types` last), and the event types it publishes (:func:`publishes`).
:class:`EventPublisher` refuses an event type its router does not declare, and the AsyncAPI
documents are generated from the routers, so the description of the bus follows the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Protocol, TypeVar, Union, get_args, get_origin

import aiokafka
import aiokafka.errors
import orjson
import psycopg
import psycopg_pool
import pydantic
import pymongo.errors
import structlog
from faststream import AckPolicy, BaseMiddleware, StreamMessage
from faststream._internal.context import Context as ContextField
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.message import KafkaMessage as FastStreamKafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from parley_events import CloudEventAttributes, Event, dlq_name, qualify
from pydantic import Field, SkipValidation

from parley_shared import metrics
from parley_shared.logging import get_logger
from parley_shared.settings import ServiceSettings
from parley_shared.tracing import record_traces, span

log = get_logger(__name__)

E = TypeVar("E", bound=Event)

CONSUMER_ACK_POLICY = AckPolicy.NACK_ON_ERROR
"""Every Parley subscriber commits after its effects, and rewinds on an escaped error."""

BATCH_WAIT_MS = 20
"""How long a batch subscriber's poll waits for a first record (FastStream's ``batch_timeout_ms``).

FastStream's default, 200 ms, is also how long it then sleeps after an empty poll, so a record
arriving at a consumer that had just caught up waited up to 400 ms before its batch began: more
than the whole pipeline's 100 ms target (issue #18). An idle consumer polls about 25 times a
second instead of 2.5."""


FETCH_WAIT_MS = 25
"""How long the broker may hold a subscriber's fetch while it has no new records (aiokafka's
``fetch_max_wait_ms``; Kafka's default is 500).

aiokafka sends one fetch at a time to a broker, for the assigned partitions whose records were
not still waiting to be handled. A batch handled for longer than its prefetch backoff (100 ms)
lets a fetch go out for the other partitions alone; when only the busy partition gets records
(all of one WhatsApp business account's deliveries share a raw partition), that fetch waits the
whole time for records that never come, and the busy partition's next records wait behind it.
With 500 ms, ``make bench`` saw each batch stage hold records about 400 ms (issue #18). An idle
subscriber asks each broker about 40 times a second instead of 2."""


FROM_THE_BEGINNING = "earliest"
"""``auto_offset_reset`` of a consumer that assigns itself partitions and seeks to their beginning
(the channel directory, ``parley dlq``, the reports rebuild).

aiokafka resets a freshly assigned partition by the consumer's own strategy (Kafka's default,
``latest``) while the seek's reset is requested; when that first answer comes back after the
seek it still applies it, and the reader starts at the end (the Java client had the same race,
KAFKA-7703). ``make test`` saw ``dlq inspect`` read nothing of a DLQ that held four records
(2026-12-01). With the same strategy on both, whichever answer lands first is the beginning."""


def bootstrap_list(servers: str) -> list[str]:
    """``host:port,host:port`` as a list: FastStream takes one string as one address."""
    return [address.strip() for address in servers.split(",") if address.strip()]


def make_broker(settings: ServiceSettings, client_id: str, middlewares: Sequence[Any] = ()) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and never duplicates on retry."""
    return KafkaBroker(
        bootstrap_list(settings.kafka_bootstrap_servers),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_batch_size=settings.kafka_max_batch_bytes,
        request_timeout_ms=int(settings.kafka_ack_timeout_s * 1000) + 5000,
        graceful_timeout=settings.shutdown_timeout_s,
        middlewares=tuple(middlewares),
        logger=None,
    )


PRODUCER_FATAL = (aiokafka.errors.OutOfOrderSequenceNumber, aiokafka.errors.ProducerFenced)
"""Errors that end an aiokafka producer's sender for good: every later send raises the same.

A cluster that lost its producer state (every broker killed at once, an unclean leader election)
answers an idempotent producer's next batch with OUT_OF_ORDER_SEQUENCE_NUMBER; aiokafka 0.14 then
stops the producer's sender, so the process could never publish again without a new producer."""

_renewing = asyncio.Lock()


async def renew_producer(broker: KafkaBroker, failed: object | None) -> bool:
    """Give ``broker`` a new producer (a new producer id, sequences from zero) in place of
    ``failed``, the aiokafka producer a send failed on; False when another publish renewed it
    first. The records that failed were never acknowledged: their senders retry them."""
    holder = broker.config.producer  # FastStream's wrapper; its state holds the aiokafka producer
    async with _renewing:
        stale = holder._producer  # type: ignore[attr-defined]
        if failed is None or getattr(stale, "producer", None) is not failed:
            return False
        fresh = aiokafka.AIOKafkaProducer(**broker._connection_kwargs)
        await fresh.start()
        holder._producer = type(stale)(fresh)  # type: ignore[attr-defined]
    metrics.PRODUCER_RENEWALS.inc()
    log.warning("kafka producer renewed after a fatal send error")
    try:
        async with asyncio.timeout(5):
            await stale.stop()
    except Exception as exc:  # the old producer's sender is dead already; nothing of it is needed
        log.info("the old kafka producer did not stop cleanly", error=repr(exc))
    return True


def current_producer(broker: KafkaBroker) -> object | None:
    """The aiokafka producer ``broker`` publishes through now (None before it connects)."""
    holder = getattr(getattr(broker, "config", None), "producer", None)
    return getattr(getattr(holder, "_producer", None), "producer", None)


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


class UndeclaredEvent(TypeError):
    """A service published an event type its router does not declare (a bug, not bad data)."""


class Publishes(Protocol):
    """What a service's code publishes through: :class:`EventPublisher`, or a test's fake."""

    async def publish(self, event: Event, *, event_id: str, time: datetime | None = None) -> None: ...


@dataclass(slots=True)
class EventPublisher:
    """Publishes events on their catalog topic, in a namespace, with CloudEvents headers.

    It publishes only the event types its service's router declares (:meth:`declare`, done by
    the runtime when it includes the router): the AsyncAPI document, generated from the router,
    cannot leave out an event type the service sends.
    """

    broker: KafkaBroker
    source: str
    namespace: str = ""
    ack_timeout_s: float = 5.0
    inject_trace: bool = False
    """On FastStream's test broker: write the current trace context (``traceparent``) into the
    headers here, for a broker without the telemetry middleware that would otherwise do it. A
    real producer always gets the current trace context."""
    tracing: TracerProvider | None = None
    """Give each published event its own producer span (consumers' publishers): what a service
    publishes while handling a record is then a hop of its own in the trace."""
    declared: frozenset[str] = field(default_factory=frozenset)
    """The event types this publisher may publish (none until :meth:`declare`)."""

    def declare(self, router: KafkaRouter) -> None:
        """Publish exactly the event types ``router`` declares from now on."""
        self.declared = frozenset(declared_events(router))

    def topic_for(self, event: Event) -> str:
        return qualify(event.topic.name, self.namespace)

    async def publish(self, event: Event, *, event_id: str, time: datetime | None = None) -> None:
        """Publish and wait for the broker's acks=all acknowledgement (or raise)."""
        producer = current_producer(self.broker)
        topic = self.topic_for(event)
        try:
            # a timeout scope, not wait_for: no extra task per publish on ingest's hot path
            async with asyncio.timeout(self.ack_timeout_s):
                with self._span(topic):
                    ack = await self._hand_over(event, event_id, time, topic, producer)
                    if isinstance(ack, asyncio.Future):
                        await ack
        except PRODUCER_FATAL:
            # this publish fails (its caller retries, as after any unacknowledged send); the next
            # one goes through a new producer
            await renew_producer(self.broker, producer)
            raise
        metrics.EVENTS_PUBLISHED.labels(event_type=event.event_type).inc()

    async def send(self, event: Event, *, event_id: str, time: datetime | None = None) -> Sent:
        """Hand the event to the producer without waiting for the broker: :meth:`confirm` waits
        for its acknowledgement later. Several sends in flight keep their order on a partition
        (the producer is idempotent and aiokafka sends one batch per partition at a time)."""
        producer = current_producer(self.broker)
        topic = self.topic_for(event)
        try:
            async with asyncio.timeout(self.ack_timeout_s):  # the producer's buffer may be full
                with self._span(topic):
                    ack = await self._hand_over(event, event_id, time, topic, producer)
        except PRODUCER_FATAL:
            await renew_producer(self.broker, producer)
            raise
        if not isinstance(ack, asyncio.Future):  # FastStream's test broker answers at once
            answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            answered.set_result(ack)
            ack = answered
        return Sent(ack=ack, producer=producer, event_type=event.event_type)

    def _span(self, topic: str) -> contextlib.AbstractContextManager[object]:
        """One producer span per published event, when this publisher makes spans."""
        if self.tracing is None:
            return contextlib.nullcontext()
        return span(
            self.tracing,
            f"{topic} publish",
            trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.operation": "publish",
            },
        )

    async def _hand_over(
        self, event: Event, event_id: str, time: datetime | None, topic: str, producer: object | None
    ) -> Any:
        """Give the record to the producer; return its acknowledgement's future (or, from
        FastStream's test broker, the answer itself).

        A real producer is given the record directly, not through ``broker.publish``: FastStream's
        publish path (its middlewares' publish scopes, two telemetry spans, a correlation id) was
        the largest part of routing's CPU per message in the profile (issue #18). The record is
        the same: the CloudEvents headers, the trace context of the current span, the JSON value.
        """
        headers = self._headers(event, event_id, time)
        value, key = encode_event(event), event.key().encode()
        if isinstance(producer, aiokafka.AIOKafkaProducer):
            propagate.inject(headers)
            return await producer.send(
                topic, value, key=key, headers=[(name, text.encode()) for name, text in headers.items()]
            )
        # FastStream's test broker, which delivers to its subscribers in memory
        if self.inject_trace:
            propagate.inject(headers)
        return await self.broker.publish(value, topic=topic, key=key, headers=headers, no_confirm=True)

    def _headers(self, event: Event, event_id: str, time: datetime | None) -> dict[str, str]:
        """The CloudEvents headers of a declared event."""
        if event.event_type not in self.declared:
            raise UndeclaredEvent(
                f"{self.source} publishes {event.event_type}, which its router does not declare: "
                "add it to the service's publishes(...) in entrypoints/subscribers.py"
            )
        headers = event_headers(event, event_id=event_id, source=self.source, time=time or datetime.now(UTC))
        # the AsyncAPI documents' correlation id (FastStream's convention): the event id, so a
        # re-sent event carries the same one
        headers["correlation_id"] = event_id
        return headers

    async def confirm(self, sends: Sequence[Sent], *, timeout_s: float | None = None) -> None:
        """Wait for the acknowledgements of ``sends``, all within ``timeout_s`` (the publisher's
        ack timeout by default); raise the first failure, or a timeout for those still unanswered.
        A send not acknowledged in time may still reach the broker: its caller publishes it
        again, and consumers drop the repeat by its event id."""
        limit = self.ack_timeout_s if timeout_s is None else timeout_s
        answers = await self._answers(sends, limit)
        if failed := next((a for a in answers if isinstance(a, BaseException)), None):
            raise failed
        if late := answers.count(_LATE):
            raise aiokafka.errors.KafkaTimeoutError(
                f"{late} of {len(sends)} publishes not acknowledged within {limit:.1f} s"
            )

    async def outcomes(
        self, sends: Sequence[Sent], *, timeout_s: float | None = None
    ) -> list[BaseException | None]:
        """Each send's outcome, in order, once all are answered or ``timeout_s`` (the ack timeout
        by default) ran out: None for an acknowledged one, else its error (a
        :class:`~aiokafka.errors.KafkaTimeoutError` for one still unanswered). A caller publishing
        for several keys at once learns which of them got through."""
        limit = self.ack_timeout_s if timeout_s is None else timeout_s
        outcomes: list[BaseException | None] = []
        for answer in await self._answers(sends, limit):
            if answer is None or isinstance(answer, BaseException):
                outcomes.append(answer)
            else:  # not answered in time
                late = f"publish not acknowledged within {limit:.1f} s"
                outcomes.append(aiokafka.errors.KafkaTimeoutError(late))
        return outcomes

    async def _answers(self, sends: Sequence[Sent], limit: float) -> list[BaseException | object | None]:
        """Each send's answer: None (acknowledged), its error, or :data:`_LATE`. A fatal producer
        error renews the producer, as :meth:`publish` does."""
        if not sends:
            return []
        done, _ = await asyncio.wait({s.ack for s in sends}, timeout=limit)
        answers: list[BaseException | object | None] = []
        for sent in sends:
            if sent.ack not in done:
                answers.append(_LATE)
            elif sent.ack.cancelled():  # the producer stopped under it
                answers.append(aiokafka.errors.KafkaConnectionError("publish abandoned by its producer"))
            elif (error := sent.ack.exception()) is not None:
                if isinstance(error, PRODUCER_FATAL):
                    await renew_producer(self.broker, sent.producer)
                answers.append(error)
            else:
                metrics.EVENTS_PUBLISHED.labels(event_type=sent.event_type).inc()
                answers.append(None)
        return answers


_LATE = object()
"""A send not answered when :meth:`EventPublisher._answers` stopped waiting."""


@dataclass(frozen=True, slots=True)
class Sent:
    """An event handed to the producer (:meth:`EventPublisher.send`), its acknowledgement pending."""

    ack: asyncio.Future[Any]
    producer: object | None
    event_type: str


class PublishesInFlight(Publishes, Protocol):
    """A publisher that can also hand events over without waiting (:class:`EventPublisher`)."""

    async def send(self, event: Event, *, event_id: str, time: datetime | None = None) -> Sent: ...

    async def confirm(self, sends: Sequence[Sent], *, timeout_s: float | None = None) -> None: ...

    async def outcomes(
        self, sends: Sequence[Sent], *, timeout_s: float | None = None
    ) -> list[BaseException | None]: ...


@dataclass(slots=True)
class SendWindow:
    """Events published one after another without waiting for each acknowledgement, then
    confirmed together: a consumer publishing a batch's events pays one round trip to the
    brokers for the batch instead of one per event, and commits only after :meth:`confirm`."""

    publisher: PublishesInFlight
    pending: list[Sent] = field(default_factory=list)

    async def publish(self, event: Event, event_id: str) -> None:
        self.pending.append(await self.publisher.send(event, event_id=event_id))

    async def confirm(self) -> None:
        """Wait for every acknowledgement since the last confirm; raise if any failed or is late."""
        sends, self.pending = self.pending, []
        await self.publisher.confirm(sends)


def decode_event(model: type[E], body: bytes) -> E:
    """Validate a record's JSON data against its model (raises on bad data)."""
    return model.model_validate_json(body)


# --- what a handler is given ------------------------------------------------------------------------


class _OnTheLoop(ContextField):
    """FastStream's context parameter, resolved on the event loop.

    FastDepends runs a synchronous ``use`` of a custom field in a worker thread (anyio's
    ``to_thread``), and FastStream's own ``Context`` has one: a handler taking FastStream's
    ``KafkaMessage`` paid a thread hop (a queue put, a wake-up, the GIL handed over and back) for
    every batch or record it handled. This ``use`` is a coroutine, so FastDepends awaits it."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().use(**kwargs)


KafkaMessage = Annotated[FastStreamKafkaMessage, _OnTheLoop("message")]
"""The consumed message (a record, or a batch's records) as a handler parameter: FastStream's
``KafkaMessage`` without the worker thread. Every Parley handler takes this one."""


# --- routers: typed subscribers and declared publications -------------------------------------


def service_router(namespace: str) -> KafkaRouter:
    """A service's router: catalog topic names in the deployment's namespace, JSON record values."""
    return KafkaRouter(prefix=f"{namespace}." if namespace else "", decoder=decode_json)


async def decode_json(message: StreamMessage[Any]) -> Any:
    """The decoder of typed subscribers: a record's value is its event's JSON data.

    A value that is not JSON can never be processed, so it is a :class:`PermanentError` (as a
    body its model refuses is): the retry middleware dead-letters it at once. A coroutine, as
    every decoder here: FastStream runs a synchronous decoder in a worker thread, once a record.
    """
    try:
        return orjson.loads(message.body)
    except orjson.JSONDecodeError as exc:
        raise UndecodableRecord(f"the record's value is not JSON: {exc}") from exc


async def undecoded(message: StreamMessage[Any]) -> Any:
    """A decoder that leaves the value as it is (bytes, or a batch's list of bytes)."""
    return message.body


def of_type(*events: type[Event]) -> Callable[[StreamMessage[Any]], Awaitable[bool]]:
    """A subscriber filter: the record's ``ce_type`` header names one of these event types."""
    wanted = frozenset(e.event_type for e in events)

    async def matches(message: StreamMessage[Any]) -> bool:
        return message.headers.get("ce_type") in wanted

    matches.__name__ = "ce_type_is_" + "_or_".join(sorted(wanted))
    return matches


OtherEventType = Annotated[
    Any,
    Field(
        title="OtherEventType",
        description="A record of any other event type on this topic: acknowledged, not processed.",
    ),
]


def acknowledge_other_types(subscriber: LogicSubscriber[Any]) -> None:
    """Add a subscriber's last handler: a record no typed handler took is acknowledged as it is.

    A topic carries several event types and a subscriber handles some of them, so a record of
    another type is normal. Without this handler FastStream 0.7 raises ``SubscriberNotFound``
    outside the consume middlewares, the NACK_ON_ERROR policy seeks back to the record, and the
    partition stalls on it for ever. Call it after the typed handlers: handlers are tried in
    the order they were added.
    """

    @subscriber(decoder=undecoded)
    async def other_event_types(record: OtherEventType, message: KafkaMessage) -> None:
        """Any other event type on this topic is acknowledged and left alone."""
        if "ce_type" not in message.headers:
            log.warning("a record without a ce_type header: acknowledged, not processed")


async def leave_uncommitted(message: KafkaMessage) -> None:
    """Leave a consumed batch (or record) uncommitted without an error: each of its partitions
    still assigned to this consumer goes back to the batch's first record there (fetched again);
    a partition taken away meanwhile is left to its new owner, from its last committed offset.

    FastStream's ``nack`` seeks every partition and fails on the first one no longer assigned,
    which would leave the rest where the batch left them (and the next commit past them).
    """
    earliest: dict[aiokafka.TopicPartition, int] = {}
    for record in batch_records(message):
        tp = aiokafka.TopicPartition(record.topic, record.partition)
        earliest[tp] = min(earliest.get(tp, record.offset), record.offset)
    rewind(message, earliest)
    # marked as not acknowledged (the base class's nack: no seek of its own), so not committed
    await StreamMessage.nack(message)


def batch_records(message: KafkaMessage) -> Sequence[Any]:
    """The raw records of a consumed batch (a tuple from the broker; a list or a single record
    from FastStream's test broker), or the one record of a per-record message."""
    records = message.raw_message
    return records if isinstance(records, tuple | list) else (records,)


def rewind(message: KafkaMessage, offsets: dict[aiokafka.TopicPartition, int]) -> None:
    """Send each partition still assigned to the consumer back to its offset here: the records
    from there are fetched again, and a commit of the consumer's positions stops before them.
    A partition taken away meanwhile is left to its new owner, from its last committed offset."""
    for tp, offset in offsets.items():
        try:
            message.consumer.seek(tp, offset)
        except aiokafka.errors.IllegalStateError:
            log.info("partition no longer assigned", topic=tp.topic, partition=tp.partition)


def still_assigned(message: KafkaMessage, partition: aiokafka.TopicPartition) -> Callable[[], bool]:
    """Whether the consumer that fetched ``message`` still owns ``partition``."""
    assignment = getattr(getattr(message, "consumer", None), "assignment", None)
    if assignment is None:  # FastStream's test broker
        return lambda: True
    return lambda: partition in assignment()


async def partition_lanes(
    records: Sequence[Any],
    handle: Callable[[Any], Awaitable[Any]],
    *,
    go_on: Callable[[aiokafka.TopicPartition], bool],
) -> dict[aiokafka.TopicPartition, int]:
    """Handle a batch's records with each partition in a lane of its own, the lanes side by side.

    A lane handles its partition's records one after another, in offset order, so each key keeps
    its order; lanes of different partitions overlap, so one consumer has as many records in hand
    as the batch has partitions. A lane stops before a record when ``go_on(partition)`` is false
    (the partition was taken away, or the batch has run long enough), and at a record whose
    handler raised (logged here) or stopped itself with a cancellation (a service stopping).

    Returns, for each lane that stopped early, the offset of the first record it did not finish:
    :func:`rewind` the consumer there before the batch is committed.
    """
    lanes: dict[aiokafka.TopicPartition, list[Any]] = {}
    for record in records:
        lanes.setdefault(aiokafka.TopicPartition(record.topic, record.partition), []).append(record)

    async def lane(tp: aiokafka.TopicPartition, lane_records: list[Any]) -> int | None:
        for record in lane_records:
            if not go_on(tp):
                return int(record.offset)
            try:
                await handle(record)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the batch itself is cancelled
                return int(record.offset)  # the handler gave up (its service is stopping)
            except Exception as exc:
                log.error(
                    "record failed in its lane; the partition resumes from it",
                    error=repr(exc),
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=record.offset,
                )
                return int(record.offset)
        return None

    ordered = list(lanes.items())
    stopped_at = await asyncio.gather(*(lane(tp, lane_records) for tp, lane_records in ordered))
    return {tp: offset for (tp, _), offset in zip(ordered, stopped_at, strict=True) if offset is not None}


def record_event_type(record: Any) -> str | None:
    """The ``ce_type`` header of a raw record (None when it has none)."""
    for key, value in record.headers or ():
        if key == "ce_type":
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


EventHandler = Callable[[Any], Awaitable[Any]]


async def _decode_and_handle(handle: EventHandler, model: type[Event], record: Any) -> None:
    await handle(decode_event(model, record.value))


async def handle_typed_records(
    retry: RetryThenDeadLetter, handlers: dict[str, tuple[type[Event], EventHandler]], records: Sequence[Any]
) -> None:
    """Each record of a handled event type, in order, decoded and handled on its own terms.

    Every record goes through ``retry.run`` as it would in a per-record subscriber: a record that
    does not decode or keeps failing is dead-lettered alone, an outage is waited out. A record of
    another type is passed over without being decoded.
    """
    for record in records:
        entry = handlers.get(record_event_type(record) or "")
        if entry is None:
            continue
        model, handle = entry

        with record_traces((record,)):
            await retry.run(partial(_decode_and_handle, handle, model, record), record)


def documented_as_batch_of(
    handler: Callable[..., Awaitable[None]], models: tuple[type[Event], ...], description: str
) -> None:
    """Give a batch handler of undecoded records (``handler(batch, message)``) the signature the
    AsyncAPI document shows: a batch of ``models``. The records themselves are chosen by type and
    decoded one by one by the handler, so a bad record never fails the batch's validation."""
    handler.__annotations__ = {
        "batch": SkipValidation[list[Union[models]]],  # type: ignore[valid-type]  # noqa: UP007
        "message": KafkaMessage,
        "return": None,
    }
    handler.__doc__ = description


def typed_batches(
    router: KafkaRouter,
    topic: str,
    *,
    group_id: str,
    retry: RetryThenDeadLetter,
    handlers: Sequence[tuple[type[Event], EventHandler]],
    title: str,
    description: str,
    max_records: int = 500,
) -> None:
    """A subscriber that handles some event types of a topic in batches, one commit per batch.

    A per-record subscriber commits after every record (a round trip to the group coordinator
    each), and reads every record of a busy topic to pass over most of them: on ``make soak``'s
    100 deliveries a second, policy's per-record groups fell behind by 125 records a second on
    two cores. Here the records are still handled one by one and in order, with the same retries
    and dead-lettering (:func:`handle_typed_records`), and a batch is committed once all its
    records were handled: a crash redelivers the uncommitted part, which the handlers take
    again idempotently, as they already must.
    """
    by_type = {model.event_type: (model, handle) for model, handle in handlers}

    async def handle_batch(batch: Any, message: KafkaMessage) -> None:
        await handle_typed_records(retry, by_type, batch_records(message))

    documented_as_batch_of(handle_batch, tuple(model for model, _ in handlers), description)
    router.subscriber(
        topic,
        group_id=group_id,
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        batch=True,
        batch_timeout_ms=BATCH_WAIT_MS,
        max_records=max_records,
        title=title,
        description=description,
        decoder=undecoded,
    )(handle_batch)


def publishes(router: KafkaRouter, *events: type[Event], title: str, description: str) -> None:
    """Declare that the router's service publishes these event types (all on one catalog topic).

    The declaration is what :class:`EventPublisher` allows and what the AsyncAPI document lists.
    """
    topics = {e.topic.name for e in events}
    if len(topics) != 1:
        raise ValueError(f"declare the event types of one topic at a time, not of {sorted(topics)}")
    schema: Any = events[0] if len(events) == 1 else Union[events]  # noqa: UP007 - a runtime union
    router.publisher(topics.pop(), schema=schema, title=title, description=description)


def declared_events(router: KafkaRouter) -> dict[str, type[Event]]:
    """The event types a router declares it publishes, by type name."""
    declared: dict[str, type[Event]] = {}
    for publisher in router.publishers:
        schema = publisher.specification.config.schema_
        for model in get_args(schema) if get_origin(schema) is Union else (schema,):
            if isinstance(model, type) and issubclass(model, Event):
                declared[model.event_type] = model
    return declared


def subscribed_topics(router: KafkaRouter) -> set[str]:
    """The topics a router's subscribers read, as named in the broker (with the namespace)."""
    return {
        topic
        for subscriber in router.subscribers
        if isinstance(subscriber, LogicSubscriber)
        for topic in subscriber.topic_names
    }


# --- retry then dead-letter ------------------------------------------------------------


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    # PostgreSQL unreachable, restarting or refusing (connection failed or lost, the server shutting
    # down, a serialization failure), or no pooled connection in time: the record is fine
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    psycopg_pool.TooManyRequests,
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


class UndecodableRecord(PermanentError):
    """A record's value is not JSON."""


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
