"""The one wiring point of the routing process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from faststream.kafka.annotations import KafkaMessage
from parley_events import ConversationEvent, topics
from parley_shared.auth import TokenVerifier
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory
from parley_shared.kafka import CONSUMER_ACK_POLICY
from parley_shared.logging import get_logger
from parley_shared.runtime import Runtime, ServiceSpec, create_app
from parley_shared.settings import load_settings
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from parley_routing.adapters.repository import MongoConversationRepository
from parley_routing.entrypoints.api import create_api
from parley_routing.entrypoints.subscribers import RoutingSubscribers
from parley_routing.handlers import ConversationService, utcnow
from parley_routing.settings import RoutingSettings

log = get_logger(__name__)


async def _every(seconds: float, name: str, work: Callable[[], Awaitable[int]]) -> None:
    """Run ``work`` periodically until cancelled; a failing round is logged, not fatal."""
    while True:
        await asyncio.sleep(seconds)
        try:
            done = await work()
            if done:
                log.info(f"{name} round", count=done)
        except Exception as exc:
            log.warning(f"{name} round failed; will try again", error=repr(exc))


def create_routing_app(
    settings: RoutingSettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(RoutingSettings)
    channels = KafkaChannelDirectory(settings.kafka_bootstrap_servers, "")
    teams = KafkaTeamDirectory(settings.kafka_bootstrap_servers, "")
    verifier = TokenVerifier(settings)
    holder: dict[str, ConversationService] = {}

    async def register(rt: Runtime) -> None:
        channels.topic = rt.topic(topics.CHANNELS.name)
        teams.topic = rt.topic(topics.TEAMS.name)
        repository = MongoConversationRepository(rt.db["conversations"], rt.db["conversation_history"])

        async def publish(event: ConversationEvent) -> None:
            await rt.publisher.publish(event, event_id=event.event_id, time=event.occurred_at)

        service = ConversationService(repository, publish, clock)
        holder["service"] = service
        rt.state["service"] = service
        subscribers = RoutingSubscribers(service, channels)

        @rt.broker.subscriber(
            rt.topic(topics.MESSAGES_INBOUND.name),
            group_id=settings.group_id("routing"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="route-messages",
            description="Normalized messages in; conversation events out.",
        )
        async def on_inbound(message: KafkaMessage) -> None:
            await subscribers.on_inbound(message)

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
        await holder["service"].repository.ensure_indexes()
        await channels.start()
        await teams.start()
        service = holder["service"]
        rt.state["tasks"] = [
            asyncio.create_task(
                _every(
                    settings.auto_resolve_interval_s,
                    "auto-resolve",
                    lambda: service.auto_resolve(list(channels.by_id.values())),
                ),
                name="auto-resolve",
            ),
            asyncio.create_task(
                _every(settings.outbox_relay_interval_s, "outbox relay", service.relay_outbox),
                name="outbox-relay",
            ),
        ]

        async def read_models_loaded() -> None:
            if not (channels.loaded.is_set() and teams.loaded.is_set()):
                raise RuntimeError("read models still loading")

        rt.readiness.checks["read_models"] = read_models_loaded

    async def on_stop(rt: Runtime) -> None:
        for task in rt.state.get("tasks", []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await channels.stop()
        await teams.stop()

    def routes(rt: Runtime) -> list[BaseRoute]:
        class LazyApi:
            """The API needs the service, which exists once the lifespan has started."""

            def __init__(self) -> None:
                self.app: Starlette | None = None

            async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
                if self.app is None:
                    self.app = create_api(holder["service"], channels, teams, verifier, clock)
                await self.app(scope, receive, send)

        return [Mount("/v1", app=LazyApi())]

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
