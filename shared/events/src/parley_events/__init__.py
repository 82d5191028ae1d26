"""parley-events: the event contracts Parley publishes, installable on their own."""

from parley_events.envelope import CloudEventAttributes, MissingCloudEventHeader
from parley_events.models import (
    EVENT_TYPES,
    Attachment,
    Author,
    ChannelSnapshot,
    ChannelStatus,
    Content,
    ConversationCreated,
    ConversationEvent,
    ConversationMessageAdded,
    Direction,
    Event,
    MessageReceived,
    Provider,
    Queue,
    WebhookReceived,
    model_for,
)
from parley_events.topics import TopicSpec, all_topics, dlq_name, qualify

__all__ = [
    "EVENT_TYPES",
    "Attachment",
    "Author",
    "ChannelSnapshot",
    "ChannelStatus",
    "CloudEventAttributes",
    "Content",
    "ConversationCreated",
    "ConversationEvent",
    "ConversationMessageAdded",
    "Direction",
    "Event",
    "MessageReceived",
    "MissingCloudEventHeader",
    "Provider",
    "Queue",
    "TopicSpec",
    "WebhookReceived",
    "all_topics",
    "dlq_name",
    "model_for",
    "qualify",
]
