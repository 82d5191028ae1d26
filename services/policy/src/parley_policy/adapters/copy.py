"""Policy's part of ``parley store copy`` (parley_shared.storecopy): the collections of
:class:`~parley_policy.adapters.stores.PolicyStore` and :class:`PolicyTemplates` into the tables of
:class:`~parley_policy.adapters.postgres.PostgresPolicyStore` and ``PostgresPolicyTemplates``.

Where the two adapters keep the same fact differently, the copy gives what the PostgreSQL adapter
would have written for the same history:

- rate slots: MongoDB keeps one document per slot taken (``<key>:<window>:<slot>``), PostgreSQL one
  counter per key and window, the number of slots taken. Windows already over limit nothing and
  are left out (``forget_slots_before`` deletes them);
- customers reached outside the WhatsApp window: MongoDB keeps numbered places per scope, one
  document per generation; PostgreSQL one row per (scope, customer) with the latest time. Each
  place counts at its newest generation, and a customer holding two places (two replicas racing)
  becomes one row with the later time; superseded generations are left out;
- a private reply's claim ``<conversation id>/<comment id>`` becomes its two key columns;
- a template without a name or language has an empty one (the PostgreSQL key has no nulls).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_shared.postgres import dumps, jsonb
from parley_shared.storecopy import CopyPlan, Documents, Row, Table
from pymongo.asynchronous.database import AsyncDatabase

from parley_policy.adapters.postgres import MIGRATIONS


async def _conversations(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_conversations"].find({}):
        yield (doc["_id"], doc.get("last_customer_message_at"), jsonb(dumps(doc)))


async def _decisions(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_decisions"].find({}):
        yield (doc["_id"], jsonb(dumps(doc.get("result", {}))), doc["recorded_at"])


async def _deliveries(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_deliveries"].find({}):
        yield (doc["_id"], doc["provider_message_id"])


def rate_slot_rows(docs: list[dict[str, Any]], now: datetime) -> list[Row | None]:
    """One item per slot document: the counter row of its window (on the window's first slot
    document), or None (a window already over, or a slot the counter already counts)."""
    current = int(now.timestamp())
    taken: dict[tuple[str, int], int] = {}
    for doc in docs:
        key, window, _slot = doc["_id"].rsplit(":", 2)
        if int(window) >= current:
            taken[(key, int(window))] = taken.get((key, int(window)), 0) + 1
    rows: list[Row | None] = []
    for doc in docs:
        key, window, _slot = doc["_id"].rsplit(":", 2)
        count = taken.pop((key, int(window)), None)
        rows.append(None if count is None else (key, int(window), count))
    return rows


async def _rate_slots(db: AsyncDatabase[dict[str, Any]], now: datetime) -> Documents:
    for row in rate_slot_rows([d async for d in db["policy_rate_slots"].find({})], now):
        yield row


async def _notices(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_window_notices"].find({}):
        yield (doc["_id"], doc["at"])


def reach_rows(places: list[dict[str, Any]]) -> list[Row | None]:
    """One item per place document: the (scope, customer, latest time) row on the document that
    holds that customer's latest time among the places' newest generations, None on the others."""
    newest: dict[tuple[str, int], dict[str, Any]] = {}
    for doc in places:
        held = newest.get((doc["scope"], doc["place"]))
        if held is None or doc["generation"] > held["generation"]:
            newest[(doc["scope"], doc["place"])] = doc
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in newest.values():
        known = latest.get((doc["scope"], doc["recipient_id"]))
        if known is None or doc["at"] > known["at"]:
            latest[(doc["scope"], doc["recipient_id"])] = doc
    chosen = {id(doc) for doc in latest.values()}
    return [(d["scope"], d["recipient_id"], d["at"]) if id(d) in chosen else None for d in places]


async def _reached(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    for row in reach_rows([d async for d in db["policy_messaging_places"].find({})]):
        yield row


async def _limits(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_messaging_limits"].find({}):
        yield (doc["_id"], doc.get("limit"), doc["at"])


async def _thread_control(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_thread_control"].find({}):
        yield (doc["_id"], bool(doc["parley_active"]), doc["at"])


def private_reply_row(doc: dict[str, Any]) -> Row:
    """``<conversation id>/<comment id>`` (a conversation id has no ``/``; a comment id may)."""
    conversation_id, comment_id = doc["_id"].split("/", 1)
    return (conversation_id, comment_id, doc["reply_id"])


async def _private_replies(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_private_replies"].find({}):
        yield private_reply_row(doc)


def template_row(doc: dict[str, Any]) -> Row:
    return (
        doc["channel_id"],
        doc.get("name") or "",
        doc.get("language") or "",
        doc["status"],
        doc.get("parameter_count"),
        doc.get("category"),
    )


async def _templates(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in db["policy_templates"].find({}):
        yield template_row(doc)


def copy_plan() -> CopyPlan:
    """Policy's tables for ``parley store copy``."""
    return CopyPlan(
        service="policy",
        migrations=MIGRATIONS,
        tables=[
            Table(
                "policy_conversations",
                "policy_conversations",
                key=("id",),
                values=("last_customer_message_at", "doc"),
                read=_conversations,
            ),
            Table(
                "policy_decisions",
                "policy_decisions",
                key=("key",),
                values=("result", "recorded_at"),
                read=_decisions,
            ),
            Table(
                "policy_deliveries",
                "policy_deliveries",
                key=("reply_id",),
                values=("provider_message_id",),
                read=_deliveries,
            ),
            Table(
                "policy_rate_slots",
                "policy_rate_slots",
                key=("channel_id", "second"),
                values=("taken",),
                read=_rate_slots,
                left_out="rate slots of windows already over, and slots the window's counter counts",
            ),
            Table(
                "policy_window_notices",
                "policy_window_notices",
                key=("notice_id",),
                values=("at",),
                read=_notices,
            ),
            Table(
                "policy_messaging_places",
                "policy_business_initiated",
                key=("scope", "recipient_id"),
                values=("at",),
                read=_reached,
                left_out="messaging places' superseded generations (one row per customer reached)",
            ),
            Table(
                "policy_messaging_limits",
                "policy_messaging_limits",
                key=("scope",),
                values=("messaging_limit", "at"),
                read=_limits,
            ),
            Table(
                "policy_thread_control",
                "policy_thread_control",
                key=("id",),
                values=("parley_active", "at"),
                read=_thread_control,
            ),
            Table(
                "policy_private_replies",
                "policy_private_replies",
                key=("conversation_id", "comment_id"),
                values=("reply_id",),
                read=_private_replies,
            ),
            Table(
                "policy_templates",
                "policy_templates",
                key=("channel_id", "name", "language"),
                values=("status", "parameter_count", "category"),
                read=_templates,
            ),
        ],
    )
