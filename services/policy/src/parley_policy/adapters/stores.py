"""Policy's store: conversation facts, idempotent decisions, deliveries, rate slots, window notices.

Every "exactly once" here is a unique-key insert, which is atomic on MongoDB and FerretDB alike
(docs/storage.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from parley_events import (
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    MessageKind,
    MessageReceived,
    Provider,
)
from parley_shared.mongo import MongoIdempotencyStore
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from parley_policy.domain.decision import ConversationFacts, KnownLimit, TemplateInfo

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
    change = message.content.identity_change
    # comments and mentions open no messaging window, nor does the provider's note that the
    # customer's number or user id changed (the customer wrote nothing)
    opens = message.kind is MessageKind.DIRECT and change is None
    newer = opens and (last is None or message.provider_timestamp > last)
    recipient_id = doc.get("recipient_id") or recipient
    latest = last is None or message.provider_timestamp >= last
    if change is not None and (change.phone or change.user_id):
        # replies go to the customer's new identifier; the conversation keeps its id
        recipient_id = change.phone or change.user_id
    elif message.author.phone and latest:
        # WhatsApp: a phone number on record is the reply address (a conversation started by a
        # business-scoped user id gets it once the customer shares it; a changed number follows)
        recipient_id = message.author.phone
    return {
        "_id": message.conversation_id,
        "tenant_id": message.tenant_id,
        "channel_id": message.channel_id,
        "provider": message.provider.value,
        "account_id": message.account_id,
        "conversation_key": message.conversation_key,
        "recipient_id": recipient_id,
        "last_customer_message_at": message.provider_timestamp if newer else last,
        # the message a read receipt (and typing indicator) names: the customer's latest
        "last_customer_message_id": message.provider_message_id
        if newer
        else doc.get("last_customer_message_id"),
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
        recipient_id=doc.get("recipient_id"),
    )


class PolicyStorePort(Protocol):
    """Every store operation policy's service and delivery use (one port). The Mongo adapter is
    :class:`PolicyStore`; tests/support/fakes/policy.py keeps an in-memory one to the same contract."""

    async def ensure_indexes(self) -> None: ...

    async def record_inbound(self, message: MessageReceived) -> bool: ...

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None: ...

    def facts(self, doc: dict[str, Any]) -> ConversationFacts: ...

    async def mark_private_replied(self, conversation_id: str, comment_id: str) -> None: ...

    async def claim_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> bool: ...

    async def release_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> None: ...

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

    async def business_initiated_recipients(self, scope: str, since: datetime) -> set[str]: ...

    async def claim_reach(
        self, scope: str, recipient_id: str, at: datetime, since: datetime, limit: int
    ) -> bool: ...

    async def carry_reach(self, from_scope: str, to_scope: str, since: datetime) -> int: ...

    async def record_messaging_limit(self, scope: str, limit: int | None, at: datetime) -> None: ...

    async def messaging_limit(self, scope: str) -> KnownLimit | None: ...

    async def decision(self, key: str) -> dict[str, Any] | None: ...

    async def parley_active(self, conversation_id: str) -> bool: ...

    async def record_thread_control(
        self, conversation_id: str, parley_active: bool, at: datetime
    ) -> None: ...


REACH_ROUNDS = 4
"""Reads of a scope's places one claim makes at most while other replicas take the free ones."""
FREE_PLACES_TRIED = 16
"""Places one read offers to try, so that racing replicas spread over several instead of one."""


def _free_places(latest: dict[int, dict[str, Any]], since: datetime, limit: int) -> list[int]:
    """Places a new customer may take: released ones (held before ``since``), then unused ones."""
    released = sorted(p for p, d in latest.items() if d["at"] < since and p < limit)
    unused = (p for p in range(limit) if p not in latest)
    found = released[:FREE_PLACES_TRIED]
    for place in unused:
        if len(found) >= FREE_PLACES_TRIED:
            break
        found.append(place)
    return found


class PolicyStore:
    """The collections policy owns."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.conversations = db["policy_conversations"]
        self.decisions = MongoIdempotencyStore(db["policy_decisions"])
        self.deliveries = db["policy_deliveries"]
        self.rate_slots = db["policy_rate_slots"]
        self.notices = db["policy_window_notices"]
        self.places = db["policy_messaging_places"]
        self.limits = db["policy_messaging_limits"]
        self.thread_control = db["policy_thread_control"]
        self.private_replies = db["policy_private_replies"]

    async def ensure_indexes(self) -> None:
        await self.conversations.create_index([("last_customer_message_at", 1)], name="windows_by_time")
        await self.decisions.ensure_indexes()
        await self.rate_slots.create_index([("second", 1)], name="slots_by_second")
        await self.places.create_index([("scope", 1)], name="places_by_scope")

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

    async def claim_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> bool:
        """The comment's one private reply, for ``reply_id``, across every replica: True if it is
        this reply's (claimed now, or earlier by the same reply), False if another reply has it.
        The unique ``_id`` makes the first insert win on MongoDB and FerretDB alike."""
        key = f"{conversation_id}/{comment_id}"
        try:
            await self.private_replies.insert_one({"_id": key, "reply_id": reply_id})
        except DuplicateKeyError:
            held = await self.private_replies.find_one({"_id": key})
            return held is not None and held.get("reply_id") == reply_id
        return True

    async def release_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> None:
        """Give the comment's private reply back if ``reply_id`` holds it (its send failed)."""
        await self.private_replies.delete_one(
            {"_id": f"{conversation_id}/{comment_id}", "reply_id": reply_id}
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

    async def business_initiated_recipients(self, scope: str, since: datetime) -> set[str]:
        """Customers reached outside the window since ``since`` in a messaging limit's scope."""
        latest = await self._latest_places(scope)
        return {d["recipient_id"] for d in latest.values() if d["at"] >= since}

    async def claim_reach(
        self, scope: str, recipient_id: str, at: datetime, since: datetime, limit: int
    ) -> bool:
        """Count a customer reached outside the window at ``at``, if the scope has room; across replicas.

        A scope has ``limit`` numbered places. Each holds the last customer reached through it, one
        document per (place, generation) with the key ``<scope>:<place>:<generation>``. A customer
        already holding a place since ``since`` keeps it (its time moves on); a new one takes a
        place never used, or one whose customer was reached before ``since``, by inserting that
        place's next generation. The unique key lets one writer alone take a generation, so two
        replicas racing for the last place cannot both have it (the loser looks again and finds
        none). The same new customer raced by two replicas may take two places: that errs on the
        side of the limit.
        """
        for _ in range(REACH_ROUNDS):
            latest = await self._latest_places(scope)
            held = [d for d in latest.values() if d["at"] >= since]
            for doc in held:
                if doc["recipient_id"] == recipient_id:
                    await self.places.update_one({"_id": doc["_id"]}, {"$max": {"at": at}})
                    return True
            if len(held) >= limit:
                return False
            for place in _free_places(latest, since, limit):
                generation = latest[place]["generation"] + 1 if place in latest else 0
                try:
                    await self.places.insert_one(
                        {
                            "_id": f"{scope}:{place}:{generation}",
                            "scope": scope,
                            "place": place,
                            "generation": generation,
                            "recipient_id": recipient_id,
                            "at": at,
                        }
                    )
                except DuplicateKeyError:
                    continue  # another replica took this place first: try the next one
                if generation:  # the generation it replaced holds nobody any more
                    await self.places.delete_many(
                        {"scope": scope, "place": place, "generation": {"$lt": generation}}
                    )
                return True
        return False

    async def carry_reach(self, from_scope: str, to_scope: str, since: datetime) -> int:
        """Count the customers ``from_scope`` holds since ``since`` in ``to_scope`` too, at their
        times; one already held there keeps its place (the later time). A carried customer takes a
        place after the scope's last (generation 0, the next one when another writer took it), so
        the scope may hold more than its limit until they age out: they count, and nobody new is
        admitted meanwhile. How many customers were new to ``to_scope``."""
        source = [d for d in (await self._latest_places(from_scope)).values() if d["at"] >= since]
        if not source:
            return 0
        target = await self._latest_places(to_scope)
        held = {d["recipient_id"]: d for d in target.values() if d["at"] >= since}
        place = max(target, default=-1) + 1
        carried = 0
        for doc in source:
            mine = held.get(doc["recipient_id"])
            if mine is not None:
                await self.places.update_one({"_id": mine["_id"]}, {"$max": {"at": doc["at"]}})
                continue
            while True:
                try:
                    await self.places.insert_one(
                        {
                            "_id": f"{to_scope}:{place}:0",
                            "scope": to_scope,
                            "place": place,
                            "generation": 0,
                            "recipient_id": doc["recipient_id"],
                            "at": doc["at"],
                        }
                    )
                except DuplicateKeyError:
                    place += 1  # a claim took it meanwhile
                    continue
                break
            place += 1
            carried += 1
        return carried

    async def record_messaging_limit(self, scope: str, limit: int | None, at: datetime) -> None:
        """The provider's messaging limit for the scope, unless a later one is already recorded."""
        found = await self.limits.update_one(
            {"_id": scope, "at": {"$lt": at}}, {"$set": {"limit": limit, "at": at}}
        )
        if found.matched_count == 0:
            with contextlib.suppress(DuplicateKeyError):  # there is one, as late or later
                await self.limits.insert_one({"_id": scope, "limit": limit, "at": at})

    async def messaging_limit(self, scope: str) -> KnownLimit | None:
        doc = await self.limits.find_one({"_id": scope})
        return None if doc is None else KnownLimit(doc["limit"])

    async def _latest_places(self, scope: str) -> dict[int, dict[str, Any]]:
        """Each place of the scope at its newest generation."""
        latest: dict[int, dict[str, Any]] = {}
        async for doc in self.places.find({"scope": scope}):
            held = latest.get(doc["place"])
            if held is None or doc["generation"] > held["generation"]:
                latest[doc["place"]] = doc
        return latest

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
    """The WhatsApp templates policy decides with: :class:`PolicyTemplates` in production,
    an in-memory fake in tests/support/fakes/policy.py."""

    def of(self, channel_id: str) -> dict[tuple[str, str], TemplateInfo]: ...

    async def load(self) -> None: ...

    async def record(self, update: ChannelTemplateStatusChanged) -> None: ...

    async def record_category(self, update: ChannelTemplateCategoryChanged) -> None: ...

    async def record_quality(self, update: ChannelTemplateQualityChanged) -> None: ...


TemplateUpdate = ChannelTemplateStatusChanged | ChannelTemplateCategoryChanged | ChannelTemplateQualityChanged
"""What a channel learns about one of its templates."""


def template_after(known: TemplateInfo | None, update: TemplateUpdate) -> TemplateInfo:
    """What policy knows of a template after an update (pure): an update keeps what an earlier one
    gave and it does not give (Meta's review webhooks carry no count and no rating, a category or
    quality change carries only itself)."""
    base = known or TemplateInfo(status="")
    if isinstance(update, ChannelTemplateCategoryChanged):
        return replace(base, category=update.category)
    if isinstance(update, ChannelTemplateQualityChanged):
        return replace(base, quality=update.quality)
    return TemplateInfo(
        status=update.status,
        parameter_count=update.parameter_count
        if update.parameter_count is not None
        else base.parameter_count,
        category=update.category or base.category,
        quality=update.quality or base.quality,
    )


class PolicyTemplates:
    """WhatsApp templates by channel (status, parameter count, category): kept in the store and in
    memory for decisions."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db["policy_templates"]
        self._by_channel: dict[str, dict[tuple[str, str], TemplateInfo]] = {}

    def of(self, channel_id: str) -> dict[tuple[str, str], TemplateInfo]:
        return self._by_channel.get(channel_id, {})

    async def load(self) -> None:
        async for doc in self.collection.find({}):
            self._by_channel.setdefault(doc["channel_id"], {})[(doc["name"] or "", doc["language"] or "")] = (
                TemplateInfo(
                    status=doc["status"],
                    parameter_count=doc.get("parameter_count"),
                    category=doc.get("category"),
                    quality=doc.get("quality"),
                )
            )

    async def record(self, update: ChannelTemplateStatusChanged) -> None:
        await self._save(update)

    async def record_category(self, update: ChannelTemplateCategoryChanged) -> None:
        await self._save(update)

    async def record_quality(self, update: ChannelTemplateQualityChanged) -> None:
        await self._save(update)

    async def _save(self, update: TemplateUpdate) -> None:
        key = (update.template_name or "", update.language or "")
        doc_id = f"{update.channel_id}:{update.template_name}:{update.language}"
        stored = await self.collection.find_one({"_id": doc_id})
        known = (
            TemplateInfo(
                stored["status"], stored.get("parameter_count"), stored.get("category"), stored.get("quality")
            )
            if stored is not None
            else None
        )
        info = template_after(known, update)
        await self.collection.replace_one(
            {"_id": doc_id},
            {
                "channel_id": update.channel_id,
                "name": update.template_name,
                "language": update.language,
                "status": info.status,
                "parameter_count": info.parameter_count,
                "category": info.category,
                "quality": info.quality,
            },
            upsert=True,
        )
        self._by_channel.setdefault(update.channel_id, {})[key] = info
