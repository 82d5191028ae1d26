"""The lifespan every Parley process shares: clients created on start-up, closed on shutdown.

A service's bootstrap hands :func:`create_app` a :class:`ServiceSpec`: how to open its production
adapters from the runtime's clients (``adapters``, an async context manager), and how to wire the
service from them (``build``, which returns a :class:`Wiring`: the service's router, its HTTP
routes, its read models, its periodic work, and what it does on start and stop). Both run in the
lifespan, where the clients exist; a test calls the service's ``build`` with fakes instead.
Nothing connects at import time, and every client belongs to the event loop that runs the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from parley_events import Event, TopicSpec
from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from parley_shared.http import MetricsServer, Readiness, build_app
from parley_shared.kafka import (
    EventPublisher,
    RetryPolicy,
    RetryThenDeadLetter,
    kafka_dead_letter_sink,
    make_broker,
)
from parley_shared.logging import configure_logging, get_logger
from parley_shared.settings import ServiceSettings
from parley_shared.store import Store, open_store
from parley_shared.tracing import tracer_provider

log = get_logger(__name__)


class ReadModel(Protocol):
    """A topic kept in memory by a process (the channel and team directories)."""

    source: ClassVar[TopicSpec]
    """The catalog topic it reads (the AsyncAPI documents and the topic catalog's check use it)."""
    event: ClassVar[type[Event]]
    """The event type its records carry."""
    name: str
    loaded: asyncio.Event

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Periodic:
    """Work a service repeats in the background (sweeps, relays, pruning)."""

    name: str
    interval_s: float
    work: Callable[[], Awaitable[object]]


@dataclass(kw_only=True)
class Wiring:
    """What a service's ``build(settings, adapters)`` returns: its place on the bus and the web,
    and its own start-up and shutdown work. Services subclass it to expose their objects."""

    router: KafkaRouter
    """Its subscribers and the event types it publishes (entrypoints/subscribers.py)."""
    routes: Sequence[BaseRoute] = ()
    read_models: Sequence[ReadModel] = ()
    """Started after :meth:`start`, stopped after :meth:`stop`; readiness waits until they loaded."""
    periodic: Sequence[Periodic] = ()
    """Started once the read models loaded, cancelled right after :meth:`stop`."""

    async def prepare(self) -> None:
        """Runs before the broker starts, so before any subscriber consumes: the store's
        migrations and indexes (a record handled on a fresh store would find no table)."""

    async def start(self) -> None:
        """Runs once the broker started, before the read models load (state loaded at start)."""

    async def stop(self) -> None:
        """Runs first on shutdown, while every client is still open."""


@dataclass
class Runtime:
    """The live clients of one process, handed to the service's production adapters."""

    settings: ServiceSettings
    service: str
    broker: KafkaBroker
    publisher: EventPublisher
    retry: RetryThenDeadLetter
    """The consumers' retry-then-dead-letter middleware (batch handlers isolate records with it)."""
    readiness: Readiness
    store: Store | None = None
    """The store of ``settings.store`` (MongoDB or PostgreSQL by its scheme), open in the lifespan."""
    tracing: TracerProvider | None = None
    metrics: MetricsServer | None = None
    wiring: Wiring | None = None
    """What the service's build returned, once the lifespan started."""

    @property
    def metrics_url(self) -> str:
        """Where this process serves /metrics (its own port, not the API's)."""
        if self.metrics is None:
            raise RuntimeError(f"{self.service} is not serving metrics (not started)")
        return f"http://127.0.0.1:{self.metrics.port}/metrics"

    @property
    def opened_store(self) -> Store:
        """The open store; an error if the process was started without one."""
        if self.store is None:
            raise RuntimeError(f"{self.service} was started without a store")
        return self.store

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        """The MongoDB database of the store (an error when the store is PostgreSQL)."""
        return self.opened_store.db

    def topic(self, name: str) -> str:
        """A catalog topic's name in this deployment's namespace."""
        return f"{self.settings.topic_namespace}.{name}" if self.settings.topic_namespace else name


A = TypeVar("A")


@dataclass
class ServiceSpec(Generic[A]):
    """What makes one process: its name and settings, its production adapters and its wiring."""

    name: str
    settings: ServiceSettings
    adapters: Callable[[Runtime], AbstractAsyncContextManager[A]]
    """Opens the adapters the service needs from the runtime's clients, and closes what it opened."""
    build: Callable[[A], Wiring]
    """The service's ``build`` with its settings bound: adapters in, wiring out."""
    uses_store: bool = True
    consumes: bool = True
    """False for a process that only produces (ingest): no consume/publish telemetry middleware;
    its publishes carry the current trace context in their headers directly, without a span
    per record (measured in docs/performance.md: about a quarter of ingest's time per request)."""
    limit_bodies: bool = True
    """False only where every route that takes a body enforces its own limit (ingest's webhooks,
    which count refusals in their own metric)."""


@contextlib.asynccontextmanager
async def _serving(spec: ServiceSpec[A], runtime: Runtime, app: Starlette) -> AsyncIterator[None]:
    """Open the clients, wire the service, start it, and take it all down in reverse order."""
    settings, readiness, broker = runtime.settings, runtime.readiness, runtime.broker
    async with contextlib.AsyncExitStack() as stack:
        if spec.uses_store:
            # a PostgreSQL pool connects here: a wrong URL stops the start-up with its error
            store = runtime.store = await open_store(settings.store)
            stack.push_async_callback(store.close)
            readiness.checks["store"] = store.ping
        adapters = await stack.enter_async_context(spec.adapters(runtime))
        wiring = runtime.wiring = spec.build(adapters)
        broker.include_router(wiring.router)
        runtime.publisher.declare(wiring.router)
        # the service's routes need its objects, which exist from here on: they join the app now
        routes = app.router.routes
        routes[:0] = wiring.routes

        def unmount() -> None:  # the app leaves its lifespan with the routes it entered with
            for route in wiring.routes:
                routes.remove(route)

        stack.callback(unmount)

        read_models: list[ReadModel] = []
        tasks: list[asyncio.Task[None]] = []

        async def shutdown() -> None:
            try:
                await wiring.stop()
                await cancel_tasks(tasks)
                for model in read_models:
                    await model.stop()
            finally:
                await broker.stop()

        await wiring.prepare()
        await broker.start()
        stack.push_async_callback(shutdown)
        await wiring.start()
        for model in wiring.read_models:
            await model.start()
            read_models.append(model)
        if read_models:
            readiness.checks["read_models"] = loaded(*read_models)
        tasks.extend(periodic(p.name, p.interval_s, p.work) for p in wiring.periodic)
        # what exists now (modules, clients, read models) lives as long as the process: keep it
        # out of the collector's full passes, whose pauses showed up in ingest's p99.9
        gc.collect()
        gc.freeze()
        readiness.started = True
        log.info("started", port=settings.http_port)
        try:
            yield
        finally:
            readiness.draining = True
            log.info("stopping: draining in-flight work")
    if runtime.tracing is not None:
        runtime.tracing.shutdown()
    log.info("stopped")


def create_app(spec: ServiceSpec[A]) -> Starlette:
    """Build the process's ASGI app; all connections happen in its lifespan."""
    settings = spec.settings
    configure_logging(spec.name, settings.log_level, settings.log_format)
    readiness = Readiness()
    retry = RetryThenDeadLetter(None, RetryPolicy.from_settings(settings))
    tracing = tracer_provider(spec.name, settings.otlp_endpoint)
    telemetry = KafkaTelemetryMiddleware(tracer_provider=tracing, include_messages_counters=False)
    # telemetry outermost: one consume span covers every retry of a record
    middlewares = [telemetry, retry] if spec.consumes else []
    broker = make_broker(settings, client_id=f"parley-{spec.name}", middlewares=middlewares)
    retry.sink = kafka_dead_letter_sink(broker)
    runtime = Runtime(
        settings=settings,
        service=spec.name,
        broker=broker,
        publisher=EventPublisher(
            broker,
            source=f"/parley/{spec.name}",
            namespace=settings.topic_namespace,
            ack_timeout_s=settings.kafka_ack_timeout_s,
            inject_trace=not spec.consumes,
            # a consumer's publishes are hops of their own; ingest's continue its request's span
            tracing=tracing if spec.consumes else None,
        ),
        retry=retry,
        readiness=readiness,
        tracing=tracing,
    )

    async def kafka_ready() -> None:
        if not await broker.ping(timeout=readiness.timeout_s):
            raise ConnectionError("kafka did not answer")

    readiness.checks["kafka"] = kafka_ready

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics = runtime.metrics = MetricsServer.start(settings.metrics_host, settings.metrics_port)
        log.info("metrics served", port=metrics.port)
        try:
            async with _serving(spec, runtime, app):
                yield
        finally:
            metrics.stop()

    app = build_app(
        (),
        readiness,
        lifespan,
        max_body_bytes=settings.http_max_body_bytes if spec.limit_bodies else None,
    )
    app.state.runtime = runtime
    return app


def periodic(name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> asyncio.Task[None]:
    """Run ``work`` every ``interval_s`` until cancelled; a failing round is logged, not fatal."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                done = await work()
                if done:
                    log.info("periodic round", task=name, count=done)
            except Exception as exc:
                log.warning("periodic round failed; will try again", task=name, error=repr(exc))

    return asyncio.create_task(loop(), name=name)


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Stop background tasks and wait until they have."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def loaded(*readers: Any) -> Callable[[], Awaitable[None]]:
    """A readiness check: every read model has caught up with its topic once."""

    async def check() -> None:
        if not all(reader.loaded.is_set() for reader in readers):
            raise RuntimeError("read models still loading")

    return check
