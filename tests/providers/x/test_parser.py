"""X's parser against recorded-shape Account Activity API deliveries (tests/fixtures/providers/x).

Every delivery is parsed by the ``x`` webhook endpoint the registry lists, as the normalizer
parses it; the expected values are written out by hand from the fixture.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from parley_events import Attachment, Choice, Direction, MessageKind, Provider
from parley_providers import registry
from parley_providers.inbound import MalformedPayload, ParsedMessage, ParseResult

from tests.support import fixtures

pytestmark = [pytest.mark.unit, pytest.mark.contract]

BUSINESS = "3000000000000000001"
CUSTOMER = "3000000000000000777"


def load(name: str) -> dict[str, Any]:
    return fixtures.load("x", name)


def parse_x(payload: Any) -> ParseResult:
    endpoint = registry.webhook_endpoint("x")
    assert endpoint is not None
    return endpoint.parse(payload)


def only_message(name: str) -> ParsedMessage:
    result = parse_x(load(name))
    assert result.skipped == ()
    assert (result.statuses, result.templates, result.failures) == ((), (), ())
    [message] = result.messages
    return message


# --- every message: who, where, when ------------------------------------------------------

SHOP = "ExampleShopHelp"
ANA = "ana_example"


@pytest.mark.parametrize(
    ("name", "message_id", "author", "direction", "kind", "key", "sent_at"),
    [
        (
            "dm_inbound",
            "1800000000000000101",
            (CUSTOMER, ANA),
            Direction.INBOUND,
            MessageKind.DIRECT,
            f"dm:{CUSTOMER}",
            datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=UTC),
        ),
        (
            "dm_outbound_echo",
            "1800000000000000102",
            (BUSINESS, SHOP),
            Direction.OUTBOUND,
            MessageKind.DIRECT,
            f"dm:{CUSTOMER}",
            datetime(2024, 6, 10, 6, 14, 20, 456000, tzinfo=UTC),
        ),
        (
            "dm_with_media",
            "1800000000000000103",
            (CUSTOMER, ANA),
            Direction.INBOUND,
            MessageKind.DIRECT,
            f"dm:{CUSTOMER}",
            datetime(2024, 6, 10, 6, 15, 20, 789000, tzinfo=UTC),
        ),
        (
            "tweet_mention",
            "1800000000000000201",
            (CUSTOMER, ANA),
            Direction.INBOUND,
            MessageKind.MENTION,
            f"tweets:{CUSTOMER}",
            datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC),
        ),
        (
            "tweet_extended",
            "1800000000000000202",
            (CUSTOMER, ANA),
            Direction.INBOUND,
            MessageKind.MENTION,
            f"tweets:{CUSTOMER}",
            datetime(2024, 6, 10, 6, 20, tzinfo=UTC),
        ),
        (
            "tweet_business_reply",
            "1800000000000000203",
            (BUSINESS, SHOP),
            Direction.OUTBOUND,
            MessageKind.MENTION,
            f"tweets:{CUSTOMER}",
            datetime(2024, 6, 10, 6, 30, tzinfo=UTC),
        ),
    ],
)
def test_every_message_names_its_account_author_thread_and_time(
    name: str,
    message_id: str,
    author: tuple[str, str],
    direction: Direction,
    kind: MessageKind,
    key: str,
    sent_at: datetime,
) -> None:
    message = only_message(name)

    assert message.provider is Provider.X
    assert message.account_id == BUSINESS  # for_user_id
    assert (message.author.id, message.author.name) == author
    assert message.provider_message_id == message_id
    assert (message.direction, message.kind, message.conversation_key) == (direction, kind, key)
    assert message.provider_timestamp == sent_at


def test_the_business_reply_keeps_its_text() -> None:
    assert (
        only_message("tweet_business_reply").content.text
        == "@ana_example Sorry about that! We've sent you a DM."
    )


# --- direct messages --------------------------------------------------------------------


def test_a_customers_dm_is_an_inbound_direct_message_in_their_thread() -> None:
    message = only_message("dm_inbound")

    assert message.provider is Provider.X
    assert message.account_id == BUSINESS
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.direction is Direction.INBOUND
    assert message.kind is MessageKind.DIRECT
    assert message.author.id == CUSTOMER
    assert message.author.name == "ana_example"
    assert message.content.text == "Hello! My parcel has not arrived yet."
    assert message.content.attachments == ()
    assert message.provider_message_id == "1800000000000000101"
    assert message.provider_timestamp == datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=UTC)


def test_the_business_own_dm_is_outbound_in_the_recipients_thread() -> None:
    message = only_message("dm_outbound_echo")

    assert message.direction is Direction.OUTBOUND
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.author.id == BUSINESS
    assert message.author.name == "ExampleShopHelp"
    assert message.content.text == "Sorry to hear that! Could you send your order number?"
    assert message.provider_message_id == "1800000000000000102"
    assert message.provider_timestamp == datetime(2024, 6, 10, 6, 14, 20, 456000, tzinfo=UTC)


def test_an_echo_and_the_customers_dm_share_one_conversation_key() -> None:
    inbound = only_message("dm_inbound")
    outbound = only_message("dm_outbound_echo")

    assert inbound.conversation_key == outbound.conversation_key


def test_a_dm_with_media_carries_the_media_as_an_attachment() -> None:
    message = only_message("dm_with_media")

    assert message.content.attachments == (
        Attachment(
            type="photo",
            url="https://ton.x.com/1.1/ton/data/dm/1800000000000000103/1800000000000000900/sample.jpg",
            media_id="1800000000000000900",
        ),
    )
    assert message.content.text == "Here is the damaged box https://t.co/AbCdEf1234"
    assert message.direction is Direction.INBOUND


def test_media_without_a_type_is_plain_media() -> None:
    delivery = load("dm_with_media")
    del delivery["direct_message_events"][0]["message_create"]["message_data"]["attachment"]["media"]["type"]

    [message] = parse_x(delivery).messages

    assert message.content.attachments[0].type == "media"


def test_a_tapped_quick_reply_option_is_a_quick_reply_choice() -> None:
    delivery = load("dm_inbound")
    data = delivery["direct_message_events"][0]["message_create"]["message_data"]
    data["text"] = "Track my order"
    data["quick_reply_response"] = {"type": "options", "metadata": "track-order"}

    [message] = parse_x(delivery).messages

    assert message.content.choice == Choice(kind="quick_reply", payload="track-order", title="Track my order")


def test_the_author_name_is_missing_when_users_do_not_list_the_sender() -> None:
    delivery = load("dm_inbound")
    del delivery["users"]

    [message] = parse_x(delivery).messages

    assert message.author.id == CUSTOMER
    assert message.author.name is None


def test_a_batch_of_dms_yields_one_message_per_event_in_each_customers_thread() -> None:
    result = parse_x(load("dm_batch"))

    assert result.skipped == ()
    assert [m.provider_message_id for m in result.messages] == ["1800000000000000104", "1800000000000000105"]
    assert [m.conversation_key for m in result.messages] == [f"dm:{CUSTOMER}", "dm:3000000000000000888"]
    assert [m.author.name for m in result.messages] == ["ana_example", "bruno_sample"]
    assert [m.content.text for m in result.messages] == ["Order 1042", "Do you ship to Portugal?"]
    assert [m.provider_timestamp for m in result.messages] == [
        datetime(2024, 6, 10, 6, 16, 40, tzinfo=UTC),
        datetime(2024, 6, 10, 6, 16, 41, tzinfo=UTC),
    ]


def test_dm_events_other_than_message_create_are_skipped_and_named() -> None:
    delivery = load("dm_inbound")
    delivery["direct_message_events"][0]["type"] = "welcome_message_rule"

    result = parse_x(delivery)

    assert result.messages == ()
    assert result.skipped == ("x.dm.welcome_message_rule",)


# --- tweets -----------------------------------------------------------------------------


def test_a_mention_is_an_inbound_mention_in_the_customers_public_thread() -> None:
    message = only_message("tweet_mention")

    assert message.provider is Provider.X
    assert message.account_id == BUSINESS
    assert message.kind is MessageKind.MENTION
    assert message.direction is Direction.INBOUND
    assert message.conversation_key == f"tweets:{CUSTOMER}"
    assert message.author.id == CUSTOMER
    assert message.author.name == "ana_example"
    assert message.content.text == "@ExampleShopHelp my order still shows 'processing' after a week"
    assert message.content.reply_to is None
    assert message.provider_message_id == "1800000000000000201"
    assert message.provider_timestamp == datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC)


def test_an_extended_tweet_gives_its_full_text() -> None:
    message = only_message("tweet_extended")

    assert message.content.text is not None
    assert message.content.text.startswith("@ExampleShopHelp I have been waiting for a refund")
    assert message.content.text.endswith("What is going on?")
    assert "https://t.co/" not in message.content.text
    assert message.provider_message_id == "1800000000000000202"
    assert message.conversation_key == f"tweets:{CUSTOMER}"


def test_the_business_reply_is_outbound_in_the_thread_of_the_customer_it_answers() -> None:
    reply = only_message("tweet_business_reply")
    mention = only_message("tweet_mention")

    assert reply.direction is Direction.OUTBOUND
    assert reply.kind is MessageKind.MENTION
    assert reply.author.id == BUSINESS
    assert reply.author.name == "ExampleShopHelp"
    assert reply.conversation_key == mention.conversation_key == f"tweets:{CUSTOMER}"
    assert reply.content.reply_to == mention.provider_message_id
    assert reply.provider_timestamp == datetime(2024, 6, 10, 6, 30, tzinfo=UTC)


def test_a_business_post_that_answers_nobody_is_skipped() -> None:
    delivery = load("tweet_business_reply")
    tweet = delivery["tweet_create_events"][0]
    tweet["in_reply_to_user_id_str"] = tweet["in_reply_to_status_id_str"] = None

    result = parse_x(delivery)

    assert result.messages == ()
    assert result.skipped == ("x.tweet.own_post",)


def test_a_business_reply_to_its_own_thread_is_skipped() -> None:
    delivery = load("tweet_business_reply")
    delivery["tweet_create_events"][0]["in_reply_to_user_id_str"] = BUSINESS

    assert parse_x(delivery).skipped == ("x.tweet.own_post",)


def test_a_retweet_is_skipped() -> None:
    result = parse_x(load("tweet_retweet"))

    assert result.messages == ()
    assert result.skipped == ("x.tweet.retweet",)


def test_tweet_media_become_attachments() -> None:
    delivery = load("tweet_mention")
    delivery["tweet_create_events"][0]["extended_entities"] = {
        "media": [
            {
                "id_str": "1800000000000000950",
                "media_url_https": "https://pbs.twimg.com/media/SampleMedia.jpg",
                "type": "photo",
            }
        ]
    }

    [message] = parse_x(delivery).messages

    assert message.content.attachments == (
        Attachment(
            type="photo", url="https://pbs.twimg.com/media/SampleMedia.jpg", media_id="1800000000000000950"
        ),
    )


# --- other events -----------------------------------------------------------------------


def test_a_favorite_event_is_skipped_and_named() -> None:
    result = parse_x(load("favorite_event"))

    assert (result.messages, result.statuses) == ((), ())
    assert result.skipped == ("x.favorite_events",)


def test_every_other_event_kind_is_skipped_and_named() -> None:
    payload = {
        "for_user_id": BUSINESS,
        "follow_events": [{"type": "follow"}, {"type": "unfollow"}],
        "tweet_delete_events": [{"status": {"id": "1", "user_id": CUSTOMER}}],
        "direct_message_indicate_typing_events": [{"sender_id": CUSTOMER}],
        "direct_message_mark_read_events": [{"sender_id": CUSTOMER}],
        "user_event": {"revoke": {"source": {"user_id": BUSINESS}}},
    }

    result = parse_x(payload)

    assert result.messages == ()
    assert sorted(result.skipped) == [
        "x.direct_message_indicate_typing_events",
        "x.direct_message_mark_read_events",
        "x.follow_events",
        "x.follow_events",
        "x.tweet_delete_events",
        "x.user_event",
    ]


# --- malformed deliveries ---------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, [], "for_user_id", 42], ids=["null", "list", "string", "number"])
def test_a_payload_that_is_not_an_object_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse_x(payload)


def test_a_payload_without_for_user_id_is_malformed() -> None:
    delivery = load("dm_inbound")
    del delivery["for_user_id"]

    with pytest.raises(MalformedPayload, match="for_user_id"):
        parse_x(delivery)


def _dm_without(*path: str) -> dict[str, Any]:
    delivery = load("dm_inbound")
    target: Any = delivery["direct_message_events"][0]
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return delivery


def _tweet_with(key: str, value: Any) -> dict[str, Any]:
    delivery = load("tweet_mention")
    delivery["tweet_create_events"][0][key] = value
    return delivery


@pytest.mark.parametrize(
    "delivery",
    [
        pytest.param(_dm_without("id"), id="dm-without-id"),
        pytest.param(_dm_without("created_timestamp"), id="dm-without-timestamp"),
        pytest.param(_dm_without("message_create"), id="dm-without-message-create"),
        pytest.param(_dm_without("message_create", "sender_id"), id="dm-without-sender"),
        pytest.param(_dm_without("message_create", "target"), id="dm-without-target"),
        pytest.param(_dm_without("message_create", "message_data"), id="dm-without-data"),
        pytest.param({"for_user_id": BUSINESS, "direct_message_events": {}}, id="dm-events-not-a-list"),
        pytest.param(_tweet_with("created_at", "2024-06-10T06:13:20Z"), id="tweet-iso-time"),
        pytest.param(_tweet_with("created_at", None), id="tweet-without-time"),
        pytest.param(_tweet_with("user", "ana_example"), id="tweet-user-not-an-object"),
        pytest.param(_tweet_with("id_str", None), id="tweet-without-id"),
        pytest.param({"for_user_id": BUSINESS, "tweet_create_events": "nope"}, id="tweets-not-a-list"),
    ],
)
def test_shapes_x_does_not_document_are_malformed(delivery: dict[str, Any]) -> None:
    result = parse_x(delivery)

    assert result.messages == ()
    [failure] = result.failures  # the event alone is refused, with where it is and why
    assert failure.position.startswith(("direct_message_events", "tweet_create_events")), failure
    assert failure.reason
