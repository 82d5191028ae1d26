"""Where conversations are kept: a port and its MongoDB adapter (optimistic concurrency)."""

from __future__ import annotations

from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from parley_routing.domain.model import Conversation


class ConcurrentUpdate(Exception):
    """Someone else changed the conversation since it was read: reload and try again."""


class ConversationRepository(Protocol):
    """Load and save conversations; ``save`` fails if the stored version moved on."""

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def save(self, conversation: Conversation) -> None: ...


class MongoConversationRepository:
    """Conversations as one document each; writes are conditional on the version read."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index(
            [
                ("tenant_id", ASCENDING),
                ("channel_id", ASCENDING),
                ("queue", ASCENDING),
                ("last_activity_at", DESCENDING),
            ],
            name="queue_by_activity",
        )

    async def get(self, conversation_id: str) -> Conversation | None:
        doc = await self.collection.find_one({"_id": conversation_id})
        return None if doc is None else Conversation.from_document(doc)

    async def save(self, conversation: Conversation) -> None:
        expected = conversation.version
        conversation.version = expected + 1
        doc = conversation.to_document()
        try:
            if expected == 0:
                await self.collection.insert_one(doc)
                return
            result = await self.collection.replace_one({"_id": conversation.id, "version": expected}, doc)
        except DuplicateKeyError as exc:
            conversation.version = expected
            raise ConcurrentUpdate(conversation.id) from exc
        if result.matched_count != 1:
            conversation.version = expected
            raise ConcurrentUpdate(conversation.id)
