"""Normalization of Meta (Messenger) deliveries into Parley's message schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import Attachment, ChannelSnapshot, ChannelStatus, Direction, Provider, Referral
from parley_ingest.domain.normalize import (
    ItemFailure,
    MalformedPayload,
    ParseResult,
    conversation_id,
    message_event,
    message_event_id,
    parse_delivery,
    status_event,
)
from parley_providers.meta.inbound import parse_meta

from tests.support import fixtures
from tests.unit.factories import (
    CUSTOMER_ID,
    PAGE_ID,
    channel,
    messaging_text,
    page_delivery,
    page_entry,
)

pytestmark = pytest.mark.unit


# --- messages ---------------------------------------------------------------------------


def test_a_customer_text_message_becomes_one_inbound_message() -> None:
    result = parse_meta(page_delivery(page_entry([messaging_text("m_1", "Where is my order?")])))

    assert result.skipped == ()
    [msg] = result.messages
    assert msg.provider is Provider.MESSENGER
    assert msg.account_id == PAGE_ID
    assert msg.conversation_key == f"dm:{CUSTOMER_ID}"
    assert msg.conversation_key == f"dm:{CUSTOMER_ID}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == CUSTOMER_ID
    assert msg.content.text == "Where is my order?"
    assert msg.content.attachments == ()
    assert msg.provider_message_id == "m_1"


def test_an_echo_is_outbound_in_the_customers_conversation_and_authored_by_the_page() -> None:
    echo = messaging_text("m_echo", "On its way!", sender=PAGE_ID, recipient=CUSTOMER_ID, echo=True)

    [msg] = parse_meta(page_delivery(page_entry([echo]))).messages

    assert msg.direction is Direction.OUTBOUND
    assert msg.conversation_key == f"dm:{CUSTOMER_ID}"
    assert msg.conversation_key == f"dm:{CUSTOMER_ID}"
    assert msg.author.id == PAGE_ID


def test_an_echo_and_the_customers_message_share_one_conversation_key() -> None:
    inbound = messaging_text("m_in")
    echo = messaging_text("m_out", sender=PAGE_ID, recipient=CUSTOMER_ID, echo=True)

    a, b = parse_meta(page_delivery(page_entry([inbound, echo]))).messages

    assert a.conversation_key == b.conversation_key
    assert (a.direction, b.direction) == (Direction.INBOUND, Direction.OUTBOUND)


def test_every_messaging_item_of_a_batch_becomes_its_own_message() -> None:
    delivery = page_delivery(
        page_entry(
            [messaging_text("m_1", sender="c1"), messaging_text("m_2", sender="c2")],
            page_id="page_a",
        ),
        page_entry(
            [
                messaging_text("m_3", sender="c3", recipient="page_b"),
                messaging_text("m_4", sender="c3", recipient="page_b"),
                messaging_text("m_5", sender="c4", recipient="page_b"),
            ],
            page_id="page_b",
        ),
    )

    messages = parse_meta(delivery).messages

    assert [m.provider_message_id for m in messages] == ["m_1", "m_2", "m_3", "m_4", "m_5"]
    assert [m.account_id for m in messages] == ["page_a", "page_a", "page_b", "page_b", "page_b"]
    assert [m.conversation_key for m in messages] == ["dm:c1", "dm:c2", "dm:c3", "dm:c3", "dm:c4"]


def test_attachments_keep_their_type_and_url() -> None:
    item = messaging_text("m_att")
    item["message"] = {
        "mid": "m_att",
        "attachments": [
            {"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}},
            {"type": "file", "payload": {"url": "https://cdn.example/b.pdf"}},
            {"type": "fallback", "payload": None},
        ],
    }

    [msg] = parse_meta(page_delivery(page_entry([item]))).messages

    assert msg.content.text is None
    assert msg.content.attachments == (
        Attachment(type="image", url="https://cdn.example/a.jpg"),
        Attachment(type="file", url="https://cdn.example/b.pdf"),
        Attachment(type="fallback", url=None),
    )


def test_text_and_attachment_in_one_message_are_both_kept() -> None:
    item = messaging_text("m_both", "see picture")
    item["message"]["attachments"] = [{"type": "image", "payload": {"url": "https://cdn.example/c.png"}}]

    [msg] = parse_meta(page_delivery(page_entry([item]))).messages

    assert msg.content.text == "see picture"
    assert [a.url for a in msg.content.attachments] == ["https://cdn.example/c.png"]


def test_the_millisecond_timestamp_becomes_a_utc_datetime() -> None:
    ts_ms = 1_714_564_800_123
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts_ms)

    [msg] = parse_meta(page_delivery(page_entry([messaging_text("m_t", ts_ms=ts_ms)]))).messages

    assert msg.provider_timestamp == expected
    assert msg.provider_timestamp.utcoffset() == timedelta(0)


def test_a_numeric_mid_and_sender_are_read_as_strings() -> None:
    item = messaging_text("x", sender=123)  # type: ignore[arg-type]
    item["message"]["mid"] = 987

    [msg] = parse_meta(page_delivery(page_entry([item]))).messages

    assert (msg.provider_message_id, msg.conversation_key) == ("987", "dm:123")


# --- skipped kinds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        ({"optin": {"ref": "r"}}, "messenger.optin"),
        ({"account_linking": {"status": "linked"}}, "messenger.account_linking"),
        ({"something_new": {}}, "messenger.unknown"),
    ],
)
def test_non_message_items_are_skipped_with_their_kind(item: dict[str, Any], kind: str) -> None:
    event = {"sender": {"id": CUSTOMER_ID}, "recipient": {"id": PAGE_ID}, "timestamp": 1, **item}

    result = parse_meta(page_delivery(page_entry([event])))

    assert result.messages == ()
    assert result.skipped == (kind,)


def test_a_referral_riding_on_a_message_or_a_postback_is_kept_with_it() -> None:
    ad = {"ref": "boots", "ad_id": "120210987654321098", "source": "ADS", "type": "OPEN_THREAD"}
    with_message = messaging_text("m_ad", "is this in stock?")
    with_message["message"]["referral"] = ad
    postback = {
        "sender": {"id": CUSTOMER_ID},
        "recipient": {"id": PAGE_ID},
        "timestamp": 1_714_564_800_000,
        "postback": {"title": "Get Started", "payload": "GET_STARTED", "referral": {"ref": "qr-door"}},
    }

    message, started = parse_meta(page_delivery(page_entry([with_message, postback]))).messages

    assert message.content.text == "is this in stock?"
    assert message.content.referral == Referral(
        source="ADS", type="OPEN_THREAD", ref="boots", ad_id="120210987654321098"
    )
    assert started.content.referral == Referral(ref="qr-door")


def test_a_referral_that_is_not_an_object_fails_alone() -> None:
    bad = {"sender": {"id": CUSTOMER_ID}, "recipient": {"id": PAGE_ID}, "timestamp": 1, "referral": "ADS"}

    result = parse_meta(page_delivery(page_entry([bad, messaging_text("m_ok")])))

    assert [m.provider_message_id for m in result.messages] == ["m_ok"]
    assert [f.position for f in result.failures] == ["entry[0].messaging[0]"]


def test_skipped_items_do_not_hide_the_messages_next_to_them() -> None:
    optin = {
        "sender": {"id": CUSTOMER_ID},
        "recipient": {"id": PAGE_ID},
        "timestamp": 1,
        "optin": {"ref": "r"},
    }

    result = parse_meta(page_delivery(page_entry([optin, messaging_text("m_1"), optin])))

    assert [m.provider_message_id for m in result.messages] == ["m_1"]
    assert result.skipped == ("messenger.optin", "messenger.optin")


def test_changes_of_unknown_fields_are_skipped_by_field() -> None:
    entry = {"id": PAGE_ID, "time": 1, "changes": [{"field": "ratings", "value": {"item": "rating"}}]}

    result = parse_meta(page_delivery(entry))

    assert result.messages == ()
    assert result.skipped == ("messenger.changes.ratings",)


def test_entries_of_unknown_objects_are_skipped() -> None:
    payload = {"object": "permissions", "entry": [page_entry([messaging_text("m_1")])]}

    result = parse_meta(payload)

    assert result.messages == ()
    assert result.skipped == ("meta.permissions",)


def test_an_entry_without_messaging_yields_nothing() -> None:
    result = parse_meta(page_delivery({"id": PAGE_ID, "time": 1}))
    assert (result.messages, result.skipped) == ((), ())


# --- malformed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [None, [], "page", {}, {"object": "page"}, {"object": "page", "entry": {"id": PAGE_ID}}],
)
def test_a_payload_without_an_entry_list_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedPayload, match="entry"):
        parse_meta(payload)


def refusal(result: ParseResult) -> ItemFailure:
    """The one item a delivery's parse refused (and nothing normalized beside it)."""
    assert (result.messages, result.statuses) == ((), ())
    [failure] = result.failures
    return failure


def test_an_entry_that_is_not_an_object_is_malformed() -> None:
    failure = refusal(parse_meta({"object": "page", "entry": ["104512345678901"]}))
    assert failure.position == "entry[0]"
    assert "entry" in failure.reason


def test_a_message_without_mid_is_malformed() -> None:
    item = messaging_text("m_1")
    del item["message"]["mid"]
    failure = refusal(parse_meta(page_delivery(page_entry([item]))))
    assert (failure.position, failure.reason) == ("entry[0].messaging[0]", "mid is missing")


def test_a_message_with_an_empty_mid_is_malformed() -> None:
    assert "mid" in refusal(parse_meta(page_delivery(page_entry([messaging_text("")])))).reason


@pytest.mark.parametrize("timestamp", ["yesterday", None, [1], {"ms": 1}, True])
def test_a_non_numeric_timestamp_is_malformed(timestamp: Any) -> None:
    item = messaging_text("m_1")
    item["timestamp"] = timestamp
    assert "timestamp" in refusal(parse_meta(page_delivery(page_entry([item])))).reason


def test_a_message_without_sender_is_malformed() -> None:
    item = messaging_text("m_1")
    del item["sender"]
    assert "sender" in refusal(parse_meta(page_delivery(page_entry([item])))).reason


def test_a_page_entry_without_id_is_malformed() -> None:
    entry = page_entry([messaging_text("m_1")])
    del entry["id"]
    failure = refusal(parse_meta(page_delivery(entry)))
    assert (failure.position, failure.reason) == ("entry[0]", "id is missing")


def test_a_messaging_item_that_is_not_an_object_is_malformed() -> None:
    failure = refusal(parse_meta(page_delivery(page_entry(["m_1"]))))  # type: ignore[list-item]
    assert failure.position == "entry[0].messaging[0]"
    assert "messaging" in failure.reason


def test_malformed_payload_is_a_value_error() -> None:
    assert issubclass(MalformedPayload, ValueError)


# --- ids and events ---------------------------------------------------------------------


def test_message_event_id_is_deterministic() -> None:
    assert message_event_id(Provider.MESSENGER, PAGE_ID, "m_1") == message_event_id(
        Provider.MESSENGER, PAGE_ID, "m_1"
    )


def test_message_event_id_differs_across_provider_account_and_message() -> None:
    ids = {
        message_event_id(Provider.MESSENGER, "a", "m_1"),
        message_event_id(Provider.INSTAGRAM, "a", "m_1"),
        message_event_id(Provider.MESSENGER, "b", "m_1"),
        message_event_id(Provider.MESSENGER, "a", "m_2"),
        # the parts are delimited: shifting a character between them is another message
        message_event_id(Provider.MESSENGER, "am", "_1"),
    }
    assert len(ids) == 5
    assert all(i.startswith("msg_") for i in ids)


def test_conversation_id_is_deterministic_and_distinct_per_tenant_channel_and_thread() -> None:
    base = conversation_id("ten_a", "chn_1", "dm:1")
    assert base == conversation_id("ten_a", "chn_1", "dm:1")
    others = {
        conversation_id("ten_b", "chn_1", "dm:1"),
        conversation_id("ten_a", "chn_2", "dm:1"),
        conversation_id("ten_a", "chn_1", "dm:2"),
        conversation_id("ten_a", "chn_1dm:1", ""),
    }
    assert base not in others
    assert len(others) == 4
    assert base.startswith("conv_")


def test_to_event_takes_tenant_and_channel_from_the_channel_snapshot() -> None:
    [parsed] = parse_meta(page_delivery(page_entry([messaging_text("m_1", "hi")]))).messages
    snapshot = channel(tenant_id="ten_acme", channel_id="chn_42")

    event = message_event(parsed, snapshot, "delivery_abc")

    assert (event.tenant_id, event.channel_id) == ("ten_acme", "chn_42")
    assert event.event_id == message_event_id(Provider.MESSENGER, PAGE_ID, "m_1")
    assert event.conversation_id == conversation_id("ten_acme", "chn_42", f"dm:{CUSTOMER_ID}")
    assert event.key() == event.conversation_id
    assert event.delivery_id == "delivery_abc"
    assert event.content.text == "hi"
    assert event.direction is Direction.INBOUND
    assert event.provider_timestamp == parsed.provider_timestamp


def test_the_same_thread_on_two_tenants_makes_two_conversations() -> None:
    [parsed] = parse_meta(page_delivery(page_entry([messaging_text("m_1")]))).messages

    a = message_event(parsed, channel(tenant_id="ten_a", channel_id="chn_a"), "d")
    b = message_event(parsed, channel(tenant_id="ten_b", channel_id="chn_b"), "d")

    assert a.conversation_id != b.conversation_id


def test_a_redelivered_message_gets_the_same_ids() -> None:
    payload = page_delivery(page_entry([messaging_text("m_1")]))
    [first] = parse_meta(payload).messages
    [again] = parse_meta(payload).messages

    a = message_event(first, channel(), "delivery_1")
    b = message_event(again, channel(), "delivery_2")

    assert (a.event_id, a.conversation_id) == (b.event_id, b.conversation_id)


# --- event ids of the recorded-shape deliveries (tests/fixtures/providers/meta) -------------


def snapshot(provider: Provider, account_id: str) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id=f"chn_{provider.value}_{account_id}",
        tenant_id="ten_aurora",
        provider=provider,
        account_id=account_id,
        status=ChannelStatus.ACTIVE,
        display_name="Sapataria Aurora",
        revision=3,
    )


def fixture(name: str) -> ParseResult:
    return parse_delivery("meta", fixtures.load("meta", name))


MESSAGE_FIXTURES = [name for name in fixtures.names("meta") if fixture(name).messages]
STATUS_FIXTURES = [name for name in fixtures.names("meta") if fixture(name).statuses]


def test_the_fixtures_hold_messages_and_receipts() -> None:
    """The parametrized tests below have something to check."""
    assert len(MESSAGE_FIXTURES) >= 20
    assert {"messenger_delivery", "messenger_read"} <= set(STATUS_FIXTURES)


@pytest.mark.parametrize("name", MESSAGE_FIXTURES)
def test_a_fixture_parsed_twice_gives_identical_message_events(name: str) -> None:
    first, again = fixture(name), fixture(name)

    assert first == again
    for a, b in zip(first.messages, again.messages, strict=True):
        channel = snapshot(a.provider, a.account_id)
        event_a = message_event(a, channel, "dlv_first")
        event_b = message_event(b, channel, "dlv_redelivered")
        assert event_a.event_id == event_b.event_id
        assert event_a.event_id.startswith("msg_")
        assert event_a.conversation_id == event_b.conversation_id


@pytest.mark.parametrize("name", STATUS_FIXTURES)
def test_a_receipt_parsed_twice_gives_identical_status_events(name: str) -> None:
    [a], [b] = fixture(name).statuses, fixture(name).statuses
    channel = snapshot(a.provider, a.account_id)

    event_a, event_b = status_event(a, channel, "dlv_first"), status_event(b, channel, "dlv_again")

    assert event_a.event_id == event_b.event_id
    assert event_a.event_id.startswith("sts_")
    assert event_a.status is a.status
    assert event_a.provider_message_ids == a.provider_message_ids
    assert event_a.watermark == a.watermark


def test_different_messages_get_different_event_ids() -> None:
    messages = [
        *fixture("messenger_batch").messages,
        *fixture("messenger_text").messages,
        *fixture("messenger_echo").messages,
        *fixture("messenger_reaction").messages,
        *fixture("messenger_postback").messages,
    ]

    ids = [message_event(m, snapshot(m.provider, m.account_id), "dlv").event_id for m in messages]

    assert len(set(ids)) == len(ids) == 10


def test_the_delivery_and_the_read_receipt_get_different_event_ids() -> None:
    [delivery], [read] = fixture("messenger_delivery").statuses, fixture("messenger_read").statuses
    channel = snapshot(delivery.provider, delivery.account_id)

    delivered = status_event(delivery, channel, "dlv")
    seen = status_event(read, channel, "dlv")

    assert delivered.event_id != seen.event_id
    assert delivered.conversation_id == seen.conversation_id


def test_the_echo_and_the_customers_message_are_one_conversation() -> None:
    [customer], [echo] = fixture("messenger_text").messages, fixture("messenger_echo").messages
    channel = snapshot(customer.provider, customer.account_id)

    assert (
        message_event(echo, channel, "dlv_echo").conversation_id
        == message_event(customer, channel, "dlv_text").conversation_id
    )


def test_a_deletion_notice_is_not_taken_for_a_redelivery_of_the_message_it_deletes() -> None:
    [dm], [deleted] = fixture("instagram_dm").messages, fixture("instagram_deleted").messages
    channel = snapshot(dm.provider, dm.account_id)

    original = message_event(dm, channel, "dlv_dm")
    deletion = message_event(deleted, channel, "dlv_deleted")

    assert deletion.event_id != original.event_id
