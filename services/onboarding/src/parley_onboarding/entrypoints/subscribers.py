"""Onboarding on the bus: template reviews in; channel and team snapshots and channel lifecycle out."""

from __future__ import annotations

from faststream.kafka import KafkaRouter
from parley_events import (
    ChannelConnected,
    ChannelDisconnected,
    ChannelReauthRequired,
    ChannelReconnected,
    ChannelSettingsChanged,
    ChannelSnapshot,
    ChannelSubscriptionLost,
    ChannelSubscriptionRepaired,
    ChannelTemplateCategoryChanged,
    ChannelTemplateStatusChanged,
    ChannelTokenExpiring,
    TeamSnapshot,
    TemplateCategoryChanged,
    TemplateStatusChanged,
    WhatsAppStepChanged,
    topics,
)
from parley_shared.kafka import (
    CONSUMER_ACK_POLICY,
    acknowledge_other_types,
    of_type,
    publishes,
    service_router,
)

from parley_onboarding.service import OnboardingService
from parley_onboarding.settings import OnboardingSettings


def onboarding_router(settings: OnboardingSettings, service: OnboardingService) -> KafkaRouter:
    """Onboarding's subscribers and publications."""
    router = service_router(settings.topic_namespace)
    publishes(
        router,
        ChannelSnapshot,
        title="channel-snapshots",
        description="Every channel's full state after each change (compacted: the latest per channel).",
    )
    publishes(
        router,
        TeamSnapshot,
        title="team-snapshots",
        description="Every team's members after each change (compacted: the latest per team).",
    )
    publishes(
        router,
        ChannelConnected,
        ChannelSettingsChanged,
        ChannelTokenExpiring,
        ChannelReauthRequired,
        ChannelReconnected,
        ChannelDisconnected,
        WhatsAppStepChanged,
        ChannelTemplateStatusChanged,
        ChannelTemplateCategoryChanged,
        ChannelSubscriptionRepaired,
        ChannelSubscriptionLost,
        title="channel-lifecycle",
        description="Channels connected, changed, expiring, reconnected and disconnected; WhatsApp "
        "verification steps, templates created, reviewed, recategorized and deleted.",
    )

    reviews = router.subscriber(
        topics.MESSAGES_INBOUND.name,
        group_id=settings.group_id("onboarding-templates"),
        ack_policy=CONSUMER_ACK_POLICY,
        auto_offset_reset="earliest",
        title="template-reviews",
        description="WhatsApp template reviews and category changes seen by ingest -> channel "
        "template events.",
    )

    @reviews(filter=of_type(TemplateStatusChanged))
    async def record_template_review(update: TemplateStatusChanged) -> None:
        """Meta's review of a template, attributed to the channels of its business account."""
        await service.on_template_status(update)

    @reviews(filter=of_type(TemplateCategoryChanged))
    async def record_template_category(update: TemplateCategoryChanged) -> None:
        """Meta's new category for a template, attributed to the channels of its business account."""
        await service.on_template_category(update)

    acknowledge_other_types(reviews)
    return router
