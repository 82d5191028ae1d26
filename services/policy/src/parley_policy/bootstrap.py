"""The one wiring point of the policy process: ``build(settings, adapters)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import httpx
from parley_events import ChannelRole, Event, Provider, topics
from parley_providers import registry
from parley_providers.base import Sender
from parley_shared.auth import TokenVerifier
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory, role_on_channel
from parley_shared.kafka import Publishes, RetryThenDeadLetter
from parley_shared.logging import get_logger
from parley_shared.runtime import Periodic, Runtime, ServiceSpec, Wiring, create_app
from parley_shared.settings import load_settings
from parley_shared.vault import (
    CredentialStore,
    MongoCredentialStore,
    PostgresCredentialStore,
    TokenVault,
    parse_keys,
)
from starlette.applications import Starlette
from starlette.routing import Mount

from parley_policy.adapters.postgres import PostgresPolicyStore, PostgresPolicyTemplates
from parley_policy.adapters.stores import PolicyStore, PolicyStorePort, PolicyTemplates, TemplatesPort
from parley_policy.domain.retry import RetryBudget
from parley_policy.entrypoints.api import create_api
from parley_policy.entrypoints.subscribers import policy_router
from parley_policy.service import Delivery, PolicyService, utcnow
from parley_policy.settings import PolicySettings

log = get_logger(__name__)


@dataclass(frozen=True)
class PolicyAdapters:
    """What policy's service, delivery and entrypoints need from the outside world."""

    store: PolicyStorePort
    templates: TemplatesPort
    credentials: CredentialStore
    senders: Mapping[Provider, Sender]
    channels: KafkaChannelDirectory
    teams: KafkaTeamDirectory
    publisher: Publishes
    retry: RetryThenDeadLetter
    """The consumers' retry-then-DLQ policy, record by record inside the batch subscribers."""


@dataclass(kw_only=True)
class PolicyWiring(Wiring):
    """Policy, wired."""

    service: PolicyService
    delivery: Delivery
    templates: TemplatesPort
    shutdown_timeout_s: float

    async def prepare(self) -> None:
        await self.service.store.ensure_indexes()
        # delivery reads the credentials onboarding writes: either service may start first
        await self.delivery.credentials.ensure_indexes()
        # before the first reply is judged: a template check needs the channel's templates
        await self.templates.load()

    async def stop(self) -> None:
        # first: retry waits end at once (uncommitted, redelivered), sends in flight finish while
        # the HTTP client and the consumers are still open
        await self.delivery.stop(self.shutdown_timeout_s)


@contextlib.asynccontextmanager
async def production_adapters(settings: PolicySettings, rt: Runtime) -> AsyncIterator[PolicyAdapters]:
    """The store, the providers' senders, the read models and the broker of a running process."""
    # the provider API versions this process calls: a gauge of the days left, a warning near the end
    registry.report_api_versions(settings, log.warning)
    vault = TokenVault(parse_keys(settings.encryption_keys.get_secret_value()))
    store = rt.opened_store
    stores: tuple[PolicyStorePort, TemplatesPort, CredentialStore]
    if store.kind == "postgresql":
        pool = store.postgres
        stores = (
            PostgresPolicyStore(pool),
            PostgresPolicyTemplates(pool),
            PostgresCredentialStore(pool, vault),
        )
    else:
        db = store.db
        stores = PolicyStore(db), PolicyTemplates(db), MongoCredentialStore(db["channel_credentials"], vault)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), headers={"user-agent": "parley-policy"}
    ) as http:  # closed last, after the consumers stopped
        yield PolicyAdapters(
            store=stores[0],
            templates=stores[1],
            credentials=stores[2],
            senders=registry.senders(http, settings),
            channels=KafkaChannelDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.CHANNELS.name)),
            teams=KafkaTeamDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.TEAMS.name)),
            publisher=rt.publisher,
            retry=rt.retry,
        )


def build(
    settings: PolicySettings, adapters: PolicyAdapters, clock: Callable[[], datetime] = utcnow
) -> PolicyWiring:
    """Policy's service and delivery, its subscribers, its API and its sweep, from its adapters."""
    channels, teams = adapters.channels, adapters.teams

    def role_of(tenant_id: str, user_id: str, channel_id: str) -> ChannelRole | None:
        return role_on_channel(channels, teams, tenant_id, user_id, channel_id)

    async def publish(event: Event, event_id: str) -> None:
        await adapters.publisher.publish(event, event_id=event_id)

    delivery = Delivery(
        adapters.store,
        adapters.credentials,
        adapters.senders,
        publish,
        clock,
        RetryBudget(
            settings.delivery_retry_budget_s,
            settings.delivery_backoff_s,
            settings.delivery_backoff_max_s,
        ),
        channel_status=lambda channel_id: (
            snapshot.status if (snapshot := channels.by_id.get(channel_id)) is not None else None
        ),
    )

    service = PolicyService(
        adapters.store,
        channels.by_id.get,
        role_of,
        adapters.templates.of,
        publish,
        clock,
        settings.whatsapp_throughput_per_s,
        settings.whatsapp_messaging_tier,
        delivery.change_thread_control,
        send_read_receipt=delivery.send_read_receipt,
        business_channel=channels.lookup_business,
    )

    async def sweep() -> int:
        announced = await service.sweep_windows(timedelta(seconds=settings.window_closing_lead_s))
        await service.store.forget_slots_before(int(clock().timestamp()) - 60)
        return announced

    return PolicyWiring(
        service=service,
        delivery=delivery,
        templates=adapters.templates,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        router=policy_router(settings, service, delivery, adapters.templates, adapters.retry),
        routes=[Mount("/v1", app=create_api(service, TokenVerifier(settings)))],
        read_models=[channels, teams],
        periodic=[Periodic("window-sweep", settings.window_sweep_interval_s, sweep)],
    )


def create_policy_app(
    settings: PolicySettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(PolicySettings)
    return create_app(
        ServiceSpec(
            name="policy",
            settings=settings,
            adapters=partial(production_adapters, settings),
            build=partial(build, settings, clock=clock),
        )
    )
