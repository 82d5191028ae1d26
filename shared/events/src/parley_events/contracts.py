"""Who publishes and who consumes which event types: the source of the AsyncAPI documents."""

from __future__ import annotations

from dataclasses import dataclass

from parley_events.models import (
    ChannelSnapshot,
    ConversationCreated,
    ConversationLabelsChanged,
    ConversationMessageAdded,
    ConversationNoteAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationStatusChanged,
    Event,
    MessageReceived,
    MessageStatusChanged,
    ReplySent,
    TeamSnapshot,
    TemplateStatusChanged,
    WebhookReceived,
)


@dataclass(frozen=True, slots=True)
class ServiceContract:
    """One Parley process's place on the bus."""

    service: str
    description: str
    publishes: tuple[type[Event], ...] = ()
    consumes: tuple[type[Event], ...] = ()


SERVICES: tuple[ServiceContract, ...] = (
    ServiceContract(
        "ingest",
        "Receives provider webhooks, verifies them and archives each delivery raw.",
        publishes=(WebhookReceived,),
    ),
    ServiceContract(
        "normalizer",
        "Turns archived deliveries into one normalized event per provider message.",
        publishes=(MessageReceived, MessageStatusChanged, TemplateStatusChanged),
        consumes=(WebhookReceived, ChannelSnapshot),
    ),
    ServiceContract(
        "routing",
        "Keeps conversations, queues and ownership; announces every change.",
        publishes=(
            ConversationCreated,
            ConversationMessageAdded,
            ConversationStatusChanged,
            ConversationOwnerAssigned,
            ConversationOwnerCleared,
            ConversationLabelsChanged,
            ConversationNoteAdded,
        ),
        consumes=(MessageReceived, ReplySent, ChannelSnapshot, TeamSnapshot),
    ),
    ServiceContract(
        "onboarding",
        "Connects channels and holds their settings (snapshots on the channels topic).",
        publishes=(ChannelSnapshot, TeamSnapshot),
        consumes=(TemplateStatusChanged,),
    ),
    ServiceContract(
        "policy",
        "Gates and delivers outbound replies; announces their outcomes.",
        publishes=(ReplySent,),
    ),
)
