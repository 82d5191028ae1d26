"""The one wiring point of the policy process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka import TopicPartition
from faststream.kafka.annotations import KafkaMessage
from parley_events import (
    ChannelReauthRequired,
    ChannelRole,
    ChannelTemplateStatusChanged,
    Event,
    MessageReceived,
    ReplyApproved,
    topics,
)
from parley_providers import registry
from parley_shared.auth import TokenVerifier
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory, role_on_channel
from parley_shared.kafka import CONSUMER_ACK_POLICY, decode_event
from parley_shared.logging import get_logger
from parley_shared.runtime import LazyApp, Runtime, ServiceSpec, cancel_tasks, create_app, loaded, periodic
from parley_shared.settings import load_settings
from parley_shared.vault import MongoCredentialStore, TokenVault, parse_keys
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from parley_policy.adapters.stores import PolicyStore, PolicyTemplates
from parley_policy.domain.retry import RetryBudget
from parley_policy.entrypoints.api import create_api
from parley_policy.service import Delivery, PolicyService, utcnow
from parley_policy.settings import PolicySettings

log = get_logger(__name__)

DELIVERY_POLL_MARGIN_S = 120.0
"""Beyond the retry budget: the last try, loading the token and announcing the outcome."""


def still_assigned(message: KafkaMessage) -> Callable[[], bool]:
    """Whether the consumer that fetched ``message`` still owns its partition."""
    record = message.raw_message
    assignment = getattr(getattr(message, "consumer", None), "assignment", None)
    if assignment is None or isinstance(record, tuple):
        return lambda: True
    partition = TopicPartition(record.topic, record.partition)
    return lambda: partition in assignment()


def create_policy_app(
    settings: PolicySettings | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    settings = settings or load_settings(PolicySettings)
    verifier = TokenVerifier(settings)
    channels = KafkaChannelDirectory(settings.kafka_bootstrap_servers, "")
    teams = KafkaTeamDirectory(settings.kafka_bootstrap_servers, "")
    holder: dict[str, Any] = {}

    def role_of(tenant_id: str, user_id: str, channel_id: str) -> ChannelRole | None:
        return role_on_channel(channels, teams, tenant_id, user_id, channel_id)

    async def register(rt: Runtime) -> None:
        channels.topic = rt.topic(topics.CHANNELS.name)
        teams.topic = rt.topic(topics.TEAMS.name)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), headers={"user-agent": "parley-policy"})
        holder["http"] = http
        store = PolicyStore(rt.db)
        templates = PolicyTemplates(rt.db)

        async def publish(event: Event, event_id: str) -> None:
            await rt.publisher.publish(event, event_id=event_id)

        service = PolicyService(
            store,
            channels.by_id.get,
            role_of,
            templates.of,
            publish,
            clock,
            settings.whatsapp_throughput_per_s,
            settings.whatsapp_messaging_tier,
        )
        vault = TokenVault(parse_keys(settings.encryption_keys.get_secret_value()))
        delivery = Delivery(
            store,
            MongoCredentialStore(rt.db["channel_credentials"], vault),
            registry.senders(http, settings),
            publish,
            clock,
            RetryBudget(
                settings.delivery_retry_budget_s,
                settings.delivery_backoff_s,
                settings.delivery_backoff_max_s,
            ),
        )
        holder.update(service=service, store=store, delivery=delivery, templates=templates)
        rt.state.update(service=service, delivery=delivery)

        @rt.broker.subscriber(
            rt.topic(topics.MESSAGES_INBOUND.name),
            group_id=settings.group_id("policy-windows"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="track-reply-windows",
            description="Customer messages open and restart reply windows.",
        )
        async def on_inbound(message: KafkaMessage) -> None:
            if message.headers.get("ce_type") == MessageReceived.event_type:
                await service.on_inbound(decode_event(MessageReceived, message.body))

        @rt.broker.subscriber(
            rt.topic(topics.REPLIES.name),
            group_id=settings.group_id("policy-delivery"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="deliver-replies",
            description="Approved replies are sent to the provider; sent or failed is announced.",
            # consumers of their own partitions: a reply retried through one channel's outage
            # holds back the partitions of its consumer only (docs/policy.md, Delivery)
            max_workers=settings.delivery_consumers,
            # a delivery may retry for the whole budget between two polls; past this interval the
            # consumer would leave the group and its partitions move while it still retries
            max_poll_interval_ms=int((settings.delivery_retry_budget_s + DELIVERY_POLL_MARGIN_S) * 1000),
        )
        async def on_reply(message: KafkaMessage) -> None:
            if message.headers.get("ce_type") == ReplyApproved.event_type:
                await delivery.deliver(decode_event(ReplyApproved, message.body), still_assigned(message))

        @rt.broker.subscriber(
            rt.topic(topics.CHANNEL_EVENTS.name),
            group_id=settings.group_id("policy-templates"),
            ack_policy=CONSUMER_ACK_POLICY,
            auto_offset_reset="earliest",
            title="template-reviews",
            description="Approved WhatsApp templates become sendable.",
        )
        async def on_channel_event(message: KafkaMessage) -> None:
            if message.headers.get("ce_type") == ChannelTemplateStatusChanged.event_type:
                await templates.record(decode_event(ChannelTemplateStatusChanged, message.body))
            elif message.headers.get("ce_type") == ChannelReauthRequired.event_type:
                log.info(
                    "channel needs a reconnect",
                    channel_id=decode_event(ChannelReauthRequired, message.body).channel_id,
                )

    async def sweep(service: PolicyService) -> int:
        announced = await service.sweep_windows(timedelta(seconds=settings.window_closing_lead_s))
        await service.store.forget_slots_before(int(clock().timestamp()) - 60)
        return announced

    async def on_start(rt: Runtime) -> None:
        store: PolicyStore = holder["store"]
        await store.ensure_indexes()
        await holder["templates"].load()
        await channels.start()
        await teams.start()
        service = holder["service"]
        rt.state["tasks"] = [
            periodic("window-sweep", settings.window_sweep_interval_s, lambda: sweep(service))
        ]
        rt.readiness.checks["read_models"] = loaded(channels, teams)

    async def on_stop(rt: Runtime) -> None:
        # first: retry waits end at once (uncommitted, redelivered), sends in flight finish while
        # the HTTP client and the consumers are still open
        await holder["delivery"].stop(settings.shutdown_timeout_s)
        await cancel_tasks(rt.state.get("tasks", []))
        await channels.stop()
        await teams.stop()
        await holder["http"].aclose()

    def routes(rt: Runtime) -> list[BaseRoute]:
        # the API needs the service, which exists once the lifespan has started
        return [Mount("/v1", app=LazyApp(lambda: create_api(holder["service"], verifier)))]

    return create_app(
        ServiceSpec(
            name="policy",
            settings=settings,
            register=register,
            on_start=on_start,
            on_stop=on_stop,
            routes=routes,
        )
    )
