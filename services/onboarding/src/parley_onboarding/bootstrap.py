"""The one wiring point of the onboarding process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from faststream.kafka.annotations import KafkaMessage
from parley_events import Event, TemplateStatusChanged, topics
from parley_providers import registry
from parley_shared.auth import TokenVerifier
from parley_shared.kafka import CONSUMER_ACK_POLICY, decode_event
from parley_shared.logging import get_logger
from parley_shared.runtime import LazyApp, Runtime, ServiceSpec, cancel_tasks, create_app, periodic
from parley_shared.settings import load_settings
from parley_shared.vault import TokenVault, parse_keys
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from parley_onboarding.adapters.stores import MongoOnboardingStore
from parley_onboarding.entrypoints.api import create_api
from parley_onboarding.service import OnboardingService, utcnow
from parley_onboarding.settings import OnboardingSettings

log = get_logger(__name__)


def build_service(
    rt: Runtime, settings: OnboardingSettings, http: httpx.AsyncClient, clock: Callable[[], datetime]
) -> OnboardingService:
    """The service with its production adapters (also used by the ops CLI)."""

    async def publish(event: Event, event_id: str) -> None:
        await rt.publisher.publish(event, event_id=event_id)

    vault = TokenVault(parse_keys(settings.encryption_keys.get_secret_value()))
    store = MongoOnboardingStore(rt.db, vault)
    return OnboardingService(store, registry.connectors(http, settings), publish, settings, clock)


def create_onboarding_app(
    settings: OnboardingSettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(OnboardingSettings)
    verifier = TokenVerifier(settings)
    holder: dict[str, Any] = {}

    async def register(rt: Runtime) -> None:
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), headers={"user-agent": "parley-onboarding"})
        holder["http"] = http
        service = build_service(rt, settings, http, clock)
        holder["service"] = service
        rt.state["service"] = service

        @rt.broker.subscriber(
            rt.topic(topics.MESSAGES_INBOUND.name),
            group_id=settings.group_id("onboarding-templates"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="template-reviews",
            description="WhatsApp template reviews seen by ingest -> channel template events.",
        )
        async def on_inbound(message: KafkaMessage) -> None:
            if message.headers.get("ce_type") == TemplateStatusChanged.event_type:
                await service.on_template_status(decode_event(TemplateStatusChanged, message.body))

    async def on_start(rt: Runtime) -> None:
        service: OnboardingService = holder["service"]
        await service.stores.ensure_indexes()
        # channels that predate account claims get theirs before the API takes a connect
        await service.ensure_account_claims()
        rt.state["tasks"] = [
            periodic("token-expiry", settings.token_check_interval_s, service.check_token_expiry),
            periodic("connection-prune", settings.connection_prune_interval_s, service.prune_connections),
        ]

    async def on_stop(rt: Runtime) -> None:
        await cancel_tasks(rt.state.get("tasks", []))
        await holder["http"].aclose()

    def routes(rt: Runtime) -> list[BaseRoute]:
        # the API needs the service, which exists once the lifespan has started
        return [Mount("/v1", app=LazyApp(lambda: create_api(holder["service"], verifier)))]

    return create_app(
        ServiceSpec(
            name="onboarding",
            settings=settings,
            register=register,
            on_start=on_start,
            on_stop=on_stop,
            routes=routes,
        )
    )
