"""Reports' part of ``parley store copy`` (parley_shared.storecopy): the read model of
:class:`~parley_reports.adapters.stores.MongoReportStore` into the tables of
:class:`~parley_reports.adapters.postgres.PostgresReportStore`.

``parley reports rebuild`` recomputes the read model from the topics, but only from what they
still retain; the copy keeps the hours older than that. Buckets and timing states are read at their
newest claimed version and go through the domain (``Bucket.from_document`` and back), with the
columns the PostgreSQL adapter's saves write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_shared.postgres import dumps_dated, jsonb
from parley_shared.storecopy import CopyPlan, Documents, Row, Table, newest_documents
from pymongo.asynchronous.database import AsyncDatabase

from parley_reports.adapters.postgres import MIGRATIONS
from parley_reports.domain.buckets import Bucket
from parley_reports.domain.timing import ConversationTiming


def bucket_row(doc: dict[str, Any]) -> Row:
    bucket = Bucket.from_document(doc)
    return (
        bucket.id,
        bucket.tenant_id,
        bucket.channel_id,
        bucket.hour,
        bucket.version,
        jsonb(dumps_dated(bucket.to_document())),
    )


def state_row(doc: dict[str, Any]) -> Row:
    state = ConversationTiming.from_document(doc)
    return (
        state.conversation_id,
        state.tenant_id,
        state.channel_id,
        state.queue.value if state.queue is not None else None,
        state.owner_id,
        state.waiting_since,
        state.version,
        jsonb(dumps_dated(state.to_document())),
    )


async def _buckets(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in newest_documents(db["report_buckets"]):
        yield bucket_row(doc)


async def _states(db: AsyncDatabase[dict[str, Any]], _now: datetime) -> Documents:
    async for doc in newest_documents(db["report_conversations"]):
        yield state_row(doc)


def copy_plan() -> CopyPlan:
    """Reports' tables for ``parley store copy``."""
    return CopyPlan(
        service="reports",
        migrations=MIGRATIONS,
        tables=[
            Table(
                "report_buckets",
                "report_buckets",
                key=("id",),
                values=("tenant_id", "channel_id", "hour", "version", "doc"),
                read=_buckets,
                versioned=True,
            ),
            Table(
                "report_conversations",
                "report_conversations",
                key=("id",),
                values=("tenant_id", "channel_id", "queue", "owner_id", "waiting_since", "version", "doc"),
                read=_states,
                versioned=True,
            ),
        ],
    )
