"""The one wiring point of the routing process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from faststream.kafka.annotations import KafkaMessage
from parley_events import ConversationEvent, topics
from parley_shared.auth import TokenVerifier
from parley_shared.channels import DirectoryRoles, KafkaChannelDirectory, KafkaTeamDirectory
from parley_shared.kafka import CONSUMER_ACK_POLICY
from parley_shared.logging import get_logger
from parley_shared.runtime import LazyApp, Runtime, ServiceSpec, cancel_tasks, create_app, loaded, periodic
from parley_shared.settings import load_settings
from parley_shared.tracing import trace_of
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from parley_routing.adapters.repository import MongoConversationRepository
from parley_routing.entrypoints.api import create_api
from parley_routing.entrypoints.subscribers import RoutingSubscribers
from parley_routing.service import AgentService, ConversationService, utcnow
from parley_routing.settings import RoutingSettings

log = get_logger(__name__)

SEEN_PRUNE_INTERVAL_S = 3600.0
"""How often expired provider message ids are deleted (FerretDB has no TTL indexes)."""


def create_routing_app(
    settings: RoutingSettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(RoutingSettings)
    channels = KafkaChannelDirectory(settings.kafka_bootstrap_servers, "")
    teams = KafkaTeamDirectory(settings.kafka_bootstrap_servers, "")
    verifier = TokenVerifier(settings)
    holder: dict[str, Any] = {}

    async def register(rt: Runtime) -> None:
        channels.topic = rt.topic(topics.CHANNELS.name)
        teams.topic = rt.topic(topics.TEAMS.name)
        repository = MongoConversationRepository(
            rt.db["conversations"],
            rt.db["conversation_history"],
            notes=rt.db["conversation_notes"],
            seen=rt.db["conversation_seen_messages"],
            seen_retention=timedelta(seconds=settings.seen_message_retention_s),
        )

        async def publish(event: ConversationEvent) -> None:
            # in a batch, each conversation's events continue the trace of its own message
            with trace_of(event.conversation_id):
                await rt.publisher.publish(event, event_id=event.event_id, time=event.occurred_at)

        service = ConversationService(repository, publish, clock)
        holder.update(service=service, repository=repository)
        rt.state["service"] = service
        subscribers = RoutingSubscribers(service, channels, rt.retry)

        @rt.broker.subscriber(
            rt.topic(topics.MESSAGES_INBOUND.name),
            group_id=settings.group_id("routing"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            batch=True,
            max_records=settings.batch_max_records,
            title="route-messages",
            description="Normalized messages in, in batches; conversation events out.",
        )
        async def on_inbound(message: KafkaMessage) -> None:
            records = message.raw_message
            await subscribers.on_inbound_batch(records if isinstance(records, tuple) else (records,))

        @rt.broker.subscriber(
            rt.topic(topics.REPLIES.name),
            group_id=settings.group_id("routing-replies"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="apply-sent-replies",
            description="Sent replies in: outbound messages and auto-ownership.",
        )
        async def on_reply(message: KafkaMessage) -> None:
            await subscribers.on_reply(message)

    async def on_start(rt: Runtime) -> None:
        await holder["repository"].ensure_indexes()
        await channels.start()
        await teams.start()
        service = holder["service"]
        rt.state["tasks"] = [
            periodic(
                "auto-resolve",
                settings.auto_resolve_interval_s,
                lambda: service.auto_resolve(list(channels.by_id.values())),
            ),
            periodic("outbox-relay", settings.outbox_relay_interval_s, service.relay_outbox),
            periodic("seen-messages-prune", SEEN_PRUNE_INTERVAL_S, service.prune_seen_messages),
        ]
        rt.readiness.checks["read_models"] = loaded(channels, teams)

    async def on_stop(rt: Runtime) -> None:
        await cancel_tasks(rt.state.get("tasks", []))
        await channels.stop()
        await teams.stop()

    def routes(rt: Runtime) -> list[BaseRoute]:
        # the API needs the service, which exists once the lifespan has started
        return [
            Mount(
                "/v1",
                app=LazyApp(
                    lambda: create_api(
                        AgentService(holder["service"], DirectoryRoles(channels, teams)), verifier
                    )
                ),
            )
        ]

    return create_app(
        ServiceSpec(
            name="routing",
            settings=settings,
            register=register,
            on_start=on_start,
            on_stop=on_stop,
            routes=routes,
        )
    )
