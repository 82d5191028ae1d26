"""Policy on the bus: customer messages, approved replies, template reviews and thread-control
changes in; reply outcomes, reply windows and reconnect prompts out."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from aiokafka import TopicPartition
from faststream.kafka import KafkaRouter
from parley_events import (
    ChannelReauthRequired,
    ChannelSendingRestricted,
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    ChannelTokenRefreshRequested,
    ConversationAwayMessageDue,
    ConversationReadRequested,
    ConversationThreadControlChanged,
    HumanAgentWindowClosed,
    MessageReceived,
    MessagingLimitChanged,
    ReplyApproved,
    ReplyFailed,
    ReplyRejected,
    ReplyRequested,
    ReplySent,
    ReplyWindowClosed,
    ReplyWindowClosing,
    ReplyWindowOpened,
    ThreadControlReleased,
    ThreadControlTaken,
    topics,
)
from parley_shared.kafka import (
    BATCH_WAIT_MS,
    CONSUMER_ACK_POLICY,
    FETCH_WAIT_MS,
    KafkaMessage,
    RetryThenDeadLetter,
    acknowledge_other_types,
    batch_records,
    documented_as_batch_of,
    handle_typed_records,
    of_type,
    partition_lanes,
    publishes,
    record_event_type,
    rewind,
    service_router,
    still_assigned,
    typed_batches,
    undecoded,
)
from parley_shared.logging import get_logger

from parley_policy.adapters.stores import TemplatesPort
from parley_policy.service import Delivery, PolicyService
from parley_policy.settings import PolicySettings

log = get_logger(__name__)

DELIVERY_POLL_MARGIN_S = 120.0
"""Beyond the retry budget: the last try, loading the token and announcing the outcome."""

DELIVERY_BATCH_RECORDS = 100
"""Records a delivery consumer takes per poll (about a quarter of them approved replies)."""

DELIVERY_BATCH_TIME_S = 30.0
"""After this long a batch's lanes start no new delivery: a lane retrying through an outage ends
its reply and the rest of its partition is fetched again by the next poll."""


def deliver_replies(
    router: KafkaRouter, settings: PolicySettings, delivery: Delivery, retry: RetryThenDeadLetter
) -> None:
    """``delivery_consumers`` batch consumers of the replies topic, in one group.

    Each batch is handled in partition lanes (:func:`partition_lanes`): a partition's approved
    replies are delivered one after another, in order, while the batch's other partitions
    deliver theirs alongside; the other event types of the topic (requests, outcomes: about three
    records in four) are passed over undecoded, and the batch is committed once. A reply retried
    through one channel's outage holds back the partitions of its consumer only.
    """

    async def deliver_batch(batch: Any, message: KafkaMessage) -> None:
        started = time.monotonic()

        def go_on(partition: TopicPartition) -> bool:
            # a partition taken away is its new owner's to deliver
            return still_assigned(message, partition)() and time.monotonic() - started < DELIVERY_BATCH_TIME_S

        async def deliver_record(record: Any) -> None:
            if record_event_type(record) != ReplyApproved.event_type:
                return
            owned = still_assigned(message, TopicPartition(record.topic, record.partition))
            handler = (ReplyApproved, partial(delivery.deliver, owned=owned))
            await handle_typed_records(retry, {ReplyApproved.event_type: handler}, (record,))

        stopped = await partition_lanes(batch_records(message), deliver_record, go_on=go_on)
        if stopped:
            # the committed offsets stop before each lane's first unfinished record
            rewind(message, stopped)
            if delivery.stopping:
                # the lanes stopped at once: no quick round of fetches until the consumers close
                await asyncio.sleep(1.0)

    description = (
        "Approved replies are sent to the provider; sent or failed is announced. In batches, each "
        "partition's replies in order, the batch's partitions side by side, one commit per batch."
    )
    documented_as_batch_of(deliver_batch, (ReplyApproved,), description)
    for consumer in range(settings.delivery_consumers):
        router.subscriber(
            topics.REPLIES.name,
            group_id=settings.group_id("policy-delivery"),
            ack_policy=CONSUMER_ACK_POLICY,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            auto_offset_reset="earliest",
            batch=True,
            batch_timeout_ms=BATCH_WAIT_MS,
            max_records=DELIVERY_BATCH_RECORDS,
            decoder=undecoded,
            title="deliver-replies",
            description=description,
            # one entry in the AsyncAPI document for the group's consumers
            include_in_schema=consumer == 0,
            # a lane may start a delivery just before the batch's time is up, and that delivery
            # may retry for the whole budget; past this interval the consumer would leave the
            # group and its partitions move while it still retries
            max_poll_interval_ms=int(
                (DELIVERY_BATCH_TIME_S + settings.delivery_retry_budget_s + DELIVERY_POLL_MARGIN_S) * 1000
            ),
        )(deliver_batch)


def policy_router(
    settings: PolicySettings,
    service: PolicyService,
    delivery: Delivery,
    templates: TemplatesPort,
    retry: RetryThenDeadLetter,
) -> KafkaRouter:
    """Policy's subscribers and publications."""
    router = service_router(settings.topic_namespace)
    publishes(
        router,
        ReplyRequested,
        ReplyApproved,
        ReplyRejected,
        ReplySent,
        ReplyFailed,
        ThreadControlTaken,
        ThreadControlReleased,
        title="reply-outcomes",
        description="Every reply request's decision, and the provider's answer to an approved one; "
        "agents' thread-control calls (Conversation Routing), once the provider accepted them.",
    )
    publishes(
        router,
        ReplyWindowOpened,
        ReplyWindowClosing,
        ReplyWindowClosed,
        HumanAgentWindowClosed,
        title="reply-windows",
        description="Reply windows opening, closing soon and closed, for agents' countdowns.",
    )
    publishes(
        router,
        ChannelReauthRequired,
        ChannelSendingRestricted,
        ChannelTokenRefreshRequested,
        title="channel-send-problems",
        description="A send refused for the channel's token (the channel must be reconnected) or "
        "because the provider restricts the account's sends for now; a token found past its end "
        "that onboarding refreshes (the reply is tried again on the new one).",
    )

    typed_batches(
        router,
        topics.MESSAGES_INBOUND.name,
        group_id=settings.group_id("policy-windows"),
        retry=retry,
        handlers=[
            # a customer message opens or restarts its conversation's reply window
            (MessageReceived, service.on_inbound),
            # WhatsApp set a business's messaging limit: business-initiated sends count against it
            (MessagingLimitChanged, service.on_messaging_limit),
        ],
        title="track-reply-windows",
        description="Customer messages open and restart reply windows; the provider's messaging "
        "limit updates set how many customers a business may reach outside them. In batches, each "
        "record handled on its own, one commit per batch.",
    )

    deliver_replies(router, settings, delivery, retry)

    channel_events = router.subscriber(
        topics.CHANNEL_EVENTS.name,
        group_id=settings.group_id("policy-templates"),
        ack_policy=CONSUMER_ACK_POLICY,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        auto_offset_reset="earliest",
        title="template-reviews",
        description="Approved WhatsApp templates become sendable, with their parameter counts, "
        "categories and quality ratings; a change applies from the next send.",
    )

    @channel_events(filter=of_type(ChannelTemplateStatusChanged))
    async def record_template_review(review: ChannelTemplateStatusChanged) -> None:
        """Meta's review of a WhatsApp template decides whether policy lets it be sent."""
        await templates.record(review)

    @channel_events(filter=of_type(ChannelTemplateCategoryChanged))
    async def record_template_category(change: ChannelTemplateCategoryChanged) -> None:
        """A template's new category decides who it may be sent to (authentication: phones only)."""
        await templates.record_category(change)

    @channel_events(filter=of_type(ChannelTemplateQualityChanged))
    async def record_template_quality(change: ChannelTemplateQualityChanged) -> None:
        """A template's quality rating, told with its sends (Meta pauses low-quality templates itself)."""
        await templates.record_quality(change)

    @channel_events(filter=of_type(ChannelReauthRequired))
    async def note_reconnect_needed(prompt: ChannelReauthRequired) -> None:
        """Sends through the channel will fail until it is reconnected: say so in the log."""
        log.info("channel needs a reconnect", channel_id=prompt.channel_id)

    acknowledge_other_types(channel_events)

    typed_batches(
        router,
        topics.CONVERSATIONS.name,
        group_id=settings.group_id("policy-thread-control"),
        retry=retry,
        handlers=[
            # a reply to a thread another app answers is refused (NOT_THREAD_OWNER)
            (ConversationThreadControlChanged, service.on_thread_control),
            # a customer wrote out of business hours: the channel's away message, as an automation's reply
            (ConversationAwayMessageDue, service.send_away_message),
        ],
        title="track-thread-control",
        description="Whether Parley's app answers each thread (Conversation Routing), and the "
        "away messages routing found due (sent as automated replies); other conversation events "
        "are passed over. In batches, each record handled on its own, one commit per batch.",
    )

    typed_batches(
        router,
        topics.CONVERSATIONS.name,
        group_id=settings.group_id("policy-reads-on-open"),
        retry=retry,
        # the customer sees their message read when an agent opens the conversation
        handlers=[(ConversationReadRequested, service.on_read_requested)],
        # each one a provider call: small batches stay well inside the consumer's poll interval
        max_records=20,
        title="read-on-open",
        description="An agent who may reply opened a conversation on a channel that marks messages "
        "read on open -> the customer's last message is marked read (once per message); a separate "
        "group, so a slow provider never holds thread control back. In batches, one commit per batch.",
    )
    return router
