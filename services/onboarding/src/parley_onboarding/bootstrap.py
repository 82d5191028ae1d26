"""The one wiring point of the onboarding process: ``build(settings, adapters)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import httpx
from parley_events import Event, Provider
from parley_providers import registry
from parley_providers.base import Connector
from parley_shared.auth import TokenVerifier
from parley_shared.kafka import Publishes
from parley_shared.logging import get_logger
from parley_shared.runtime import Periodic, Runtime, ServiceSpec, Wiring, create_app
from parley_shared.settings import load_settings
from parley_shared.vault import TokenVault, parse_keys
from starlette.applications import Starlette
from starlette.routing import Mount

from parley_onboarding.adapters.postgres import PostgresOnboardingStore
from parley_onboarding.adapters.reports import HttpReportsApi, ReportsApi
from parley_onboarding.adapters.stores import MongoOnboardingStore, OnboardingStore
from parley_onboarding.console import create_console
from parley_onboarding.entrypoints.api import create_api
from parley_onboarding.entrypoints.subscribers import onboarding_router
from parley_onboarding.service import OnboardingService, utcnow
from parley_onboarding.settings import OnboardingSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class OnboardingAdapters:
    """What onboarding's service needs from the outside world."""

    store: OnboardingStore
    connectors: Mapping[Provider, Connector]
    """Each conversation provider's connect flow (from the registry in production)."""
    publisher: Publishes
    reports: ReportsApi | None = None
    """The reports service's API for the console's Reports page (None: no page)."""


@dataclass(kw_only=True)
class OnboardingWiring(Wiring):
    """Onboarding, wired."""

    service: OnboardingService

    async def prepare(self) -> None:
        await self.service.stores.ensure_indexes()

    async def start(self) -> None:
        # channels that predate account claims get theirs before the API takes a connect
        await self.service.ensure_account_claims()


@contextlib.asynccontextmanager
async def production_adapters(settings: OnboardingSettings, rt: Runtime) -> AsyncIterator[OnboardingAdapters]:
    """The store, the providers' clients and the broker of a running process (or of the ops CLI)."""
    # the provider API versions this process calls: a gauge of the days left, a warning near the end
    registry.report_api_versions(settings, log.warning)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), headers={"user-agent": "parley-onboarding"}
    ) as http:
        vault = TokenVault(parse_keys(settings.encryption_keys.get_secret_value()))
        store = rt.opened_store
        yield OnboardingAdapters(
            store=(
                PostgresOnboardingStore(store.postgres, vault)
                if store.kind == "postgresql"
                else MongoOnboardingStore(store.db, vault)
            ),
            connectors=registry.connectors(http, settings),
            publisher=rt.publisher,
            reports=HttpReportsApi(http, settings.console_reports_url)
            if settings.console_reports_url
            else None,
        )


def build_service(
    settings: OnboardingSettings, adapters: OnboardingAdapters, clock: Callable[[], datetime] = utcnow
) -> OnboardingService:
    """The service from its adapters: the one place it is constructed (the ops CLI uses it too)."""

    async def publish(event: Event, event_id: str) -> None:
        await adapters.publisher.publish(event, event_id=event_id)

    return OnboardingService(adapters.store, adapters.connectors, publish, settings, clock)


def build(
    settings: OnboardingSettings, adapters: OnboardingAdapters, clock: Callable[[], datetime] = utcnow
) -> OnboardingWiring:
    """Onboarding's service, its subscriber, its API and its background work, from its adapters."""
    service = build_service(settings, adapters, clock)
    verifier = TokenVerifier(settings)
    routes = [Mount("/v1", app=create_api(service, verifier))]
    if settings.console_enabled:
        routes.append(
            Mount("/console", app=create_console(service, verifier, settings, clock, adapters.reports))
        )
    return OnboardingWiring(
        service=service,
        router=onboarding_router(settings, service),
        routes=routes,
        periodic=[
            Periodic("token-expiry", settings.token_check_interval_s, service.check_token_expiry),
            Periodic("business-hours", settings.hours_check_interval_s, service.track_business_hours),
            Periodic("connection-prune", settings.connection_prune_interval_s, service.prune_connections),
            Periodic(
                "subscription-check", settings.subscription_check_interval_s, service.check_subscriptions
            ),
            Periodic(
                "x-subscription-check",
                settings.x_subscription_check_interval_s,
                service.check_kept_subscriptions,
            ),
            Periodic(
                "login-token-refresh",
                settings.instagram_token_refresh_interval_s,
                service.refresh_login_tokens,
            ),
            Periodic("x-token-refresh", settings.x_token_refresh_interval_s, service.refresh_rotating_tokens),
            Periodic(
                "business-portfolios", settings.portfolio_check_interval_s, service.record_business_portfolios
            ),
        ],
    )


def create_onboarding_app(
    settings: OnboardingSettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(OnboardingSettings)
    return create_app(
        ServiceSpec(
            name="onboarding",
            settings=settings,
            adapters=partial(production_adapters, settings),
            build=partial(build, settings, clock=clock),
        )
    )
