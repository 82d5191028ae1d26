"""The AsyncAPI documents are generated from the processes' routers (scripts/gen_docs.py, FastStream's
generation): the committed ones must be what the code generates today, and they must show what
each process really consumes and publishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parley_events import EVENT_TYPES, topics

from scripts.gen_docs import ASYNCAPI, PROCESSES, asyncapi, render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_the_committed_document_is_the_generated_one(process: str) -> None:
    committed = ASYNCAPI / f"{process}.json"
    assert committed.exists(), f"no docs/asyncapi/{process}.json: run `make docs`"
    assert committed.read_text() == render(asyncapi(process)), (
        f"docs/asyncapi/{process}.json is stale: run `make docs` and commit it"
    )


def test_there_is_one_document_per_process_and_no_other() -> None:
    assert {p.stem for p in ASYNCAPI.glob("*.json")} == set(PROCESSES)


def operations(document: dict[str, Any], action: str) -> dict[str, set[str]]:
    """Topic -> the schema titles of the payloads the process sends or receives there."""
    schemas = document["components"]["schemas"]
    found: dict[str, set[str]] = {}
    for operation in document["operations"].values():
        if operation["action"] != action:
            continue
        channel = document["channels"][operation["channel"]["$ref"].split("/")[-1]]
        for ref in channel["messages"].values():
            message = document["components"]["messages"][ref["$ref"].split("/")[-1]]
            payload = message["payload"]
            if "$ref" in payload:
                payload = schemas[payload["$ref"].split("/")[-1]]
            for alternative in payload.get("oneOf") or payload.get("anyOf") or [payload]:
                items = alternative.get("items", alternative)  # a batch: an array of its events
                for item in items.get("anyOf") or [items]:  # a batch of several event types
                    name = item["$ref"].split("/")[-1] if "$ref" in item else item.get("title", "")
                    found.setdefault(channel["address"], set()).add(name)
    return found


def test_policys_document_lists_every_topic_it_reads_and_every_event_type_it_publishes() -> None:
    """It once listed one operation, while policy publishes ten event types and reads four topics."""
    document = asyncapi("policy")

    assert operations(document, "send") == {
        topics.REPLIES.name: {
            "ReplyRequested",
            "ReplyApproved",
            "ReplyRejected",
            "ReplySent",
            "ReplyFailed",
            "ThreadControlTaken",
            "ThreadControlReleased",
        },
        topics.REPLY_WINDOWS.name: {
            "ReplyWindowOpened",
            "ReplyWindowClosing",
            "ReplyWindowClosed",
            "HumanAgentWindowClosed",
        },
        topics.CHANNEL_EVENTS.name: {
            "ChannelReauthRequired",
            "ChannelSendingRestricted",
            "ChannelTokenRefreshRequested",
        },
    }
    assert operations(document, "receive") == {
        # batches of the types it handles (typed_batches): other types are passed over
        topics.MESSAGES_INBOUND.name: {"MessageReceived", "MessagingLimitChanged"},
        topics.REPLIES.name: {"ReplyApproved"},  # one entry for the delivery consumers, in batches
        topics.CHANNEL_EVENTS.name: {
            "ChannelTemplateStatusChanged",
            "ChannelTemplateCategoryChanged",
            "ChannelTemplateQualityChanged",
            "ChannelReauthRequired",
            "OtherEventType",
        },
        topics.CONVERSATIONS.name: {
            "ConversationThreadControlChanged",
            "ConversationAwayMessageDue",
            "ConversationReadRequested",
        },
        topics.CHANNELS.name: {"ChannelSnapshot"},  # read models
        topics.TEAMS.name: {"TeamSnapshot"},
    }


def test_routings_batch_subscriber_is_documented_as_a_batch_of_normalized_messages() -> None:
    received = operations(asyncapi("routing"), "receive")
    assert received[topics.MESSAGES_INBOUND.name] == {"MessageReceived"}
    assert received[topics.REPLIES.name] == {
        "ReplySent",
        "ThreadControlTaken",
        "ThreadControlReleased",
        "OtherEventType",
    }


def test_together_the_documents_send_every_event_type_and_carry_the_cloudevents_headers() -> None:
    sent: set[str] = set()
    for process in PROCESSES:
        document = json.loads((ASYNCAPI / f"{process}.json").read_text())
        sent |= set().union(*operations(document, "send").values())
        for message in document["components"]["messages"].values():
            assert {"ce_id", "ce_source", "ce_specversion", "ce_time", "ce_type"} <= set(
                message["headers"]["required"]
            )
    assert sent == {model.__name__ for model in EVENT_TYPES}


@pytest.mark.parametrize("process", sorted(set(PROCESSES) - {"ingest"}))
def test_every_subscriber_fetches_with_the_short_broker_wait(process: str) -> None:
    """A subscriber on aiokafka's 500 ms fetch wait holds a busy partition's records up to half a
    second behind a fetch for the idle ones (parley_shared.kafka.FETCH_WAIT_MS)."""
    from faststream.kafka import KafkaBroker
    from parley_shared.kafka import FETCH_WAIT_MS

    from scripts.gen_docs import wirings

    broker = KafkaBroker()
    broker.include_router(wirings()[process].router)
    waits = [s._connection_args.get("fetch_max_wait_ms") for s in broker.subscribers]  # type: ignore[attr-defined]
    assert waits
    assert set(waits) == {FETCH_WAIT_MS}, waits
