"""Routing's part of ``parley store copy`` (parley_shared.storecopy): its MongoDB collections, as
:class:`~parley_routing.adapters.stores.MongoConversationRepository` writes them, into the tables of
:class:`~parley_routing.adapters.postgres.PostgresConversationRepository`.

A conversation goes through the domain (``Conversation.from_document``) and the PostgreSQL
adapter's own encoding and columns, at its newest claimed version; its version claims themselves
stay behind (PostgreSQL's version column replaces them). Notes an older version embedded in the
document land in ``conversation_notes``, as the adapter's next save would move them. Seen provider
message ids keep their expiry (a redelivery after the switch is still recognised); those already
expired are left out, as ``prune_seen`` would delete them.

``conversation_outbox`` gets no rows: a copied conversation keeps the published mark MongoDB had
(``_rows`` without ``handed_over``), so events it had not published yet are found by the relay
through ``outbox_pending``, as for rows saved before the outbox table existed.
``routing_partition_epochs`` gets none either: every routing replica takes new epochs when it is
assigned its partitions on the new store.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable
from datetime import datetime
from typing import Any

from parley_shared.postgres import dumps, jsonb
from parley_shared.storecopy import CopyPlan, Document, Documents, Row, Table, each, each_dated, fields

from parley_routing.adapters.postgres import MIGRATIONS, _encoded, _rows
from parley_routing.domain.model import Conversation

_ESCAPED = re.compile("%(25|3A)")
_CONVERSATION = (
    "tenant_id",
    "channel_id",
    "queue",
    "owner_id",
    "last_activity_at",
    "version",
    "sequence",
    "published_sequence",
    "doc",
)
_NOTE = ("conversation_id", "tenant_id", "author_id", "text", "created_at")


def split_seen_key(key: str) -> tuple[str, str]:
    """``(conversation id, provider message id)`` of a seen message's ``_id`` (``key_of``'s inverse:
    the parts are joined by ``:`` with ``%`` and ``:`` inside them percent-encoded)."""
    conversation, provider_message = key.split(":", 1)
    return tuple(  # type: ignore[return-value]
        _ESCAPED.sub(lambda m: "%" if m.group(1) == "25" else ":", part)
        for part in (conversation, provider_message)
    )


def conversation_row(doc: dict[str, Any]) -> Row:
    """The ``conversations`` row of a MongoDB document: the columns and the document exactly as
    the PostgreSQL adapter writes them."""
    conversation = Conversation.from_document(doc)
    columns = _rows([(conversation, _encoded(conversation))])
    return tuple(column[0] for column in columns)


async def _embedded_notes(documents: AsyncIterable[Document], _now: datetime) -> Documents:
    """Notes still embedded in a conversation document (an older version wrote them there): a
    row per note, none for a document without any."""
    async for doc in documents:
        conversation = Conversation.from_document(doc)
        for note in conversation.legacy_notes:
            yield (
                note.note_id,
                conversation.id,
                conversation.tenant_id,
                note.author_id,
                note.text,
                note.created_at,
            )


def seen_row(doc: dict[str, Any], now: datetime) -> Row | None:
    """A remembered provider message id, unless its retention has passed."""
    if doc["expires_at"] < now:
        return None
    conversation_id, provider_message_id = split_seen_key(doc["_id"])
    return (conversation_id, provider_message_id, doc["expires_at"])


def _history_row(doc: dict[str, Any]) -> Row:
    return (doc["_id"], doc["conversation_id"], doc["sequence"], doc["type"], jsonb(dumps(doc["data"])))


def copy_plan() -> CopyPlan:
    """Routing's tables for ``parley store copy``."""
    return CopyPlan(
        service="routing",
        migrations=MIGRATIONS,
        tables=[
            Table("conversations", ("id",), _CONVERSATION, each(conversation_row), versioned=True),
            Table("conversation_notes", ("note_id",), _NOTE, each(fields("_id", *_NOTE))),
            # notes an older version embedded in the document
            Table(
                "conversations",
                ("note_id",),
                _NOTE,
                _embedded_notes,
                into="conversation_notes",
                newest=True,
                label="conversations.notes",
            ),
            Table(
                "conversation_seen_messages",
                ("conversation_id", "provider_message_id"),
                ("expires_at",),
                each_dated(seen_row),
                left_out="seen provider message ids past their retention (prune_seen deletes them)",
            ),
            Table(
                "conversation_history",
                ("event_id",),
                ("conversation_id", "sequence", "type", "data"),
                each(_history_row),
            ),
        ],
    )
