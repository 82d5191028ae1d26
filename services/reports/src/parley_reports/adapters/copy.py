"""Reports' part of ``parley store copy`` (parley_shared.storecopy): the read model of
:class:`~parley_reports.adapters.stores.MongoReportStore` into the tables of
:class:`~parley_reports.adapters.postgres.PostgresReportStore`.

``parley reports rebuild`` recomputes the read model from the topics, but only from what they
still retain; the copy keeps the hours older than that. Buckets and timing states are read at their
newest claimed version and go through the domain (``Bucket.from_document`` and back), with the
columns the PostgreSQL adapter's saves write.
"""

from __future__ import annotations

from typing import Any

from parley_shared.postgres import dumps_dated, jsonb
from parley_shared.storecopy import CopyPlan, Row, Table, each

from parley_reports.adapters.postgres import MIGRATIONS, bucket_columns, state_columns
from parley_reports.domain.buckets import Bucket
from parley_reports.domain.timing import ConversationTiming


def _row(columns: dict[str, Any], version: int, document: dict[str, Any]) -> Row:
    """A row as the PostgreSQL adapter's saves write it: its columns, its version, its document."""
    return (*columns.values(), version, jsonb(dumps_dated(document)))


def bucket_row(doc: dict[str, Any]) -> Row:
    bucket = Bucket.from_document(doc)
    return _row(bucket_columns(bucket), bucket.version, bucket.to_document())


def state_row(doc: dict[str, Any]) -> Row:
    state = ConversationTiming.from_document(doc)
    return _row(state_columns(state), state.version, state.to_document())


def copy_plan() -> CopyPlan:
    """Reports' tables for ``parley store copy``."""
    return CopyPlan(
        service="reports",
        migrations=MIGRATIONS,
        tables=[
            Table(
                "report_buckets",
                ("id",),
                ("tenant_id", "channel_id", "hour", "version", "doc"),
                each(bucket_row),
                versioned=True,
            ),
            Table(
                "report_conversations",
                ("id",),
                ("tenant_id", "channel_id", "queue", "owner_id", "waiting_since", "version", "doc"),
                each(state_row),
                versioned=True,
            ),
        ],
    )
