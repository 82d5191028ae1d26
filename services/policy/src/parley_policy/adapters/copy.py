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
from parley_shared.storecopy import CopyPlan, Row, Table, each, fields, whole

from parley_policy.adapters.postgres import MIGRATIONS


def _conversation_row(doc: dict[str, Any]) -> Row:
    return (doc["_id"], doc.get("last_customer_message_at"), jsonb(dumps(doc)))


def _decision_row(doc: dict[str, Any]) -> Row:
    return (doc["_id"], jsonb(dumps(doc.get("result", {}))), doc["recorded_at"])


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


def _limit_row(doc: dict[str, Any]) -> Row:
    return (doc["_id"], doc.get("limit"), doc["at"])


def _thread_control_row(doc: dict[str, Any]) -> Row:
    return (doc["_id"], bool(doc["parley_active"]), doc["at"])


def private_reply_row(doc: dict[str, Any]) -> Row:
    """``<conversation id>/<comment id>`` (a conversation id has no ``/``; a comment id may)."""
    conversation_id, comment_id = doc["_id"].split("/", 1)
    return (conversation_id, comment_id, doc["reply_id"])


def template_row(doc: dict[str, Any]) -> Row:
    return (
        doc["channel_id"],
        doc.get("name") or "",
        doc.get("language") or "",
        doc["status"],
        doc.get("parameter_count"),
        doc.get("category"),
    )


def copy_plan() -> CopyPlan:
    """Policy's tables for ``parley store copy``."""
    return CopyPlan(
        service="policy",
        migrations=MIGRATIONS,
        tables=[
            Table(
                "policy_conversations", ("id",), ("last_customer_message_at", "doc"), each(_conversation_row)
            ),
            Table("policy_decisions", ("key",), ("result", "recorded_at"), each(_decision_row)),
            Table(
                "policy_deliveries",
                ("reply_id",),
                ("provider_message_id",),
                each(fields("_id", "provider_message_id")),
            ),
            Table(
                "policy_rate_slots",
                ("channel_id", "second"),
                ("taken",),
                whole(rate_slot_rows),
                left_out="rate slots of windows already over, and slots the window's counter counts",
            ),
            Table("policy_window_notices", ("notice_id",), ("at",), each(fields("_id", "at"))),
            Table(
                "policy_messaging_places",
                ("scope", "recipient_id"),
                ("at",),
                whole(lambda places, _now: reach_rows(places)),
                into="policy_business_initiated",
                left_out="messaging places' superseded generations (one row per customer reached)",
            ),
            Table("policy_messaging_limits", ("scope",), ("messaging_limit", "at"), each(_limit_row)),
            Table("policy_thread_control", ("id",), ("parley_active", "at"), each(_thread_control_row)),
            Table(
                "policy_private_replies",
                ("conversation_id", "comment_id"),
                ("reply_id",),
                each(private_reply_row),
            ),
            Table(
                "policy_templates",
                ("channel_id", "name", "language"),
                ("status", "parameter_count", "category"),
                each(template_row),
            ),
        ],
    )
