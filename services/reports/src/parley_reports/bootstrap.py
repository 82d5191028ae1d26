"""The one wiring point of the reports process: ``build(settings, adapters)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from parley_events import topics
from parley_shared.auth import TokenVerifier
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory
from parley_shared.runtime import Periodic, Runtime, ServiceSpec, Wiring, create_app
from parley_shared.settings import load_settings
from parley_shared.store import Store
from starlette.applications import Starlette
from starlette.routing import Mount

from parley_reports.adapters.channels import DirectoryChannels
from parley_reports.adapters.postgres import PostgresReportStore
from parley_reports.adapters.stores import MongoReportStore, ReportStore
from parley_reports.entrypoints.api import create_api
from parley_reports.entrypoints.subscribers import reports_router
from parley_reports.service import ReportQueries, ReportService, utcnow
from parley_reports.settings import ReportsSettings

LAG_INTERVAL_S = 15.0
"""How often the lag gauges are set from the newest applied event of each topic."""


@dataclass(frozen=True)
class ReportsAdapters:
    """What reports needs from the outside world: its store and the channel and team read models."""

    store: ReportStore
    channels: KafkaChannelDirectory
    teams: KafkaTeamDirectory


@dataclass(kw_only=True)
class ReportsWiring(Wiring):
    """Reports, wired."""

    service: ReportService
    queries: ReportQueries
    store: ReportStore

    async def prepare(self) -> None:
        await self.store.ensure_indexes()


def report_store(store: Store) -> ReportStore:
    """The read model's adapter of the store's kind."""
    if store.kind == "postgresql":
        return PostgresReportStore(store.postgres)
    return MongoReportStore(store.db["report_buckets"], store.db["report_conversations"])


@contextlib.asynccontextmanager
async def production_adapters(settings: ReportsSettings, rt: Runtime) -> AsyncIterator[ReportsAdapters]:
    """The store (the adapter of its kind) and the read models of a running process."""
    store = report_store(rt.opened_store)
    # the tables exist before the broker starts handing records to the subscribers
    await store.ensure_indexes()
    yield ReportsAdapters(
        store=store,
        channels=KafkaChannelDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.CHANNELS.name)),
        teams=KafkaTeamDirectory(settings.kafka_bootstrap_servers, rt.topic(topics.TEAMS.name)),
    )


def build(
    settings: ReportsSettings, adapters: ReportsAdapters, clock: Callable[[], datetime] = utcnow
) -> ReportsWiring:
    """Reports' service, its subscribers, its API and its lag gauges, from its adapters."""
    directory = DirectoryChannels(adapters.channels, adapters.teams)
    service = ReportService(adapters.store, clock, directory.business_hours_of)
    queries = ReportQueries(adapters.store, directory)
    api = create_api(queries, TokenVerifier(settings), settings.max_report_days)
    return ReportsWiring(
        service=service,
        queries=queries,
        store=adapters.store,
        router=reports_router(settings, service),
        routes=[Mount("/v1", app=api)],
        read_models=[adapters.channels, adapters.teams],
        periodic=[Periodic("report-lag", LAG_INTERVAL_S, service.report_lag)],
    )


def create_reports_app(
    settings: ReportsSettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(ReportsSettings)
    return create_app(
        ServiceSpec(
            name="reports",
            settings=settings,
            adapters=partial(production_adapters, settings),
            build=partial(build, settings, clock=clock),
        )
    )
