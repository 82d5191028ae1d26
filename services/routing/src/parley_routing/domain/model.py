"""The conversation aggregate (pure): queues, sequence numbers and the events it causes.

Walking-skeleton rules: a customer's first message opens a conversation in New; every message
(inbound, or the business's outbound echo) is added with the next sequence number. A message
the conversation already applied changes nothing and yields the events it caused the first
time, so a redelivery can republish them (consumers deduplicate on the deterministic ids).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parley_events import (
    ConversationCreated,
    ConversationEvent,
    ConversationMessageAdded,
    MessageReceived,
    Provider,
    Queue,
    model_for,
)

RECENT_LIMIT = 50
"""How many applied messages a conversation remembers with the events they caused."""


def conversation_event_id(conversation_id: str, sequence: int) -> str:
    """Deterministic: one id per (conversation, sequence number)."""
    digest = hashlib.sha256(f"{conversation_id}\x1f{sequence}".encode()).hexdigest()[:32]
    return f"cev_{digest}"


@dataclass
class Conversation:
    """A thread with one customer (or one post's comments) on one channel."""

    id: str
    tenant_id: str
    channel_id: str
    provider: Provider
    conversation_key: str
    queue: Queue
    created_at: datetime
    last_activity_at: datetime
    sequence: int = 0
    version: int = 0
    owner_id: str | None = None
    recent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Message event id -> the events it caused (JSON), oldest first, bounded."""

    @classmethod
    def open(cls, message: MessageReceived) -> Conversation:
        """A conversation for a thread Parley has not seen before (no events yet)."""
        return cls(
            id=message.conversation_id,
            tenant_id=message.tenant_id,
            channel_id=message.channel_id,
            provider=message.provider,
            conversation_key=message.conversation_key,
            queue=Queue.NEW,
            created_at=message.provider_timestamp,
            last_activity_at=message.provider_timestamp,
        )

    def has_applied(self, message_event_id: str) -> bool:
        return message_event_id in self.recent

    def events_of(self, message_event_id: str) -> list[ConversationEvent]:
        """The events a message caused when it was first applied."""
        events: list[ConversationEvent] = []
        for data in self.recent.get(message_event_id, []):
            model = model_for(data["type"])
            event = model.model_validate(data["data"])
            assert isinstance(event, ConversationEvent)
            events.append(event)
        return events

    def receive(self, message: MessageReceived) -> list[ConversationEvent]:
        """Apply a message; idempotent on the message's event id."""
        if self.has_applied(message.event_id):
            return self.events_of(message.event_id)
        events: list[ConversationEvent] = []
        if self.sequence == 0:
            events.append(
                ConversationCreated(
                    **self._next(message.provider_timestamp),
                    provider=self.provider,
                    conversation_key=self.conversation_key,
                    queue=self.queue,
                )
            )
        events.append(
            ConversationMessageAdded(
                **self._next(message.provider_timestamp),
                message_event_id=message.event_id,
                direction=message.direction,
                author=message.author,
                content=message.content,
                provider_message_id=message.provider_message_id,
                provider_timestamp=message.provider_timestamp,
            )
        )
        self.last_activity_at = max(self.last_activity_at, message.provider_timestamp)
        self._remember(message.event_id, events)
        return events

    def _next(self, at: datetime) -> dict[str, Any]:
        self.sequence += 1
        return {
            "event_id": conversation_event_id(self.id, self.sequence),
            "conversation_id": self.id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "sequence": self.sequence,
            "occurred_at": at,
        }

    def _remember(self, message_event_id: str, events: list[ConversationEvent]) -> None:
        self.recent[message_event_id] = [
            {"type": e.event_type, "data": e.model_dump(mode="json")} for e in events
        ]
        while len(self.recent) > RECENT_LIMIT:
            del self.recent[next(iter(self.recent))]

    @staticmethod
    def snapshot_fields() -> tuple[str, ...]:
        return (
            "tenant_id",
            "channel_id",
            "provider",
            "conversation_key",
            "queue",
            "created_at",
            "last_activity_at",
            "sequence",
            "version",
            "owner_id",
            "recent",
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "provider": self.provider.value,
            "conversation_key": self.conversation_key,
            "queue": self.queue.value,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
            "sequence": self.sequence,
            "version": self.version,
            "owner_id": self.owner_id,
            # a list keeps insertion order on every store
            "recent": [{"message_event_id": k, "events": v} for k, v in self.recent.items()],
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Conversation:
        return cls(
            id=doc["_id"],
            tenant_id=doc["tenant_id"],
            channel_id=doc["channel_id"],
            provider=Provider(doc["provider"]),
            conversation_key=doc["conversation_key"],
            queue=Queue(doc["queue"]),
            created_at=doc["created_at"],
            last_activity_at=doc["last_activity_at"],
            sequence=doc["sequence"],
            version=doc["version"],
            owner_id=doc.get("owner_id"),
            recent={r["message_event_id"]: r["events"] for r in doc.get("recent", [])},
        )
