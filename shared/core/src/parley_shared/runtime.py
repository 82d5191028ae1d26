"""The lifespan every Parley process shares: clients created on start-up, closed on shutdown.

A service's bootstrap builds a :class:`ServiceSpec` (its routes, its subscribers, its start-up
work) and gets back a Starlette app; uvicorn runs it from a factory. Nothing connects at
import time, and every client belongs to the event loop that runs the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from parley_shared import mongo
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
from parley_shared.tracing import tracer_provider

log = get_logger(__name__)


@dataclass
class Runtime:
    """The live clients of one process, handed to the service's wiring code."""

    settings: ServiceSettings
    service: str
    broker: KafkaBroker
    publisher: EventPublisher
    retry: RetryThenDeadLetter
    readiness: Readiness
    mongo_client: AsyncMongoClient[dict[str, Any]] | None = None
    tracing: TracerProvider | None = None
    metrics: MetricsServer | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics_url(self) -> str:
        """Where this process serves /metrics (its own port, not the API's)."""
        if self.metrics is None:
            raise RuntimeError(f"{self.service} is not serving metrics (not started)")
        return f"http://127.0.0.1:{self.metrics.port}/metrics"

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        if self.mongo_client is None:
            raise RuntimeError(f"{self.service} was started without a store")
        return mongo.database(self.mongo_client, self.settings.mongodb_url)

    def topic(self, name: str) -> str:
        """A catalog topic's name in this deployment's namespace."""
        return f"{self.settings.topic_namespace}.{name}" if self.settings.topic_namespace else name


Hook = Callable[[Runtime], Awaitable[None]]


@dataclass
class ServiceSpec:
    """What makes one process: its name, whether it uses the store, and its wiring hooks."""

    name: str
    settings: ServiceSettings
    uses_store: bool = True
    consumes: bool = True
    """False for a process that only produces (ingest): no consume/publish telemetry middleware;
    its publishes carry the current trace context in their headers directly, without a span
    per record (measured in docs/performance.md: about a quarter of ingest's time per request)."""
    routes: Callable[[Runtime], Sequence[BaseRoute]] = lambda _rt: ()
    limit_bodies: bool = True
    """False only where every route that takes a body enforces its own limit (ingest's webhooks,
    which count refusals in their own metric)."""
    register: Hook | None = None
    """Adds subscribers to the broker; runs before the broker starts."""
    on_start: Hook | None = None
    """Runs after the broker started (ensure indexes, load read models)."""
    on_stop: Hook | None = None
    """Runs first on shutdown, while the clients are still open."""


@contextlib.asynccontextmanager
async def _clients(spec: ServiceSpec, runtime: Runtime) -> AsyncIterator[None]:
    """Open the store and the broker, run the service's hooks, and close it all in order."""
    settings, readiness = runtime.settings, runtime.readiness
    if spec.uses_store:
        runtime.mongo_client = mongo.open_client(settings.mongodb_url)
        client = runtime.mongo_client

        async def store_ready() -> None:
            await mongo.ping(client)

        readiness.checks["store"] = store_ready
    if spec.register is not None:
        await spec.register(runtime)
    await runtime.broker.start()
    if spec.on_start is not None:
        await spec.on_start(runtime)
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
        try:
            if spec.on_stop is not None:
                await spec.on_stop(runtime)
            await runtime.broker.stop()
        finally:
            if runtime.mongo_client is not None:
                await runtime.mongo_client.close()
        if runtime.tracing is not None:
            runtime.tracing.shutdown()
        log.info("stopped")


def create_app(spec: ServiceSpec) -> Starlette:
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
        ),
        retry=RetryThenDeadLetter(kafka_dead_letter_sink(broker), RetryPolicy.from_settings(settings)),
        readiness=readiness,
        tracing=tracing,
    )

    async def kafka_ready() -> None:
        if not await broker.ping(timeout=readiness.timeout_s):
            raise ConnectionError("kafka did not answer")

    readiness.checks["kafka"] = kafka_ready

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        metrics = runtime.metrics = MetricsServer.start(settings.metrics_host, settings.metrics_port)
        log.info("metrics served", port=metrics.port)
        try:
            async with _clients(spec, runtime):
                yield
        finally:
            metrics.stop()

    app = build_app(
        spec.routes(runtime),
        readiness,
        lifespan,
        max_body_bytes=settings.http_max_body_bytes if spec.limit_bodies else None,
    )
    app.state.runtime = runtime
    return app


class LazyApp:
    """An ASGI app built on its first request: it needs clients that exist once the lifespan ran."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            self.app = self.build()
        await self.app(scope, receive, send)


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
