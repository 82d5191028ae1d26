"""Onboarding on the bus: template reviews in; channel and team snapshots and channel lifecycle out."""

from __future__ import annotations

from faststream.kafka import KafkaRouter
from parley_events import (
    ChannelConnected,
    ChannelDisconnected,
    ChannelHoursChanged,
    ChannelReauthRequired,
    ChannelReconnected,
    ChannelSendingRestricted,
    ChannelSettingsChanged,
    ChannelSnapshot,
    ChannelSubscriptionLost,
    ChannelSubscriptionRepaired,
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    ChannelTokenExpiring,
    ChannelTokenRefreshRequested,
    NumberThroughputChanged,
    TeamSnapshot,
    TemplateCategoryChanged,
    TemplateQualityChanged,
    TemplateStatusChanged,
    WhatsAppStepChanged,
    topics,
)
from parley_shared.kafka import (
    CONSUMER_ACK_POLICY,
    FETCH_WAIT_MS,
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
        ChannelHoursChanged,
        WhatsAppStepChanged,
        ChannelTemplateStatusChanged,
        ChannelTemplateCategoryChanged,
        ChannelTemplateQualityChanged,
        ChannelSubscriptionRepaired,
        ChannelSubscriptionLost,
        title="channel-lifecycle",
        description="Channels connected, changed, expiring, reconnected and disconnected; WhatsApp "
        "verification steps, templates created, reviewed, recategorized, rated and deleted.",
    )

    reviews = router.subscriber(
        topics.MESSAGES_INBOUND.name,
        group_id=settings.group_id("onboarding-templates"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        title="template-reviews",
        description="WhatsApp template reviews, category changes and quality ratings seen by ingest "
        "-> channel template events.",
    )

    @reviews(filter=of_type(TemplateStatusChanged))
    async def record_template_review(update: TemplateStatusChanged) -> None:
        """Meta's review of a template, attributed to the channels of its business account."""
        await service.on_template_update(update)

    @reviews(filter=of_type(TemplateCategoryChanged))
    async def record_template_category(update: TemplateCategoryChanged) -> None:
        """Meta's new category for a template, attributed to the channels of its business account."""
        await service.on_template_update(update)

    @reviews(filter=of_type(TemplateQualityChanged))
    async def record_template_quality(update: TemplateQualityChanged) -> None:
        """Meta's new quality rating of a template, attributed to the channels of its business account."""
        await service.on_template_update(update)

    acknowledge_other_types(reviews)

    refresh_requests = router.subscriber(
        topics.CHANNEL_EVENTS.name,
        group_id=settings.group_id("onboarding-token-refresh"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        title="token-refresh-requests",
        description="A send found a channel's token past its end -> onboarding refreshes it now "
        "(the one service that spends refresh tokens; a request for a token refreshed meanwhile "
        "does nothing).",
    )

    @refresh_requests(filter=of_type(ChannelTokenRefreshRequested))
    async def refresh_on_request(request: ChannelTokenRefreshRequested) -> None:
        """Refresh the channel's token now, as the periodic job would (the same claim in the store)."""
        await service.refresh_channel_token(request.channel_id)

    acknowledge_other_types(refresh_requests)

    restrictions = router.subscriber(
        topics.CHANNEL_EVENTS.name,
        group_id=settings.group_id("onboarding-restrictions"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        title="sending-restrictions",
        description="A send refused because the provider restricts the account for now -> "
        "recorded on the channel for its administrators (cleared by a reconnect).",
    )

    @restrictions(filter=of_type(ChannelSendingRestricted))
    async def record_sending_restriction(news: ChannelSendingRestricted) -> None:
        """Record the restriction on the channel document the console reads."""
        await service.on_sending_restricted(news)

    acknowledge_other_types(restrictions)

    throughputs = router.subscriber(
        topics.MESSAGES_INBOUND.name,
        group_id=settings.group_id("onboarding-throughput"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        title="number-throughput",
        description="A WhatsApp number's throughput changed -> the channel's throughput read again.",
    )

    @throughputs(filter=of_type(NumberThroughputChanged))
    async def refresh_number_throughput(update: NumberThroughputChanged) -> None:
        """Read the business account's numbers' throughput again and record what changed."""
        await service.on_number_throughput(update)

    acknowledge_other_types(throughputs)
    return router
