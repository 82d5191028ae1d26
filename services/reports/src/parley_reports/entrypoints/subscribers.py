"""Reports on the bus: the public conversation, reply and status events in; nothing out.

Each subscriber has its own consumer group (reports scales and falls behind on its own, and a
slow report never delays routing), starts from the earliest retained record when the group is
new, and hands every typed event to ``ReportService.apply``; the last handler of each
acknowledges the types reports does not read.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream.kafka import KafkaRouter
from parley_events import (
    ConversationCreated,
    ConversationLabelsChanged,
    ConversationMessageAdded,
    ConversationNoteAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationStatusChanged,
    ConversationThreadControlChanged,
    MessageStatusChanged,
    ReplyFailed,
    ReplyRejected,
    ReplySent,
    TopicSpec,
    topics,
)
from parley_shared.kafka import (
    CONSUMER_ACK_POLICY,
    FETCH_WAIT_MS,
    acknowledge_other_types,
    of_type,
    service_router,
)

from parley_reports.domain.timing import ReportEvent
from parley_reports.service import ReportService
from parley_reports.settings import ReportsSettings

CONVERSATION_EVENTS: tuple[type[ReportEvent], ...] = (
    ConversationCreated,
    ConversationMessageAdded,
    ConversationStatusChanged,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    # these measure nothing, but they move the conversation's sequence and clock forward
    ConversationLabelsChanged,
    ConversationNoteAdded,
    ConversationThreadControlChanged,
)
REPLY_EVENTS: tuple[type[ReportEvent], ...] = (ReplySent, ReplyRejected, ReplyFailed)
STATUS_EVENTS: tuple[type[ReportEvent], ...] = (MessageStatusChanged,)


def _handler(
    service: ReportService, model: type[ReportEvent], topic: TopicSpec
) -> Callable[[Any], Awaitable[None]]:
    async def handler(event: Any) -> None:
        with structlog.contextvars.bound_contextvars(
            tenant_id=event.tenant_id, channel_id=event.channel_id, conversation_id=event.conversation_id
        ):
            await service.apply(event, topic.name)

    # the typed body FastStream validates and documents: one handler per event type
    handler.__annotations__ = {"event": model, "return": None}
    handler.__name__ = "apply_" + re.sub(r"(?<!^)(?=[A-Z])", "_", model.__name__).lower()
    handler.__doc__ = f"{model.__doc__}"
    return handler


def reports_router(settings: ReportsSettings, service: ReportService) -> KafkaRouter:
    """Reports' subscribers (it publishes nothing)."""
    router = service_router(settings.topic_namespace)
    for topic, name, models, description in (
        (
            topics.CONVERSATIONS,
            "reports-conversations",
            CONVERSATION_EVENTS,
            "Conversation events in: volume, first response, reply and resolution times, backlog, ownership.",
        ),
        (
            topics.REPLIES,
            "reports-replies",
            REPLY_EVENTS,
            "Reply outcomes in: replies by humans and automations, rejections by reason, failed "
            "deliveries by provider error. Requested and approved replies are skipped.",
        ),
        (
            topics.MESSAGES_INBOUND,
            "reports-statuses",
            STATUS_EVENTS,
            "Delivery statuses in, for WhatsApp's pricing category of each message sent. Messages "
            "and everything else on the topic are skipped.",
        ),
    ):
        subscriber = router.subscriber(
            topic.name,
            group_id=settings.group_id(name),
            ack_policy=CONSUMER_ACK_POLICY,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            auto_offset_reset="earliest",
            title=name,
            description=description,
        )
        for model in models:
            subscriber(filter=of_type(model))(_handler(service, model, topic))
        acknowledge_other_types(subscriber)
    return router
