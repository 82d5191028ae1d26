"""Policy's store: conversation facts, idempotent decisions, deliveries, rate slots, window notices.

Every "exactly once" here is a unique-key insert, which is atomic on MongoDB and FerretDB alike
(docs/storage.md).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Protocol

from parley_events import ChannelTemplateStatusChanged, MessageKind, MessageReceived, Provider
from parley_shared.mongo import MongoIdempotencyStore
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from parley_policy.domain.decision import ConversationFacts, TemplateInfo

MAX_MENTIONS = 200
"""Mentions remembered per conversation (X keys one conversation per customer): the newest."""


def inbound_document(doc: dict[str, Any], message: MessageReceived) -> tuple[dict[str, Any], bool]:
    """A conversation's document after a customer message, and whether it restarts the window
    (pure: the Mongo adapter and the unit tests' fake build the same document)."""
    recipient = message.conversation_key.split(":", 1)[1] if ":" in message.conversation_key else ""
    comments = dict(doc.get("comments", {}))
    if message.kind is MessageKind.COMMENT:
        comments[message.provider_message_id] = message.provider_timestamp
    mentions = list(doc.get("mentions", []))
    # public replies may answer only these; Instagram's mention ids carry ingest's "mention:"
    # prefix (the reply names the bare comment or media id), X's are the post ids themselves
    mentioned = message.provider_message_id.removeprefix("mention:")
    if message.kind is MessageKind.MENTION and mentioned not in mentions:
        mentions = [*mentions, mentioned][-MAX_MENTIONS:]  # one customer's many posts: bounded
    last = doc.get("last_customer_message_at")
    opens = message.kind is MessageKind.DIRECT  # comments and mentions open no messaging window
    newer = opens and (last is None or message.provider_timestamp > last)
    return {
        "_id": message.conversation_id,
        "tenant_id": message.tenant_id,
        "channel_id": message.channel_id,
        "provider": message.provider.value,
        "account_id": message.account_id,
        "conversation_key": message.conversation_key,
        "recipient_id": doc.get("recipient_id") or recipient,
        "last_customer_message_at": message.provider_timestamp if newer else last,
        "comments": comments,
        "mentions": mentions,
        "private_replied": doc.get("private_replied", []),
    }, newer


def conversation_facts(doc: dict[str, Any]) -> ConversationFacts:
    """What a decision needs to know of a conversation, from its document (pure)."""
    return ConversationFacts(
        provider=Provider(doc["provider"]),
        last_customer_message_at=doc.get("last_customer_message_at"),
        private_replied_comments=frozenset(doc.get("private_replied", [])),
        comment_times=dict(doc.get("comments", {})),
        mention_ids=frozenset(doc.get("mentions", [])),
    )


class PolicyStorePort(Protocol):
    """Every store operation policy's service and delivery use (one port). The Mongo adapter is
    :class:`PolicyStore`; tests/support/fakes/policy.py keeps an in-memory one to the same contract."""

    async def ensure_indexes(self) -> None: ...

    async def record_inbound(self, message: MessageReceived) -> bool: ...

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None: ...

    def facts(self, doc: dict[str, Any]) -> ConversationFacts: ...

    async def mark_private_replied(self, conversation_id: str, comment_id: str) -> None: ...

    async def claim_decision(self, key: str, result: dict[str, Any]) -> dict[str, Any] | None: ...

    async def mark_published(self, key: str) -> None: ...

    async def delivered(self, reply_id: str) -> str | None: ...

    async def record_delivery(self, reply_id: str, provider_message_id: str) -> None: ...

    async def take_rate_slot(self, channel_id: str, second: int, limit: int, hint: int = 0) -> int | None: ...

    async def forget_slots_before(self, second: int) -> None: ...

    async def claim_notice(self, notice_id: str, at: datetime) -> bool: ...

    async def windows_due(
        self, due_before: datetime, since: datetime, page: int = 500
    ) -> list[dict[str, Any]]: ...

    async def business_initiated_recipients(self, channel_id: str, since: datetime) -> set[str]: ...

    async def record_business_initiated(self, channel_id: str, recipient_id: str, at: datetime) -> None: ...

    async def decision(self, key: str) -> dict[str, Any] | None: ...

    async def parley_active(self, conversation_id: str) -> bool: ...

    async def record_thread_control(
        self, conversation_id: str, parley_active: bool, at: datetime
    ) -> None: ...


class PolicyStore:
    """The collections policy owns."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.conversations = db["policy_conversations"]
        self.decisions = MongoIdempotencyStore(db["policy_decisions"])
        self.deliveries = db["policy_deliveries"]
        self.rate_slots = db["policy_rate_slots"]
        self.notices = db["policy_window_notices"]
        self.reached = db["policy_business_initiated"]
        self.thread_control = db["policy_thread_control"]

    async def ensure_indexes(self) -> None:
        await self.conversations.create_index([("last_customer_message_at", 1)], name="windows_by_time")
        await self.decisions.ensure_indexes()
        await self.rate_slots.create_index([("second", 1)], name="slots_by_second")

    async def record_inbound(self, message: MessageReceived) -> bool:
        """Remember the customer's last message (and comments for private replies); True if newer."""
        doc, newer = inbound_document(
            await self.conversations.find_one({"_id": message.conversation_id}) or {}, message
        )
        await self.conversations.replace_one({"_id": message.conversation_id}, doc, upsert=True)
        return newer

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        return await self.conversations.find_one({"_id": conversation_id})

    def facts(self, doc: dict[str, Any]) -> ConversationFacts:
        return conversation_facts(doc)

    async def mark_private_replied(self, conversation_id: str, comment_id: str) -> None:
        await self.conversations.update_one(
            {"_id": conversation_id}, {"$addToSet": {"private_replied": comment_id}}
        )

    async def claim_decision(self, key: str, result: dict[str, Any]) -> dict[str, Any] | None:
        """Store a decision under its idempotency key; return the earlier one if there was one."""
        if await self.decisions.record(key, result):
            return None
        return await self.decision(key)

    async def mark_published(self, key: str) -> None:
        """The decision's events are on the broker: a retried request publishes nothing again."""
        await self.decisions.collection.update_one({"_id": key}, {"$set": {"result.published": True}})

    async def delivered(self, reply_id: str) -> str | None:
        doc = await self.deliveries.find_one({"_id": reply_id})
        return None if doc is None else doc.get("provider_message_id")

    async def record_delivery(self, reply_id: str, provider_message_id: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.deliveries.insert_one({"_id": reply_id, "provider_message_id": provider_message_id})

    async def take_rate_slot(self, channel_id: str, second: int, limit: int, hint: int = 0) -> int | None:
        """Claim one of ``limit`` slots of this channel-second; the slot number, or None if all are taken."""
        for offset in range(limit):
            slot = (hint + offset) % limit
            try:
                await self.rate_slots.insert_one({"_id": f"{channel_id}:{second}:{slot}", "second": second})
            except DuplicateKeyError:
                continue
            return slot
        return None

    async def forget_slots_before(self, second: int) -> None:
        await self.rate_slots.delete_many({"second": {"$lt": second}})

    async def claim_notice(self, notice_id: str, at: datetime) -> bool:
        """True the first time a window notice is claimed, across every replica."""
        try:
            await self.notices.insert_one({"_id": notice_id, "at": at})
        except DuplicateKeyError:
            return False
        return True

    async def windows_due(
        self, due_before: datetime, since: datetime, page: int = 500
    ) -> list[dict[str, Any]]:
        """Conversations whose last customer message falls in [since, due_before], all of them."""
        found: list[dict[str, Any]] = []
        after: tuple[datetime, str] | None = None
        while True:
            query: dict[str, Any] = {"last_customer_message_at": {"$gte": since, "$lte": due_before}}
            if after is not None:
                query = {
                    "$and": [
                        query,
                        {
                            "$or": [
                                {"last_customer_message_at": {"$gt": after[0]}},
                                {"last_customer_message_at": after[0], "_id": {"$gt": after[1]}},
                            ]
                        },
                    ]
                }
            cursor = (
                self.conversations.find(query).sort([("last_customer_message_at", 1), ("_id", 1)]).limit(page)
            )
            batch = [d async for d in cursor]
            found.extend(batch)
            if len(batch) < page:
                return found
            after = (batch[-1]["last_customer_message_at"], batch[-1]["_id"])

    async def business_initiated_recipients(self, channel_id: str, since: datetime) -> set[str]:
        """Customers this WhatsApp number reached outside the window since ``since``."""
        cursor = self.reached.find({"channel_id": channel_id, "at": {"$gte": since}})
        return {d["recipient_id"] async for d in cursor}

    async def record_business_initiated(self, channel_id: str, recipient_id: str, at: datetime) -> None:
        await self.reached.replace_one(
            {"_id": f"{channel_id}:{recipient_id}"},
            {
                "_id": f"{channel_id}:{recipient_id}",
                "channel_id": channel_id,
                "recipient_id": recipient_id,
                "at": at,
            },
            upsert=True,
        )

    async def decision(self, key: str) -> dict[str, Any] | None:
        earlier = await self.decisions.result(key)
        return None if earlier is None else dict(earlier)

    async def parley_active(self, conversation_id: str) -> bool:
        """Whether Parley answers the thread: true unless a thread-control change said otherwise."""
        doc = await self.thread_control.find_one({"_id": conversation_id})
        return True if doc is None else bool(doc["parley_active"])

    async def record_thread_control(self, conversation_id: str, parley_active: bool, at: datetime) -> None:
        """Who answers the thread since ``at``; an older change than the one kept is ignored.

        Its own collection, not the conversation document: a customer message rewrites that
        document from what it read, and must not undo a take that landed in between."""
        doc = await self.thread_control.find_one({"_id": conversation_id})
        if doc is not None and doc["at"] > at:
            return
        await self.thread_control.replace_one(
            {"_id": conversation_id},
            {"_id": conversation_id, "parley_active": parley_active, "at": at},
            upsert=True,
        )


class TemplatesPort(Protocol):
    """The approved WhatsApp templates policy decides with: :class:`PolicyTemplates` in production,
    an in-memory fake in tests/support/fakes/policy.py."""

    def of(self, channel_id: str) -> dict[tuple[str, str], TemplateInfo]: ...

    async def load(self) -> None: ...

    async def record(self, update: ChannelTemplateStatusChanged) -> None: ...


class PolicyTemplates:
    """WhatsApp templates Meta approved, by channel: kept in the store and in memory for decisions."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db["policy_templates"]
        self._by_channel: dict[str, dict[tuple[str, str], TemplateInfo]] = {}

    def of(self, channel_id: str) -> dict[tuple[str, str], TemplateInfo]:
        return self._by_channel.get(channel_id, {})

    async def load(self) -> None:
        async for doc in self.collection.find({}):
            self._remember(doc["channel_id"], doc["name"], doc["language"], doc["status"])

    async def record(self, update: ChannelTemplateStatusChanged) -> None:
        await self.collection.replace_one(
            {"_id": f"{update.channel_id}:{update.template_name}:{update.language}"},
            {
                "channel_id": update.channel_id,
                "name": update.template_name,
                "language": update.language,
                "status": update.status,
            },
            upsert=True,
        )
        self._remember(update.channel_id, update.template_name, update.language, update.status)

    def _remember(self, channel_id: str, name: str | None, language: str | None, status: str) -> None:
        self._by_channel.setdefault(channel_id, {})[(name or "", language or "")] = TemplateInfo(
            status=status
        )
