"""``parley store copy``'s mapping decisions: how a MongoDB document becomes its PostgreSQL row."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from parley_onboarding.adapters.copy import account_claim_row, credential_row, refresh_claim_row
from parley_policy.adapters.copy import private_reply_row, rate_slot_rows, reach_rows, template_row
from parley_routing.adapters.copy import conversation_row, seen_row, split_seen_key
from parley_routing.domain.model import Conversation, key_of
from parley_shared.storecopy import (
    Document,
    Documents,
    Row,
    Table,
    each,
    each_dated,
    fields,
    plans,
    source_identity,
    upsert_statement,
    whole,
)

from tests.unit.factories import T0, message


def test_a_seen_message_key_splits_back_into_the_ids_it_joined() -> None:
    for conversation_id, provider_message_id in [
        ("conv_1", "m_1"),
        ("conv:a%3A", "wamid.HBg:LMTU%25"),
        ("c%25", "%3A:%"),
    ]:
        key = key_of(conversation_id, provider_message_id)
        assert split_seen_key(key) == (conversation_id, provider_message_id)


def test_a_seen_message_keeps_its_expiry_unless_it_has_passed() -> None:
    doc = {"_id": key_of("conv_1", "m_1"), "conversation_id": "conv_1", "expires_at": T0}
    assert seen_row(doc, T0 - timedelta(seconds=1)) == ("conv_1", "m_1", T0)
    assert seen_row(doc, T0 + timedelta(seconds=1)) is None


def test_rate_slots_become_one_counter_per_live_window() -> None:
    now = T0
    live, over = int(T0.timestamp()) + 60, int(T0.timestamp()) - 1
    docs = [
        {"_id": f"chn:1/text/hour:{live}:0", "second": live},
        {"_id": f"chn:1/text/hour:{over}:0", "second": over},
        {"_id": f"chn:1/text/hour:{live}:4", "second": live},
        {"_id": f"chn_2/text:{live}:0", "second": live},
    ]
    assert rate_slot_rows(docs, now) == [
        ("chn:1/text/hour", live, 2),
        None,  # the window is over: it limits nothing any more
        None,  # counted on the window's first slot
        ("chn_2/text", live, 1),
    ]


def _place(
    place: int, generation: int, recipient: str, minutes: int, scope: str = "waba_1"
) -> dict[str, Any]:
    return {
        "_id": f"{scope}:{place}:{generation}",
        "scope": scope,
        "place": place,
        "generation": generation,
        "recipient_id": recipient,
        "at": T0 + timedelta(minutes=minutes),
    }


def test_customers_reached_count_at_their_places_newest_generation_once_each() -> None:
    places = [
        _place(0, 0, "+1", 0),  # superseded by generation 1
        _place(0, 1, "+2", 5),
        _place(1, 0, "+3", 1),
        _place(2, 0, "+3", 9),  # the same customer holding a second place (a race): the later time
        _place(0, 0, "+1", 2, scope="chn_9"),
    ]
    assert reach_rows(places) == [
        None,
        ("waba_1", "+2", T0 + timedelta(minutes=5)),
        None,
        ("waba_1", "+3", T0 + timedelta(minutes=9)),
        ("chn_9", "+1", T0 + timedelta(minutes=2)),
    ]


def test_a_private_reply_claim_splits_at_the_conversation_id() -> None:
    doc = {"_id": "conv_abc/123_456/7", "reply_id": "rpl_1"}
    assert private_reply_row(doc) == ("conv_abc", "123_456/7", "rpl_1")


def test_a_template_without_a_name_or_language_gets_empty_ones() -> None:
    doc = {"_id": "chn:None:None", "channel_id": "chn", "name": None, "language": None, "status": "APPROVED"}
    assert template_row(doc) == ("chn", "", "", "APPROVED", None, None)


def test_a_refresh_claim_keeps_a_channel_id_holding_colons() -> None:
    digest = "ab" * 32
    doc = {"_id": f"chn:x:{digest}:2", "channel_id": "chn:x", "at": T0}
    assert refresh_claim_row(doc) == ("chn:x", digest, 2, T0)


def test_an_account_claim_without_a_time_gets_null() -> None:
    assert account_claim_row(
        {"_id": "messenger:1", "channel_id": "c", "tenant_id": "t", "claimed_at": True}
    ) == (
        "messenger:1",
        "c",
        "t",
        None,
    )


def test_a_credential_is_copied_sealed_as_it_is() -> None:
    sealed = {"key_id": "k1", "nonce": "bm9uY2U=", "ciphertext": "c2VhbGVk"}
    row = credential_row({"_id": "chn_1", "token": sealed, "expires_at": T0, "scopes": ["a"]})
    assert row[0] == "chn_1"
    assert orjson.loads(row[1].obj) == {
        "token": sealed,
        "expires_at": {"$date": T0.isoformat()},
        "scopes": ["a"],
    }


def test_a_conversation_row_is_the_postgresql_adapters_row_and_moves_embedded_notes_out() -> None:
    conversation = Conversation.open(message(1))
    conversation.receive(message(1))
    conversation.version = 3
    doc = conversation.to_document()
    doc["notes"] = [{"note_id": "n1", "author_id": "a", "text": "old", "created_at": T0}]
    row = conversation_row(doc)
    assert row[:9] == (
        "conv_1",
        conversation.tenant_id,
        conversation.channel_id,
        conversation.queue.value,
        None,
        conversation.last_activity_at,
        3,
        conversation.sequence,
        conversation.published_sequence,
    )
    written = orjson.loads(row[9].obj)
    assert "notes" not in written  # they go to conversation_notes (the plan's embedded notes)
    assert written["_id"] == "conv_1" and written["version"] == 3


def test_the_source_identity_names_hosts_and_database_never_credentials() -> None:
    url = "mongodb://ops:s3cret@db1:27017,db2:27018/parley_eu?replicaSet=rs0&tls=true"
    assert source_identity(url) == "mongodb://db1:27017,db2:27018/parley_eu"
    # an SRV name is not looked up: it names the deployment as it is
    assert source_identity("mongodb+srv://ops:p%40ss@cluster0.example.net/?retryWrites=false") == (
        "mongodb+srv://cluster0.example.net/parley"
    )


def test_every_table_the_postgresql_migrations_create_is_filled_by_the_copy() -> None:
    """A new table without a copy would start empty after a switch: it must be mapped (or named
    here as holding nothing MongoDB has)."""
    filled = {table.table for plan in plans() for table in plan.tables}
    created = {
        name
        for plan in plans()
        for migration in plan.migrations
        for name in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", migration.sql)
    }
    # MongoDB has no outbox rows: a copied conversation keeps its own published mark, and its
    # unpublished events (sequence above that mark) reach the relay through outbox_pending; routing's
    # partition epochs are taken anew by every replica on assignment (a switch restarts routing)
    holding_nothing_from_mongodb = {"conversation_outbox", "routing_partition_epochs"}
    assert {plan.service for plan in plans()} >= {"routing", "policy", "onboarding", "reports"}
    assert created - filled == holding_nothing_from_mongodb


async def _documents(*docs: Document) -> AsyncIterator[Document]:
    for doc in docs:
        yield doc


async def _read(rows: Documents) -> list[Row | None]:
    return [row async for row in rows]


async def test_each_maps_every_document_on_its_own_and_keeps_what_it_leaves_out() -> None:
    def row(doc: Document) -> Row | None:
        return None if doc.get("gone") else (doc["_id"], doc["n"] * 2)

    read = each(row)(_documents({"_id": "a", "n": 1}, {"_id": "b", "gone": True}, {"_id": "c", "n": 3}), T0)
    # one item per document, in order: None is counted as left out by the engine
    assert await _read(read) == [("a", 2), None, ("c", 6)]


async def test_each_dated_and_whole_map_with_the_copys_time() -> None:
    def unexpired(doc: Document, now: datetime) -> Row | None:
        return (doc["_id"],) if doc["expires_at"] >= now else None

    docs = ({"_id": "old", "expires_at": T0 - timedelta(seconds=1)}, {"_id": "new", "expires_at": T0})
    assert await _read(each_dated(unexpired)(_documents(*docs), T0)) == [None, ("new",)]

    def latest_only(all_docs: list[Document], now: datetime) -> list[Row | None]:
        newest = max(all_docs, key=lambda d: d["expires_at"])
        return [(d["_id"], now) if d is newest else None for d in all_docs]

    # the whole collection at once, one item per document in the order read
    assert await _read(whole(latest_only)(_documents(*docs), T0)) == [None, ("new", T0)]


def test_fields_takes_the_named_fields_in_order_and_a_missing_one_fails() -> None:
    row = fields("_id", "at", "tenant_id")
    assert row({"tenant_id": "t", "_id": "x", "at": T0, "other": 1}) == ("x", T0, "t")
    with pytest.raises(KeyError):
        row({"_id": "x"})


def test_a_table_is_named_as_its_collection_unless_told_and_upserts_its_columns() -> None:
    same = Table("policy_deliveries", ("reply_id",), ("provider_message_id",), each(fields("_id", "pm")))
    assert (same.table, same.name, same.counted) == ("policy_deliveries", "policy_deliveries", True)
    assert same.columns == ("reply_id", "provider_message_id")

    second = Table(
        "conversations", ("note_id",), ("text",), each(fields("_id", "text")), into="notes", label="c.notes"
    )
    # a second table fed by one collection: its own name in the summary, not counted twice
    assert (second.table, second.name, second.counted) == ("notes", "c.notes", False)

    versioned = Table(
        "teams", ("id",), ("version", "doc"), each(fields("_id", "version", "doc")), versioned=True
    )
    assert "t.version <= EXCLUDED.version" in upsert_statement(versioned).as_string(None)
    assert "version <=" not in upsert_statement(same).as_string(None)
