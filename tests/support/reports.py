"""Hand-built public events of one conversation, numbered like routing numbers them (the reports
tests' builder: unit tests apply them to the domain, integration tests publish them)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from parley_events import (
    Author,
    Content,
    ConversationCreated,
    ConversationMessageAdded,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationStatusChanged,
    Direction,
    OwnerChangeReason,
    Provider,
    Queue,
    ReplySent,
    SenderType,
    StatusChangeReason,
)

T0 = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)  # a Friday; Europe/Paris moves to summer time on the 29th
TENANT, CHANNEL = "t1", "ch1"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Conversation:
    """Builds one conversation's public events, numbering its sequence like routing does."""

    def __init__(
        self, conversation_id: str = "c1", channel_id: str = CHANNEL, tenant_id: str = TENANT
    ) -> None:
        self.id, self.channel_id, self.tenant_id = conversation_id, channel_id, tenant_id
        self.seq = itertools.count(1)
        self.replies = itertools.count(1)

    def _base(self, minutes: float) -> dict[str, object]:
        n = next(self.seq)
        return {
            "event_id": f"{self.id}:{n}",
            "conversation_id": self.id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "sequence": n,
            "occurred_at": at(minutes),
        }

    def created(self, minutes: float) -> ConversationCreated:
        return ConversationCreated(
            **self._base(minutes), provider=Provider.MESSENGER, conversation_key="dm:1", queue=Queue.NEW
        )

    def message(
        self,
        minutes: float,
        direction: Direction = Direction.INBOUND,
        pmid: str | None = None,
        **content: object,
    ) -> ConversationMessageAdded:
        base = self._base(minutes)
        return ConversationMessageAdded(
            **base,
            message_event_id=f"msg:{base['event_id']}",
            direction=direction,
            author=Author(id="customer"),
            content=Content(text="hello", **content),  # type: ignore[arg-type]
            provider_message_id=pmid or f"m:{base['event_id']}",
            provider_timestamp=at(minutes),
        )

    def status(
        self, minutes: float, from_q: Queue, to_q: Queue, reason: StatusChangeReason, actor: str | None = None
    ) -> ConversationStatusChanged:
        return ConversationStatusChanged(
            **self._base(minutes), from_queue=from_q, to_queue=to_q, reason=reason, actor_id=actor
        )

    def resolved(self, minutes: float, actor: str | None = "alice") -> ConversationStatusChanged:
        reason = StatusChangeReason.AGENT if actor else StatusChangeReason.AUTO_RESOLVE
        return self.status(minutes, Queue.NEW, Queue.RESOLVED, reason, actor)

    def reopened(self, minutes: float) -> ConversationStatusChanged:
        return self.status(minutes, Queue.RESOLVED, Queue.NEW, StatusChangeReason.REOPENED)

    def owned(self, minutes: float, owner: str) -> ConversationOwnerAssigned:
        return ConversationOwnerAssigned(
            **self._base(minutes), owner_id=owner, reason=OwnerChangeReason.ASSIGNED
        )

    def owner_cleared(self, minutes: float, owner: str) -> ConversationOwnerCleared:
        return ConversationOwnerCleared(
            **self._base(minutes), previous_owner_id=owner, reason=OwnerChangeReason.RESOLVED
        )

    def reply(self, minutes: float, agent: str | None = "alice", pmid: str | None = None) -> ReplySent:
        n = next(self.replies)
        return ReplySent(
            reply_id=f"{self.id}:r{n}",
            conversation_id=self.id,
            tenant_id=self.tenant_id,
            channel_id=self.channel_id,
            sender_type=SenderType.HUMAN if agent else SenderType.AUTOMATED,
            agent_id=agent,
            provider_message_id=pmid or f"out:{self.id}:r{n}",
            sent_at=at(minutes),
        )

    def echo(self, reply: ReplySent) -> ConversationMessageAdded:
        """Routing's record of a sent reply (an outbound message at the reply's time)."""
        minutes = (reply.sent_at - T0).total_seconds() / 60
        return self.message(minutes, Direction.OUTBOUND, pmid=reply.provider_message_id)
