"""The one wiring point of the routing process."""

from __future__ import annotations

from faststream.kafka.annotations import KafkaMessage
from parley_events import topics
from parley_shared.kafka import CONSUMER_ACK_POLICY
from parley_shared.runtime import Runtime, ServiceSpec, create_app
from parley_shared.settings import load_settings
from starlette.applications import Starlette

from parley_routing.adapters.repository import MongoConversationRepository
from parley_routing.entrypoints.subscribers import OnMessageReceived
from parley_routing.settings import RoutingSettings


def create_routing_app(settings: RoutingSettings | None = None) -> Starlette:
    settings = settings or load_settings(RoutingSettings)

    async def register(rt: Runtime) -> None:
        repository = MongoConversationRepository(rt.db["conversations"])
        rt.state["repository"] = repository
        handler = OnMessageReceived(repository, rt.publisher)

        @rt.broker.subscriber(
            rt.topic(topics.MESSAGES_INBOUND.name),
            group_id=settings.group_id("routing"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="route-messages",
            description="Normalized messages in; conversation events out.",
        )
        async def on_message_received(message: KafkaMessage) -> None:
            await handler(message)

    async def on_start(rt: Runtime) -> None:
        await rt.state["repository"].ensure_indexes()

    return create_app(ServiceSpec(name="routing", settings=settings, register=register, on_start=on_start))
