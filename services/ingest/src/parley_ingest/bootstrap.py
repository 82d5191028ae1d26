"""The one wiring point of ingest's two processes: the webhook HTTP app and the normalizer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import httpx
from opentelemetry.sdk.trace import TracerProvider
from parley_events import topics
from parley_providers import registry
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import (
    DeadLetterSink,
    Publishes,
    PublishesInFlight,
    RetryThenDeadLetter,
    SendWindow,
    kafka_dead_letter_sink,
)
from parley_shared.logging import get_logger
from parley_shared.runtime import Runtime, ServiceSpec, Wiring, create_app
from parley_shared.settings import load_settings
from parley_shared.vault import (
    CredentialStore,
    MongoCredentialStore,
    PostgresCredentialStore,
    TokenVault,
    parse_keys,
)
from starlette.applications import Starlette

from parley_ingest.adapters.aliases import KafkaCustomerAliases
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.entrypoints.subscribers import normalizer_router, webhook_router
from parley_ingest.entrypoints.webhooks import webhook_routes
from parley_ingest.service import ContentLookups, Normalizer
from parley_ingest.settings import IngestSettings, NormalizerSettings

log = get_logger(__name__)

# --- parley-ingest: the webhook edge ---------------------------------------------------------


@dataclass(frozen=True)
class IngestAdapters:
    """What the webhook routes need: the broker (through the publisher) and the tracer."""

    publisher: Publishes
    tracing: TracerProvider | None = None


@contextlib.asynccontextmanager
async def ingest_adapters(rt: Runtime) -> AsyncIterator[IngestAdapters]:
    yield IngestAdapters(publisher=rt.publisher, tracing=rt.tracing)


def build_ingest(settings: IngestSettings, adapters: IngestAdapters) -> Wiring:
    """The webhook routes, and the router that declares what they publish."""
    return Wiring(
        router=webhook_router(settings),
        routes=webhook_routes(settings, adapters.publisher, adapters.tracing),
    )


def create_ingest_app(settings: IngestSettings | None = None) -> Starlette:
    """``parley-ingest``: stateless webhook endpoints (no store)."""
    settings = settings or load_settings(IngestSettings)
    return create_app(
        ServiceSpec(
            name="ingest",
            settings=settings,
            adapters=ingest_adapters,
            build=partial(build_ingest, settings),
            uses_store=False,
            consumes=False,
            limit_bodies=False,  # the webhook routes cap bodies themselves and count the refusals
        )
    )


# --- parley-normalizer -------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizerAdapters:
    """What the normalizer needs: the channel and alias read models, the broker, the raw
    topic's DLQ, and the providers' content lookups with the channels' tokens (read only)."""

    channels: KafkaChannelDirectory
    aliases: KafkaCustomerAliases
    publisher: PublishesInFlight
    dead_letter: DeadLetterSink
    retry: RetryThenDeadLetter
    content: ContentLookups = field(default_factory=ContentLookups)


@dataclass(kw_only=True)
class NormalizerWiring(Wiring):
    """The normalizer, wired."""

    normalizer: Normalizer


@contextlib.asynccontextmanager
async def normalizer_adapters(settings: NormalizerSettings, rt: Runtime) -> AsyncIterator[NormalizerAdapters]:
    async with contextlib.AsyncExitStack() as stack:
        content = ContentLookups()
        if settings.encryption_keys is not None:
            # the provider API versions the lookups call: a gauge of the days left, a warning near the end
            registry.report_api_versions(settings, log.warning)
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=httpx.Timeout(10.0), headers={"user-agent": "parley-normalizer"})
            )
            content = ContentLookups(
                lookups=registry.content_lookups(http, settings),
                tokens=credential_store(settings, rt),
                attempts=settings.content_lookup_attempts,
                backoff_s=settings.content_lookup_backoff_s,
                backoff_max_s=settings.content_lookup_backoff_max_s,
            )
        yield NormalizerAdapters(
            channels=KafkaChannelDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.CHANNELS.name)),
            aliases=KafkaCustomerAliases(
                settings.kafka_bootstrap_servers, rt.topic(topics.CUSTOMER_ALIASES.name)
            ),
            publisher=rt.publisher,
            dead_letter=kafka_dead_letter_sink(rt.broker),
            retry=rt.retry,
            content=content,
        )


def credential_store(settings: NormalizerSettings, rt: Runtime) -> CredentialStore:
    """The vault onboarding writes channel tokens to, on the store the URL names (only read here)."""
    assert settings.encryption_keys is not None
    vault = TokenVault(parse_keys(settings.encryption_keys.get_secret_value()))
    store = rt.opened_store
    if store.kind == "postgresql":
        return PostgresCredentialStore(store.postgres, vault)
    return MongoCredentialStore(store.db["channel_credentials"], vault)


def build_normalizer(settings: NormalizerSettings, adapters: NormalizerAdapters) -> NormalizerWiring:
    """The normalizer and its subscriber, from its adapters."""

    # a batch's events go out without waiting for each acknowledgement; the batch waits for all
    window = SendWindow(adapters.publisher)
    normalizer = Normalizer(
        adapters.channels,
        window.publish,
        settings.channel_catch_up_timeout_s,
        RecentIds(settings.dedupe_window),
        adapters.aliases,
        content=adapters.content,
        own_app_ids=settings.own_app_ids(),
        settle=window.confirm,
    )
    return NormalizerWiring(
        normalizer=normalizer,
        router=normalizer_router(settings, normalizer, adapters.dead_letter, adapters.retry),
        read_models=[adapters.channels, adapters.aliases],
    )


def create_normalizer_app(settings: NormalizerSettings | None = None) -> Starlette:
    """``parley-normalizer``: consumes the raw topic, publishes normalized messages."""
    settings = settings or load_settings(NormalizerSettings)
    return create_app(
        ServiceSpec(
            name="normalizer",
            settings=settings,
            adapters=partial(normalizer_adapters, settings),
            build=partial(build_normalizer, settings),
            # the store only for the channels' tokens, read for content lookups
            uses_store=settings.encryption_keys is not None,
        )
    )
