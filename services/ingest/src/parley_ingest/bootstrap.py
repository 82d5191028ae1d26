"""The one wiring point of ingest's two processes: the webhook HTTP app and the normalizer."""

from __future__ import annotations

from faststream.kafka.annotations import KafkaMessage
from parley_events import topics
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import CONSUMER_ACK_POLICY
from parley_shared.runtime import Runtime, ServiceSpec, create_app
from parley_shared.settings import load_settings
from starlette.applications import Starlette

from parley_ingest.entrypoints.normalizer import normalizer_subscriber
from parley_ingest.entrypoints.webhooks import webhook_routes
from parley_ingest.settings import IngestSettings, NormalizerSettings


def create_ingest_app(settings: IngestSettings | None = None) -> Starlette:
    """``parley-ingest``: stateless webhook endpoints (no store)."""
    settings = settings or load_settings(IngestSettings)
    return create_app(
        ServiceSpec(
            name="ingest",
            settings=settings,
            uses_store=False,
            consumes=False,
            limit_bodies=False,  # the webhook routes cap bodies themselves and count the refusals
            routes=lambda rt: webhook_routes(settings, rt.publisher, rt.tracing),
        )
    )


def create_normalizer_app(settings: NormalizerSettings | None = None) -> Starlette:
    """``parley-normalizer``: consumes the raw topic, publishes normalized messages."""
    settings = settings or load_settings(NormalizerSettings)

    async def register(rt: Runtime) -> None:
        directory = KafkaChannelDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.CHANNELS.name))
        rt.state["directory"] = directory
        handler = normalizer_subscriber(
            directory, rt.publisher, settings.channel_catch_up_timeout_s, settings.dedupe_window
        )

        @rt.broker.subscriber(
            rt.topic(topics.WEBHOOKS_RAW.name),
            group_id=settings.group_id("normalizer"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="normalize-webhooks",
            description="Archived webhook deliveries in; one MessageReceived per message out.",
        )
        async def normalize_webhook(message: KafkaMessage) -> None:
            await handler(message)

    async def on_start(rt: Runtime) -> None:
        directory: KafkaChannelDirectory = rt.state["directory"]
        await directory.start()

        async def directory_loaded() -> None:
            if not directory.loaded.is_set():
                raise RuntimeError("channel directory still loading")

        rt.readiness.checks["channels"] = directory_loaded

    async def on_stop(rt: Runtime) -> None:
        await rt.state["directory"].stop()

    return create_app(
        ServiceSpec(
            name="normalizer",
            settings=settings,
            uses_store=False,
            register=register,
            on_start=on_start,
            on_stop=on_stop,
        )
    )
