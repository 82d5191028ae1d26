"""Normalization of X Activity API (XAA) deliveries (fixtures in tests/fixtures/providers/x/xaa_*).

The fixtures follow docs.x.com/x-api/activity/event-payloads: one event per delivery, wrapped in
``data`` with ``event_uuid``, ``filter``, ``event_type``, ``tag``, ``payload`` and ``includes``.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from parley_events import Attachment, Direction, MessageKind, Provider
from parley_ingest.domain.normalize import MalformedPayload, ParsedMessage, parse_delivery
from parley_providers.x.inbound import parse_x

pytestmark = [pytest.mark.unit, pytest.mark.contract]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers" / "x"
BUSINESS = "3000000000000000001"
CUSTOMER = "3000000000000000777"
MENTION_ID = "1800000000000000301"
ANNOUNCEMENT_ID = "1800000000000000400"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def only_message(delivery: dict[str, Any]) -> ParsedMessage:
    result = parse_x(delivery)
    assert result.failures == ()
    assert (result.statuses, result.templates) == ((), ())
    [message] = result.messages
    return message


# --- the envelope -------------------------------------------------------------------------


def test_the_account_is_the_filters_user_id() -> None:
    delivery = load("xaa_dm_received")
    delivery["data"]["filter"]["user_id"] = "3000000000000000002"
    delivery["data"]["payload"]["direct_message_events"][0]["message_create"]["target"]["recipient_id"] = (
        "3000000000000000002"
    )

    assert only_message(delivery).account_id == "3000000000000000002"


def test_a_delivery_without_a_filter_user_is_malformed_for_a_message_event() -> None:
    delivery = load("xaa_dm_received")
    delivery["data"]["filter"] = {}

    with pytest.raises(MalformedPayload, match="user_id"):
        parse_x(delivery)


def test_a_delivery_without_an_event_type_is_malformed() -> None:
    delivery = load("xaa_mention")
    del delivery["data"]["event_type"]

    with pytest.raises(MalformedPayload, match="event_type"):
        parse_x(delivery)


@pytest.mark.parametrize("data", [None, [], "dm.received", 7], ids=["null", "list", "string", "number"])
def test_a_data_that_is_not_an_object_is_malformed(data: Any) -> None:
    with pytest.raises(MalformedPayload, match="data"):
        parse_x({"data": data})


def test_the_registry_parses_xaa_through_the_x_endpoint() -> None:
    result = parse_delivery("x", load("xaa_dm_received"))

    assert [m.provider_message_id for m in result.messages] == ["1800000000000000101"]


# --- direct messages ----------------------------------------------------------------------


def test_a_received_dm_is_an_inbound_direct_message_with_the_dms_own_id() -> None:
    delivery = load("xaa_dm_received")
    message = only_message(delivery)

    assert message.provider is Provider.X
    assert message.account_id == BUSINESS
    assert message.kind is MessageKind.DIRECT
    assert message.direction is Direction.INBOUND
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.author.id == CUSTOMER
    assert message.author.name == "ana_example"  # users[id].data.username
    assert message.content.text == "Hello! My parcel has not arrived yet."
    assert message.content.encrypted is False
    # the DM's own id, never the envelope's event uuid (negative here)
    assert message.provider_message_id == "1800000000000000101"
    assert delivery["data"]["event_uuid"] == "-6850472171600526495"
    assert message.provider_timestamp == datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=UTC)


def test_a_sent_dm_is_outbound_in_the_recipients_thread() -> None:
    message = only_message(load("xaa_dm_sent"))

    assert message.direction is Direction.OUTBOUND
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.author.id == BUSINESS
    assert message.author.name == "ExampleShopHelp"
    assert message.provider_message_id == "1800000000000000102"


def test_the_author_name_is_missing_when_the_users_map_does_not_list_the_sender() -> None:
    delivery = load("xaa_dm_received")
    del delivery["data"]["payload"]["users"][CUSTOMER]

    assert only_message(delivery).author.name is None


def test_a_bad_dm_event_fails_alone_with_its_position() -> None:
    delivery = load("xaa_dm_received")
    events = delivery["data"]["payload"]["direct_message_events"]
    broken = copy.deepcopy(events[0])
    del broken["message_create"]["sender_id"]
    events.insert(0, broken)

    result = parse_x(delivery)

    assert [m.provider_message_id for m in result.messages] == ["1800000000000000101"]
    [failure] = result.failures
    assert failure.position == "data.payload.direct_message_events[0]"
    assert "sender_id" in failure.reason


# --- the same DM from AAA and from XAA ----------------------------------------------------


@pytest.mark.parametrize(
    ("aaa", "xaa"), [("dm_inbound", "xaa_dm_received"), ("dm_outbound_echo", "xaa_dm_sent")]
)
def test_the_same_dm_from_either_api_is_the_same_parsed_item(aaa: str, xaa: str) -> None:
    from_aaa = only_message(load(aaa))
    from_xaa = only_message(load(xaa))

    assert from_xaa == from_aaa
    assert (from_xaa.provider_message_id, from_xaa.conversation_key, from_xaa.direction) == (
        from_aaa.provider_message_id,
        from_aaa.conversation_key,
        from_aaa.direction,
    )
    assert from_xaa.content.text == from_aaa.content.text


# --- posts: fields ------------------------------------------------------------------------


def test_a_mention_is_an_inbound_mention_in_the_thread_of_its_conversation() -> None:
    message = only_message(load("xaa_mention"))

    assert message.kind is MessageKind.MENTION
    assert message.direction is Direction.INBOUND
    assert message.account_id == BUSINESS
    assert message.conversation_key == f"thread:{MENTION_ID}"
    assert message.author.id == CUSTOMER
    assert message.author.name == "ana_example"  # from includes.users, by author_id
    assert message.content.text == "@ExampleShopHelp my order 1042 still shows 'processing' after a week"
    assert message.content.reply_to is None
    assert message.provider_message_id == MENTION_ID
    assert message.provider_timestamp == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_a_post_repeated_under_includes_is_one_message() -> None:
    delivery = load("xaa_mention")
    assert delivery["data"]["includes"]["tweets"][0]["id"] == MENTION_ID

    result = parse_x(delivery)

    assert [m.provider_message_id for m in result.messages] == [MENTION_ID]
    assert result.skipped == ()


def test_a_long_post_gives_the_whole_text_of_its_note() -> None:
    delivery = load("xaa_mention")
    whole = "@ExampleShopHelp " + "my order is late. " * 30
    delivery["data"]["payload"]["note_tweet"] = {"text": whole}

    assert only_message(delivery).content.text == whole


def test_the_openapi_spelling_of_post_fields_is_read_too() -> None:
    delivery = load("xaa_reply_to_reply")
    post = delivery["data"]["payload"]
    post["referenced_posts"] = post.pop("referenced_tweets")
    del post["in_reply_to_tweet_id"]
    post["note_post"] = {"text": "the whole text"}

    message = only_message(delivery)

    assert message.content.reply_to == "1800000000000000302"
    assert message.content.text == "the whole text"


def test_post_media_become_attachments_described_by_includes() -> None:
    message = only_message(load("xaa_reply_to_reply"))

    assert message.content.attachments == (
        Attachment(
            type="photo",
            url="https://pbs.twimg.com/media/sample-tracking.jpg",
            media_id="3_1800000000000000901",
        ),
    )


def test_post_media_not_described_by_includes_are_plain_media() -> None:
    delivery = load("xaa_reply_to_reply")
    del delivery["data"]["includes"]["media"]

    assert only_message(delivery).content.attachments == (
        Attachment(type="media", media_id="3_1800000000000000901"),
    )


def test_a_post_without_a_time_fails_alone() -> None:
    delivery = load("xaa_mention")
    del delivery["data"]["payload"]["created_at"]

    result = parse_x(delivery)

    assert result.messages == ()
    [failure] = result.failures
    assert failure.position == "data.payload"


def test_a_reply_without_a_conversation_id_fails_rather_than_opening_a_wrong_thread() -> None:
    delivery = load("xaa_reply")
    del delivery["data"]["payload"]["conversation_id"]

    [failure] = parse_x(delivery).failures
    assert "conversation_id" in failure.reason


def test_a_root_post_without_a_conversation_id_is_the_root_of_its_own_thread() -> None:
    delivery = load("xaa_mention")
    del delivery["data"]["payload"]["conversation_id"]

    assert only_message(delivery).conversation_key == f"thread:{MENTION_ID}"


# --- posts: threads by X's conversation_id ------------------------------------------------


def test_the_business_reply_to_a_mention_joins_the_mentions_conversation() -> None:
    mention = only_message(load("xaa_mention"))
    reply = only_message(load("xaa_business_reply"))

    assert reply.direction is Direction.OUTBOUND
    assert reply.kind is MessageKind.MENTION
    assert reply.author.id == BUSINESS
    assert reply.author.name == "ExampleShopHelp"
    assert reply.content.reply_to == MENTION_ID
    assert reply.conversation_key == mention.conversation_key == f"thread:{MENTION_ID}"


def test_a_reply_to_a_reply_stays_in_the_conversation_of_the_first_post() -> None:
    mention = only_message(load("xaa_mention"))
    answer = only_message(load("xaa_reply_to_reply"))

    assert answer.direction is Direction.INBOUND
    assert answer.content.reply_to == "1800000000000000302"  # the business's reply
    assert answer.conversation_key == mention.conversation_key


def test_a_new_post_by_the_same_customer_starts_another_conversation() -> None:
    first = only_message(load("xaa_mention"))
    delivery = load("xaa_mention")
    post = delivery["data"]["payload"]
    post["id"] = post["conversation_id"] = "1800000000000000310"
    post["text"] = "@ExampleShopHelp and another thing: my voucher does not work"
    post["created_at"] = "2026-11-22T10:00:00.000Z"

    second = only_message(delivery)

    assert second.author.id == first.author.id == CUSTOMER
    assert second.conversation_key == "thread:1800000000000000310"
    assert second.conversation_key != first.conversation_key


def test_a_reply_to_the_business_post_is_in_the_conversation_of_that_post() -> None:
    message = only_message(load("xaa_reply"))

    assert message.direction is Direction.INBOUND
    assert message.kind is MessageKind.MENTION
    assert message.content.reply_to == ANNOUNCEMENT_ID
    assert message.conversation_key == f"thread:{ANNOUNCEMENT_ID}"


def test_a_quote_starts_its_own_conversation() -> None:
    reply = only_message(load("xaa_reply"))
    quote = only_message(load("xaa_quote"))

    assert quote.direction is Direction.INBOUND
    assert quote.kind is MessageKind.MENTION
    assert quote.conversation_key == "thread:1800000000000000402"  # its own id, as X gives it
    assert quote.conversation_key != reply.conversation_key  # not the quoted post's
    assert quote.content.reply_to is None


def test_a_business_post_that_answers_nobody_is_skipped() -> None:
    result = parse_x(load("xaa_business_post"))

    assert result.messages == ()
    assert result.skipped == ("x.tweet.own_post",)


def test_a_business_reply_in_its_own_thread_is_skipped() -> None:
    delivery = load("xaa_business_reply")
    delivery["data"]["payload"]["in_reply_to_user_id"] = BUSINESS

    assert parse_x(delivery).skipped == ("x.tweet.own_post",)


def test_a_repost_is_skipped() -> None:
    delivery = load("xaa_quote")
    delivery["data"]["event_type"] = "post.create"
    delivery["data"]["payload"]["referenced_tweets"] = [{"type": "retweeted", "id": ANNOUNCEMENT_ID}]

    result = parse_x(delivery)

    assert result.messages == ()
    assert result.skipped == ("x.tweet.retweet",)


# --- XChat --------------------------------------------------------------------------------


def test_an_encrypted_chat_is_an_explicit_encrypted_item_in_the_customers_dm_thread() -> None:
    result = parse_x(load("xaa_chat_received"))

    [message] = result.messages
    assert message.content.encrypted is True
    assert message.content.text is None
    assert message.content.attachments == ()
    assert message.kind is MessageKind.DIRECT
    assert message.direction is Direction.INBOUND
    assert message.account_id == BUSINESS
    assert message.author.id == CUSTOMER
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.provider_message_id == "e4f4d3fc-8bbf-4928-92eb-e5058d6bb6f6"
    assert message.provider_timestamp == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert result.skipped == ("x.chat.ciphertext",)


def test_an_encrypted_chat_the_business_sent_is_outbound_in_the_peers_thread() -> None:
    [message] = parse_x(load("xaa_chat_sent")).messages

    assert message.direction is Direction.OUTBOUND
    assert message.author.id == BUSINESS
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.content.encrypted is True


def test_a_chat_conversation_id_joined_by_a_hyphen_names_the_same_peer() -> None:
    delivery = load("xaa_chat_sent")
    delivery["data"]["payload"]["conversation_id"] = f"{BUSINESS}-{CUSTOMER}"

    [message] = parse_x(delivery).messages

    assert message.conversation_key == f"dm:{CUSTOMER}"


def test_a_group_chat_has_a_thread_of_its_own() -> None:
    delivery = load("xaa_chat_received")
    delivery["data"]["payload"]["conversation_id"] = "g1900000000000000001"

    [message] = parse_x(delivery).messages

    assert message.conversation_key == "xchat:g1900000000000000001"


def test_a_chat_without_its_own_id_is_named_by_the_event_uuid() -> None:
    delivery = load("xaa_chat_received")
    del delivery["data"]["payload"]["id"]

    [message] = parse_x(delivery).messages

    assert message.provider_message_id == "8511582263942905822"


def test_a_chat_without_a_time_is_dated_when_parsed() -> None:
    delivery = load("xaa_chat_received")
    del delivery["data"]["payload"]["created_at_msec"]
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    [message] = parse_x(delivery, now).messages

    assert message.provider_timestamp == now


# --- skipped ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [("xaa_post_delete", "x.activity.post.delete"), ("xaa_oauth_revoke", "x.activity.oauth.revoke")],
)
def test_events_without_a_message_are_skipped_and_named(name: str, kind: str) -> None:
    result = parse_x(load(name))

    assert result.messages == ()
    assert result.failures == ()
    assert result.skipped == (kind,)


def test_an_event_type_x_does_not_document_is_skipped_as_other() -> None:
    delivery = load("xaa_post_delete")
    delivery["data"]["event_type"] = "forged.event." + "x" * 2_000

    assert parse_x(delivery).skipped == ("x.activity.other",)


def test_a_typing_indicator_on_the_dm_subscription_is_skipped() -> None:
    delivery = load("xaa_dm_received")
    delivery["data"]["event_type"] = "dm.indicate_typing"

    assert parse_x(delivery).skipped == ("x.activity.dm.indicate_typing",)
