"""The in-memory adapters of policy's ports: ``PolicyStorePort``, ``TemplatesPort`` and the
credential store.

Documents are built by the same pure function as the Mongo adapter's (``inbound_document``);
unique inserts (decisions, rate slots, notices, deliveries, private replies) keep the first
writer, as the store's unique ``_id`` does. tests/unit/test_fakes.py keeps the signatures equal to the port's.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from parley_events import (
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    MessageReceived,
)
from parley_policy.adapters.stores import TemplateUpdate, conversation_facts, inbound_document, template_after
from parley_policy.domain.decision import ConversationFacts, KnownLimit, TemplateInfo
from parley_shared.vault import Credential


class FakePolicyStore:
    def __init__(self) -> None:
        self.conversations: dict[str, dict[str, Any]] = {}
        self.decisions: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, str] = {}
        self.slots: dict[str, int] = {}  # "<channel>:<second>:<slot>" -> second
        self.notices: dict[str, datetime] = {}
        self.reached: dict[tuple[str, str], datetime] = {}
        self.limits: dict[str, tuple[int | None, datetime]] = {}
        self.thread_control: dict[str, tuple[bool, datetime]] = {}
        self.private_replies: dict[tuple[str, str], str] = {}  # (conversation, comment) -> reply
        self.indexed = False

    async def ensure_indexes(self) -> None:
        self.indexed = True

    async def record_inbound(self, message: MessageReceived) -> bool:
        doc, newer = inbound_document(
            copy.deepcopy(self.conversations.get(message.conversation_id, {})), message
        )
        self.conversations[message.conversation_id] = doc
        return newer

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        doc = self.conversations.get(conversation_id)
        return None if doc is None else copy.deepcopy(doc)

    def facts(self, doc: dict[str, Any]) -> ConversationFacts:
        return conversation_facts(doc)

    async def mark_private_replied(self, conversation_id: str, comment_id: str) -> None:
        replied = self.conversations[conversation_id]["private_replied"]
        if comment_id not in replied:
            replied.append(comment_id)

    async def claim_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> bool:
        return self.private_replies.setdefault((conversation_id, comment_id), reply_id) == reply_id

    async def release_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> None:
        if self.private_replies.get((conversation_id, comment_id)) == reply_id:
            del self.private_replies[(conversation_id, comment_id)]

    async def claim_decision(self, key: str, result: dict[str, Any]) -> dict[str, Any] | None:
        if key in self.decisions:
            return copy.deepcopy(self.decisions[key])
        self.decisions[key] = copy.deepcopy(result)
        return None

    async def mark_published(self, key: str) -> None:
        self.decisions[key]["published"] = True

    async def delivered(self, reply_id: str) -> str | None:
        return self.deliveries.get(reply_id)

    async def record_delivery(self, reply_id: str, provider_message_id: str) -> None:
        self.deliveries.setdefault(reply_id, provider_message_id)

    async def take_rate_slot(self, channel_id: str, second: int, limit: int, hint: int = 0) -> int | None:
        for offset in range(limit):
            slot = (hint + offset) % limit
            key = f"{channel_id}:{second}:{slot}"
            if key not in self.slots:
                self.slots[key] = second
                return slot
        return None

    async def forget_slots_before(self, second: int) -> None:
        self.slots = {k: s for k, s in self.slots.items() if s >= second}

    async def claim_notice(self, notice_id: str, at: datetime) -> bool:
        if notice_id in self.notices:
            return False
        self.notices[notice_id] = at
        return True

    async def windows_due(
        self, due_before: datetime, since: datetime, page: int = 500
    ) -> list[dict[str, Any]]:
        due = [
            d
            for d in self.conversations.values()
            if d.get("last_customer_message_at") is not None
            and since <= d["last_customer_message_at"] <= due_before
        ]
        return [
            copy.deepcopy(d) for d in sorted(due, key=lambda d: (d["last_customer_message_at"], d["_id"]))
        ]

    async def business_initiated_recipients(self, scope: str, since: datetime) -> set[str]:
        return {r for (c, r), at in self.reached.items() if c == scope and at >= since}

    async def claim_reach(
        self, scope: str, recipient_id: str, at: datetime, since: datetime, limit: int
    ) -> bool:
        held = await self.business_initiated_recipients(scope, since)
        if recipient_id not in held and len(held) >= limit:
            return False
        self.reached[(scope, recipient_id)] = max(at, self.reached.get((scope, recipient_id), at))
        return True

    async def carry_reach(self, from_scope: str, to_scope: str, since: datetime) -> int:
        carried = 0
        for recipient in await self.business_initiated_recipients(from_scope, since):
            at = self.reached[(from_scope, recipient)]
            known = self.reached.get((to_scope, recipient))
            carried += known is None or known < since
            self.reached[(to_scope, recipient)] = max(at, known or at)
        return carried

    async def record_messaging_limit(self, scope: str, limit: int | None, at: datetime) -> None:
        current = self.limits.get(scope)
        if current is None or current[1] < at:
            self.limits[scope] = (limit, at)

    async def messaging_limit(self, scope: str) -> KnownLimit | None:
        found = self.limits.get(scope)
        return None if found is None else KnownLimit(found[0])

    async def decision(self, key: str) -> dict[str, Any] | None:
        found = self.decisions.get(key)
        return None if found is None else copy.deepcopy(found)

    async def parley_active(self, conversation_id: str) -> bool:
        kept = self.thread_control.get(conversation_id)
        return True if kept is None else kept[0]

    async def record_thread_control(self, conversation_id: str, parley_active: bool, at: datetime) -> None:
        kept = self.thread_control.get(conversation_id)
        if kept is None or kept[1] <= at:
            self.thread_control[conversation_id] = (parley_active, at)


class FakeTemplates:
    """Approved templates by channel, in memory; ``stored`` plays what :meth:`load` reads back."""

    def __init__(self, stored: dict[str, dict[tuple[str, str], TemplateInfo]] | None = None) -> None:
        self.stored = stored or {}
        self.by_channel: dict[str, dict[tuple[str, str], TemplateInfo]] = {}

    def of(self, channel_id: str) -> dict[tuple[str, str], TemplateInfo]:
        return self.by_channel.get(channel_id, {})

    async def load(self) -> None:
        self.by_channel = copy.deepcopy(self.stored)

    async def record(self, update: ChannelTemplateStatusChanged) -> None:
        self._save(update)

    async def record_category(self, update: ChannelTemplateCategoryChanged) -> None:
        self._save(update)

    async def record_quality(self, update: ChannelTemplateQualityChanged) -> None:
        self._save(update)

    def _save(self, update: TemplateUpdate) -> None:
        key = (update.template_name or "", update.language or "")
        info = template_after(self.stored.get(update.channel_id, {}).get(key), update)
        for templates in (self.stored, self.by_channel):
            templates.setdefault(update.channel_id, {})[key] = info


class FakeCredentials:
    """Channel tokens in memory, as the credential store hands them out (decrypted)."""

    def __init__(self, *credentials: Credential) -> None:
        self.credentials = {c.channel_id: c for c in credentials}

    async def put(self, credential: Credential) -> None:
        self.credentials[credential.channel_id] = credential

    async def get(self, channel_id: str) -> Credential | None:
        return self.credentials.get(channel_id)

    async def replace_grant(self, credential: Credential, spent_refresh_token: str) -> bool:
        stored = self.credentials.get(credential.channel_id)
        if stored is None or stored.refresh_token != spent_refresh_token:
            return False
        self.credentials[credential.channel_id] = credential
        return True

    async def delete(self, channel_id: str) -> None:
        self.credentials.pop(channel_id, None)

    async def ensure_indexes(self) -> None:
        """Nothing to make in memory."""
