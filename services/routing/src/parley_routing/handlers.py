"""Service layer: load the aggregate, apply the command, save, return the events to publish."""

from __future__ import annotations

from parley_events import ConversationEvent, MessageReceived

from parley_routing.adapters.repository import ConcurrentUpdate, ConversationRepository
from parley_routing.domain.model import Conversation

MAX_CONFLICT_RETRIES = 10


async def record_message(
    message: MessageReceived, repository: ConversationRepository
) -> list[ConversationEvent]:
    """Add a normalized message to its conversation (opening it if new); idempotent."""
    for _ in range(MAX_CONFLICT_RETRIES):
        conversation = await repository.get(message.conversation_id)
        if conversation is None:
            conversation = Conversation.open(message)
        elif conversation.has_applied(message.event_id):
            return conversation.events_of(message.event_id)
        events = conversation.receive(message)
        try:
            await repository.save(conversation)
        except ConcurrentUpdate:
            continue
        return events
    raise ConcurrentUpdate(message.conversation_id)
