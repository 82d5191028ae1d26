"""Parley's wire contracts: one pydantic model per event type, each with a versioned type name.

Rules for changing them (checked by tests/unit/test_schema_compatibility.py against the
committed JSON Schemas in docs/schemas/): add optional fields only; removing or retyping a
field, or adding a required one, needs a new type version (``...v2``) and a new model.
Consumers ignore fields they do not know, so producers may grow ahead of them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from parley_events import topics


class Event(BaseModel):
    """Base of every event: frozen, tolerant of unknown fields, with a type and a topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    topic: ClassVar[topics.TopicSpec]

    def key(self) -> str:
        """The Kafka record key (partitioning and ordering unit)."""
        raise NotImplementedError

    def subject(self) -> str:
        """The CloudEvents subject; the record key by default."""
        return self.key()


class Provider(StrEnum):
    """The provider a channel or message belongs to."""

    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    WHATSAPP = "whatsapp"
    X = "x"


class Direction(StrEnum):
    """Who wrote a message: the customer (inbound) or the business itself (an echo)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Queue(StrEnum):
    """A conversation's queue."""

    NEW = "new"
    PENDING = "pending"
    RESOLVED = "resolved"


# --- ingest ---------------------------------------------------------------------------


class WebhookReceived(Event):
    """A verified webhook delivery, archived byte for byte before the provider got its 200."""

    event_type: ClassVar[str] = "parley.webhook.received.v1"
    topic: ClassVar[topics.TopicSpec] = topics.WEBHOOKS_RAW

    delivery_id: str = Field(
        description="Deterministic id of the delivery: sha256 of provider and body.",
        examples=["3f1c0a7e5b..."],
    )
    provider: str = Field(description="Which webhook endpoint received it: meta or x.", examples=["meta"])
    received_at: datetime = Field(description="When ingest received it (UTC).")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers that matter for replay; signatures are removed.",
        examples=[{"content-type": "application/json"}],
    )
    body_b64: str = Field(description="The raw request body, base64 encoded.")
    partition_key: str = Field(
        description="Record key: the first provider account id in the body, or the delivery id."
    )

    def key(self) -> str:
        return self.partition_key


class Author(BaseModel):
    """Who wrote a message, as the provider identifies them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(description="Provider user id (PSID, IGSID, wa_id, X user id).")
    name: str | None = Field(default=None, description="Display name or username when given.")


class Attachment(BaseModel):
    """A media or file attachment."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str = Field(examples=["image", "video", "audio", "file", "story_mention"])
    url: str | None = None
    media_id: str | None = None


class Content(BaseModel):
    """What a message carries. Every field is optional; providers fill what they have."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    text: str | None = Field(default=None, examples=["Where is my order?"])
    attachments: tuple[Attachment, ...] = ()


class MessageReceived(Event):
    """One provider message, normalized: the unit every downstream service consumes."""

    event_type: ClassVar[str] = "parley.message.received.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str = Field(
        description="Deterministic: derived from provider and provider message id.",
        examples=["msg_6a3e0c3e1c2f5b1d9a7e4f20"],
    )
    tenant_id: str
    channel_id: str
    provider: Provider
    account_id: str = Field(description="The business account: page id, IG id, phone id, X id.")
    conversation_id: str = Field(
        description="Deterministic id of the conversation (tenant, channel and thread key)."
    )
    conversation_key: str = Field(
        description="The thread: one per customer for DMs, one per post for comments.",
        examples=["dm:1234567890"],
    )
    direction: Direction
    author: Author
    content: Content
    provider_message_id: str = Field(examples=["m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"])
    provider_timestamp: datetime = Field(description="The provider's own timestamp, UTC.")
    delivery_id: str = Field(description="The archived delivery this came from.")

    def key(self) -> str:
        return self.conversation_id


# --- onboarding ---------------------------------------------------------------------------


class ChannelStatus(StrEnum):
    """Where a channel is in its life."""

    ACTIVE = "active"
    PENDING = "pending"
    REAUTH_REQUIRED = "reauth_required"
    DISCONNECTED = "disconnected"


class ChannelSnapshot(Event):
    """The full current state of a channel, secrets excluded; compacted by channel id."""

    event_type: ClassVar[str] = "parley.channel.snapshot.v1"
    topic: ClassVar[topics.TopicSpec] = topics.CHANNELS

    channel_id: str
    tenant_id: str
    provider: Provider
    account_id: str = Field(
        description="The id webhooks are addressed to: page id, IG business account id, "
        "WhatsApp phone_number_id or X user id.",
        examples=["104512345678901"],
    )
    status: ChannelStatus
    display_name: str | None = Field(default=None, max_length=255)
    auto_ownership: bool = True
    revision: int = Field(ge=1, description="Increases by one with every change.")

    def key(self) -> str:
        return self.channel_id


# --- routing ---------------------------------------------------------------------------


class ConversationEvent(Event):
    """Fields every conversation event carries, in order of the per-conversation sequence."""

    topic: ClassVar[topics.TopicSpec] = topics.CONVERSATIONS

    event_id: str = Field(description="Deterministic: conversation id and sequence number.")
    conversation_id: str
    tenant_id: str
    channel_id: str
    sequence: int = Field(
        ge=1, description="Increases by exactly one per conversation: order and detect gaps."
    )
    occurred_at: datetime

    def key(self) -> str:
        return self.conversation_id


class ConversationCreated(ConversationEvent):
    """A customer's first message opened a conversation."""

    event_type: ClassVar[str] = "parley.conversation.created.v1"

    provider: Provider
    conversation_key: str
    queue: Queue = Field(description="Always new for a fresh conversation.")


class ConversationMessageAdded(ConversationEvent):
    """A message (inbound or an outbound echo) joined the conversation."""

    event_type: ClassVar[str] = "parley.conversation.message_added.v1"

    message_event_id: str = Field(description="The MessageReceived event this came from.")
    direction: Direction
    author: Author
    content: Content
    provider_message_id: str
    provider_timestamp: datetime


EVENT_TYPES: tuple[type[Event], ...] = (
    WebhookReceived,
    MessageReceived,
    ChannelSnapshot,
    ConversationCreated,
    ConversationMessageAdded,
)


def model_for(event_type: str) -> type[Event]:
    """The model of a versioned event type name; KeyError if Parley does not know it."""
    for model in EVENT_TYPES:
        if model.event_type == event_type:
            return model
    raise KeyError(event_type)
