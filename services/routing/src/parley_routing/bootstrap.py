"""The one wiring point of the routing process: ``build(settings, adapters)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from parley_events import ConversationEvent, ConversationReadRequested, topics
from parley_shared.auth import TokenVerifier
from parley_shared.channels import DirectoryRoles, KafkaChannelDirectory, KafkaTeamDirectory
from parley_shared.kafka import PublishesInFlight, RetryThenDeadLetter, Sent
from parley_shared.runtime import Periodic, Runtime, ServiceSpec, Wiring, create_app
from parley_shared.settings import load_settings
from parley_shared.tracing import trace_of
from starlette.applications import Starlette
from starlette.routing import Mount

from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import ConversationRepository, MongoConversationRepository
from parley_routing.cache import ConversationCache
from parley_routing.entrypoints.api import create_api
from parley_routing.entrypoints.subscribers import routing_router
from parley_routing.service import AgentService, ConversationService, utcnow
from parley_routing.settings import RoutingSettings

SEEN_PRUNE_INTERVAL_S = 3600.0
"""How often expired provider message ids are deleted (FerretDB has no TTL indexes)."""
OUTBOX_LEASE_INTERVALS = 6
"""How many relay intervals a process holds the outbox of what it committed or claimed
(PostgreSQL, 60 s at the default 10 s): it settles what it published by its next relay at the
latest, and another replica's relay takes over only after the lease."""


@dataclass(frozen=True)
class RoutingAdapters:
    """What routing's service and entrypoints need from the outside world."""

    repository: ConversationRepository
    channels: KafkaChannelDirectory
    teams: KafkaTeamDirectory
    publisher: PublishesInFlight
    retry: RetryThenDeadLetter
    """Takes a failing batch apart record by record (the consumers' retry-then-DLQ policy)."""


@dataclass(kw_only=True)
class RoutingWiring(Wiring):
    """Routing, wired."""

    service: ConversationService
    repository: ConversationRepository

    async def prepare(self) -> None:
        await self.repository.ensure_indexes()

    async def stop(self) -> None:
        await self.service.ownership.close()  # epochs still being taken: nothing to write with them


@contextlib.asynccontextmanager
async def production_adapters(settings: RoutingSettings, rt: Runtime) -> AsyncIterator[RoutingAdapters]:
    """The store (the adapter of its kind), the read models and the broker of a running process."""
    store, seen_retention = rt.opened_store, timedelta(seconds=settings.seen_message_retention_s)
    repository: ConversationRepository
    if store.kind == "postgresql":
        lease = timedelta(seconds=OUTBOX_LEASE_INTERVALS * settings.outbox_relay_interval_s)
        repository = PostgresConversationRepository(store.postgres, seen_retention, outbox_lease=lease)
    else:
        repository = MongoConversationRepository(
            store.db["conversations"],
            store.db["conversation_history"],
            notes=store.db["conversation_notes"],
            seen=store.db["conversation_seen_messages"],
            seen_retention=seen_retention,
        )
    yield RoutingAdapters(
        repository=repository,
        channels=KafkaChannelDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.CHANNELS.name)),
        teams=KafkaTeamDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.TEAMS.name)),
        publisher=rt.publisher,
        retry=rt.retry,
    )


def build(
    settings: RoutingSettings, adapters: RoutingAdapters, clock: Callable[[], datetime] = utcnow
) -> RoutingWiring:
    """Routing's service, its subscribers, its API and its background work, from its adapters."""
    channels, teams = adapters.channels, adapters.teams

    async def publish(event: ConversationEvent) -> None:
        # in a batch, each conversation's events continue the trace of its own message
        with trace_of(event.conversation_id):
            await adapters.publisher.publish(event, event_id=event.event_id, time=event.occurred_at)

    async def publish_together(events: Sequence[ConversationEvent]) -> list[BaseException | None]:
        # all handed to the producer first, then their acknowledgements awaited together
        handed: list[Sent | BaseException] = []
        for event in events:
            with trace_of(event.conversation_id):
                try:
                    handed.append(
                        await adapters.publisher.send(event, event_id=event.event_id, time=event.occurred_at)
                    )
                except Exception as exc:  # this one's outcome; the others still go out
                    handed.append(exc)
        answers = iter(await adapters.publisher.outcomes([h for h in handed if isinstance(h, Sent)]))
        return [h if isinstance(h, BaseException) else next(answers) for h in handed]

    async def request_read(request: ConversationReadRequested) -> None:
        await adapters.publisher.publish(request, event_id=request.event_id, time=request.occurred_at)

    cache = ConversationCache(settings.conversation_cache_per_partition)
    service = ConversationService(
        adapters.repository, publish, clock, cache, channels.by_id.get, publish_together=publish_together
    )
    agents = AgentService(service, DirectoryRoles(channels, teams), channels.by_id.get, request_read)
    api = create_api(agents, TokenVerifier(settings))
    return RoutingWiring(
        service=service,
        repository=adapters.repository,
        router=routing_router(settings, service, channels, adapters.retry),
        routes=[Mount("/v1", app=api)],
        read_models=[channels, teams],
        periodic=[
            Periodic(
                "auto-resolve",
                settings.auto_resolve_interval_s,
                lambda: service.auto_resolve(list(channels.by_id.values())),
            ),
            Periodic("outbox-relay", settings.outbox_relay_interval_s, service.relay_outbox),
            Periodic("seen-messages-prune", SEEN_PRUNE_INTERVAL_S, service.prune_seen_messages),
        ],
    )


def create_routing_app(
    settings: RoutingSettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(RoutingSettings)
    return create_app(
        ServiceSpec(
            name="routing",
            settings=settings,
            adapters=partial(production_adapters, settings),
            build=partial(build, settings, clock=clock),
        )
    )
