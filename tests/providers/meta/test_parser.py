"""Meta's parser against recorded-shape webhook payloads (tests/fixtures/providers/meta).

Every delivery is parsed by the ``meta`` webhook endpoint the registry lists, as the normalizer
parses it. Every fixture follows Meta's documented webhook shape with made-up ids; the expected
values below are written out by hand from the fixture, never computed by the code under test.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from parley_events import (
    Attachment,
    Author,
    Choice,
    Content,
    DeliveryStatus,
    Direction,
    MessageKind,
    Provider,
    Reaction,
    Referral,
    StoryRef,
    ThreadControlAction,
)
from parley_providers import registry
from parley_providers.inbound import (
    ChangeAction,
    ContentToFetch,
    ParsedChange,
    ParsedHandover,
    ParsedMessage,
    ParsedStatus,
    ParseResult,
)

from tests.support import fixtures

pytestmark = [pytest.mark.unit, pytest.mark.contract]

PAGE_ID = "381920475610238"
PAGE_B_ID = "290817364509172"
CUSTOMER = "6021873345917724"
CUSTOMER_2 = "5938201746628193"
CUSTOMER_3 = "7310984456201837"

IG_ID = "17841460512398765"
IGSID = "935187264019283"
IG_COMMENTER = "17843322110099887"
IG_MEDIA = "18055566677788899"

POST_ID = "381920475610238_122109876543210987"
FIRST_COMMENT_ID = "122109876543210987_990011223344556"

ECHO_MID = "m_Echo9Fz3Kq7Lw1Nx5Pr8Tv2Yb6Dc0Gh4Jm"
IG_DM_MID = (
    "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDYwNTEyMzk4NzY1OjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI2"
    "MDAwMDAwMDAwMDAwMDAwMQZDZD"
)


def at(hour: int, minute: int, second: int, millis: int = 0) -> datetime:
    """A moment on 2024-06-10 (UTC), the day every fixture happens on."""
    return datetime(2024, 6, 10, hour, minute, second, millis * 1000, tzinfo=UTC)


def parse(name: str) -> ParseResult:
    endpoint = registry.webhook_endpoint("meta")
    assert endpoint is not None
    return endpoint.parse(fixtures.load("meta", name))


def only_message(name: str) -> ParsedMessage:
    result = parse(name)
    assert result.statuses == ()
    assert result.templates == ()
    assert result.skipped == ()
    assert result.failures == ()
    [msg] = result.messages
    return msg


def only_status(name: str) -> ParsedStatus:
    result = parse(name)
    assert result.messages == ()
    assert result.skipped == ()
    assert result.failures == ()
    [status] = result.statuses
    return status


# --- Messenger: messages -----------------------------------------------------------------


def test_messenger_text_is_one_inbound_direct_message_from_the_customer() -> None:
    msg = only_message("messenger_text")

    assert msg.provider is Provider.MESSENGER
    assert msg.account_id == PAGE_ID
    assert msg.conversation_key == f"dm:{CUSTOMER}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == CUSTOMER
    assert msg.author.name is None
    assert msg.kind is MessageKind.DIRECT
    assert msg.content.text == "Hi, my order #4471 still hasn't arrived"
    assert msg.content.attachments == ()
    assert msg.content.choice is None
    assert msg.content.reaction is None
    assert msg.content.story is None
    assert msg.content.reply_to is None
    assert msg.content.deleted is False
    assert msg.provider_message_id == "m_Tq7vXbK2rW9yLp3MhN8sDcE1uA4fGjZ0oQiRtYeVwBnCxHl5Sd6kPm"
    assert msg.provider_timestamp == at(6, 13, 20, 123)  # 1718000000123 ms


def test_a_batch_of_two_pages_yields_every_item_as_its_own_message_in_order() -> None:
    result = parse("messenger_batch")

    assert result.statuses == ()
    assert result.skipped == ()
    assert [(m.account_id, m.conversation_key, m.provider_message_id) for m in result.messages] == [
        (PAGE_ID, f"dm:{CUSTOMER}", "m_batchA1_Hx4nQ8rT2vL6yK0pW3sZ"),
        (PAGE_ID, f"dm:{CUSTOMER_2}", "m_batchA2_Jd7mR1tU5wN9xB2cV6eF"),
        (PAGE_ID, f"dm:{CUSTOMER}", "m_batchA3_Lg0pS4yW8zA3cE7hK1nM"),
        (PAGE_B_ID, f"dm:{CUSTOMER_3}", "m_batchB1_Pq5tX9aD3fH7jL1oR4uV"),
        (PAGE_B_ID, f"dm:{CUSTOMER_3}", "m_batchB2_Rs8wB2eG6iK0mO4qT7yZ"),
    ]
    assert [m.author.id for m in result.messages] == [CUSTOMER, CUSTOMER_2, CUSTOMER, CUSTOMER_3, CUSTOMER_3]
    assert [m.content.text for m in result.messages] == [
        "Hello?",
        "Do you ship to Portugal?",
        None,
        "Is the store open on Sunday?",
        "The one on Main Street",
    ]
    assert [m.provider_timestamp for m in result.messages] == [
        at(6, 15, 0, 100),
        at(6, 15, 0, 200),
        at(6, 15, 0, 300),
        at(6, 15, 0, 400),
        at(6, 15, 0, 500),
    ]
    assert all(m.provider is Provider.MESSENGER for m in result.messages)
    assert all(m.direction is Direction.INBOUND for m in result.messages)
    assert all(m.kind is MessageKind.DIRECT for m in result.messages)
    assert result.messages[2].content.attachments == (
        Attachment(type="image", url="https://scontent.example-cdn.net/v/t1.15752-9/448811223_parcel.jpg"),
    )


def test_a_messenger_echo_is_outbound_in_the_recipients_thread_authored_by_the_page() -> None:
    msg = only_message("messenger_echo")

    assert msg.provider is Provider.MESSENGER
    assert msg.account_id == PAGE_ID
    assert msg.conversation_key == f"dm:{CUSTOMER}"
    assert msg.direction is Direction.OUTBOUND
    assert msg.author.id == PAGE_ID
    assert msg.kind is MessageKind.DIRECT
    assert msg.content.text == "Sorry about that! It left our warehouse yesterday."
    assert msg.provider_message_id == ECHO_MID
    assert msg.provider_timestamp == at(6, 16, 40, 555)


def test_the_echo_and_the_customers_message_share_one_conversation() -> None:
    customer = only_message("messenger_text")
    echo = only_message("messenger_echo")

    assert echo.conversation_key == customer.conversation_key == f"dm:{CUSTOMER}"
    assert echo.account_id == customer.account_id == PAGE_ID


def test_image_and_file_attachments_keep_type_and_url_in_order() -> None:
    msg = only_message("messenger_attachments")

    assert msg.conversation_key == f"dm:{CUSTOMER}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == CUSTOMER
    assert msg.content.text is None
    assert msg.provider_message_id == "m_Att4Bv8Cx2Dz6Ey0Fw3Gu7Ht1Is5Jr9Kq"
    assert msg.provider_timestamp == at(6, 18, 20, 250)
    assert [a.type for a in msg.content.attachments] == ["image", "file", "fallback"]
    image, file, _ = msg.content.attachments
    assert image == Attachment(
        type="image", url="https://scontent.example-cdn.net/v/t1.15752-9/449900112_damaged_box.jpg"
    )
    assert file == Attachment(
        type="file", url="https://cdn.fbsbx.example.net/v/t59.2708-21/449900113_invoice_4471.pdf"
    )


def test_a_fallback_attachment_keeps_the_url_it_carries_outside_its_payload() -> None:
    fallback = only_message("messenger_attachments").content.attachments[2]

    assert fallback.type == "fallback"
    assert fallback.url == (
        "https://l.facebook.com/l.php?u=https%3A%2F%2Fwww.bing.com%2Fmaps%2Fdefault.aspx"
        "%3Fv%3D2%26cp%3D38.7223~-9.1393"
    )


def test_a_quick_reply_keeps_its_payload_and_the_tapped_title() -> None:
    msg = only_message("messenger_quick_reply")

    assert msg.conversation_key == f"dm:{CUSTOMER}"
    assert msg.direction is Direction.INBOUND
    assert msg.kind is MessageKind.DIRECT
    assert msg.content.text == "Track my order"
    assert msg.content.choice == Choice(
        kind="quick_reply", payload="TRACK_ORDER_4471", title="Track my order"
    )
    assert msg.provider_message_id == "m_Qr2Wx6Ez0Rc4Tv8Yb1Un5Im9Ol3Pk7Aj"
    assert msg.provider_timestamp == at(6, 20, 0, 500)


def test_a_reply_keeps_the_mid_it_answers() -> None:
    msg = only_message("messenger_reply_to")

    assert msg.conversation_key == f"dm:{CUSTOMER}"
    assert msg.content.text == "Which warehouse?"
    assert msg.content.reply_to == ECHO_MID
    assert msg.content.story is None
    assert msg.provider_message_id == "m_Rep5Lk9Jh3Gf7Ds1Ap4Zo8Xi2Cu6Vy0Bt"
    assert msg.provider_timestamp == at(6, 21, 40, 700)


def test_a_postback_is_a_postback_message_with_its_payload_and_title() -> None:
    msg = only_message("messenger_postback")

    assert msg.provider is Provider.MESSENGER
    assert msg.account_id == PAGE_ID
    assert msg.conversation_key == f"dm:{CUSTOMER_2}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == CUSTOMER_2
    assert msg.kind is MessageKind.POSTBACK
    assert msg.content.text == "Talk to an agent"
    assert msg.content.choice == Choice(kind="postback", payload="HANDOFF_TO_AGENT", title="Talk to an agent")
    assert msg.provider_message_id == "m_Pb3Nm7Lk1Jh5Gf9Ds3Aq7Zw1Xe5Cr9Vt"
    assert msg.provider_timestamp == at(6, 23, 20, 42)


def test_react_and_unreact_are_two_reaction_messages_on_the_same_target() -> None:
    result = parse("messenger_reaction")

    assert result.skipped == ()
    react, unreact = result.messages
    for msg in (react, unreact):
        assert msg.provider is Provider.MESSENGER
        assert msg.account_id == PAGE_ID
        assert msg.conversation_key == f"dm:{CUSTOMER}"
        assert msg.direction is Direction.INBOUND
        assert msg.author.id == CUSTOMER
        assert msg.kind is MessageKind.REACTION
        assert msg.content.text is None
    heart = "\u2764\ufe0f"
    assert react.content.reaction == Reaction(emoji=heart, action="react", target_message_id=ECHO_MID)
    assert unreact.content.reaction == Reaction(emoji=None, action="unreact", target_message_id=ECHO_MID)
    assert react.provider_timestamp == at(6, 25, 0, 100)
    assert unreact.provider_timestamp == at(6, 26, 0, 200)
    assert react.provider_message_id == f"reaction:{ECHO_MID}:{CUSTOMER}:react:1718000700100"
    assert unreact.provider_message_id == f"reaction:{ECHO_MID}:{CUSTOMER}:unreact:1718000760200"


def test_standby_items_are_read_like_messaging_items() -> None:
    result = parse("messenger_standby")

    assert result.skipped == ()
    customer, echo = result.messages
    assert customer.account_id == echo.account_id == PAGE_ID
    assert customer.conversation_key == echo.conversation_key == f"dm:{CUSTOMER_2}"
    assert customer.direction is Direction.INBOUND
    assert customer.author.id == CUSTOMER_2
    assert customer.content.text == "Still waiting for the bot..."
    assert customer.provider_message_id == "m_Sb1Aa5Bb9Cc3Dd7Ee1Ff5Gg9Hh3Ii7Jj"
    assert customer.provider_timestamp == at(6, 30, 0, 300)
    assert echo.direction is Direction.OUTBOUND
    assert echo.author.id == PAGE_ID
    assert echo.content.text == "Please pick an option below."
    assert echo.provider_message_id == "m_Sb2Kk1Ll5Mm9Nn3Oo7Pp1Qq5Rr9Ss3Tt"
    assert echo.provider_timestamp == at(6, 30, 0, 400)
    # another app answers the thread: both are history, marked as received in standby
    assert customer.standby is True
    assert echo.standby is True


def test_a_messaging_item_says_it_reached_the_active_responder() -> None:
    assert only_message("messenger_text").standby is False
    assert only_message("instagram_dm").standby is False


def test_an_instagram_standby_message_is_recorded_and_marked() -> None:
    msg = only_message("instagram_standby")

    assert msg.provider is Provider.INSTAGRAM
    assert msg.account_id == IG_ID
    assert msg.conversation_key == f"dm:{IGSID}"
    assert msg.direction is Direction.INBOUND
    assert msg.content.text == "Is anyone there?"
    assert msg.provider_timestamp == at(6, 38, 0, 300)
    assert msg.standby is True


# --- Conversation Routing: messaging_handovers ------------------------------------------------


def only_handover(name: str) -> ParsedHandover:
    result = parse(name)
    assert result.messages == ()
    assert result.statuses == ()
    assert result.skipped == ()
    assert result.failures == ()
    [handover] = result.handovers
    return handover


def test_a_thread_passed_to_parley_makes_it_the_active_responder() -> None:
    handover = only_handover("messenger_pass_thread_control")

    assert handover == ParsedHandover(
        provider=Provider.MESSENGER,
        account_id=PAGE_ID,
        conversation_key=f"dm:{CUSTOMER_2}",
        action=ThreadControlAction.PASS,
        parley_active=True,
        provider_timestamp=at(6, 35, 0, 500),
        new_owner_app_id="540118273645091",
        previous_owner_app_id="263902037430900",
        metadata="bot could not answer: billing question",
    )


def test_a_thread_taken_from_parley_makes_another_app_the_active_responder() -> None:
    handover = only_handover("messenger_take_thread_control")

    assert handover == ParsedHandover(
        provider=Provider.MESSENGER,
        account_id=PAGE_ID,
        conversation_key=f"dm:{CUSTOMER_2}",
        action=ThreadControlAction.TAKE,
        parley_active=False,
        provider_timestamp=at(6, 36, 0, 200),
        new_owner_app_id="263902037430900",
        previous_owner_app_id="540118273645091",
        metadata="Page Inbox took the thread",
    )


def test_a_request_for_the_thread_changes_nothing_yet() -> None:
    handover = only_handover("messenger_request_thread_control")

    assert handover.action is ThreadControlAction.REQUEST
    assert handover.parley_active is None
    assert handover.requested_owner_app_id == "263902037430900"
    assert handover.new_owner_app_id is None
    assert handover.metadata == "the customer asked the bot for a refund"
    assert handover.provider_timestamp == at(6, 37, 0, 100)


def test_an_instagram_thread_passed_from_idle_has_no_previous_owner() -> None:
    handover = only_handover("instagram_pass_thread_control")

    assert handover.provider is Provider.INSTAGRAM
    assert handover.account_id == IG_ID
    assert handover.conversation_key == f"dm:{IGSID}"
    assert handover.action is ThreadControlAction.PASS
    assert handover.parley_active is True
    assert handover.previous_owner_app_id is None
    assert handover.metadata is None
    assert handover.provider_timestamp == at(6, 39, 0, 400)


# Parley's own Meta app in these fixtures; Meta also tells every app subscribed to the handovers
# of a take (the thread-control guide), so a notification can be about Parley's own take
PARLEY_APP = "540118273645091"
PAGE_INBOX_APP = "263902037430900"


def test_parleys_own_take_reads_as_parley_answering_once_its_app_id_is_known() -> None:
    handover = only_handover("messenger_take_thread_control_by_parley")
    # read by whom it reached (the app a take is taken from), as without Parley's app ids
    assert (handover.action, handover.parley_active) == (ThreadControlAction.TAKE, False)
    assert (handover.new_owner_app_id, handover.previous_owner_app_id) == (PARLEY_APP, PAGE_INBOX_APP)
    assert handover.provider_timestamp == at(6, 37, 0, 300)
    seen = handover.seen_by(frozenset({PARLEY_APP}))
    assert seen.parley_active is True
    assert seen == replace(handover, parley_active=True)  # nothing else changes
    # another app's id list (Parley's Instagram app only) does not make it Parley's
    assert handover.seen_by(frozenset({"17841400000000009"})).parley_active is False


def test_a_take_from_parley_and_a_pass_to_parley_read_the_same_with_its_app_id() -> None:
    own = frozenset({PARLEY_APP})
    taken = only_handover("messenger_take_thread_control")
    passed = only_handover("messenger_pass_thread_control")
    assert taken.seen_by(own) == taken and taken.parley_active is False
    assert passed.seen_by(own) == passed and passed.parley_active is True
    idle = only_handover("instagram_pass_thread_control")
    assert idle.seen_by(own) == idle and idle.parley_active is True  # from idle to Parley


def test_a_pass_between_two_other_apps_leaves_parley_standing_by() -> None:
    handover = only_handover("messenger_pass_thread_control_to_another_app")
    assert handover.parley_active is True  # a pass reaches its new owner: as parsed alone
    assert handover.new_owner_app_id == "712233445566778"
    assert handover.provider_timestamp == at(6, 38, 0, 700)
    assert handover.seen_by(frozenset({PARLEY_APP})).parley_active is False


def test_a_release_by_parley_and_a_request_are_read_by_their_app_ids_or_kept() -> None:
    own = frozenset({PARLEY_APP})
    taken = only_handover("messenger_take_thread_control_by_parley")
    # Parley's app gave the thread up and names no new owner: idle, Parley does not answer it
    released = replace(taken, new_owner_app_id=None, previous_owner_app_id=PARLEY_APP)
    assert released.seen_by(own).parley_active is False
    # a notification naming none of Parley's apps, or Parley's ids unknown: as parsed
    strangers = replace(taken, new_owner_app_id=None)
    assert strangers.seen_by(own) == strangers
    assert taken.seen_by(frozenset()) == taken
    request = only_handover("messenger_request_thread_control")
    assert request.seen_by(own) == request and request.parley_active is None


# --- Messenger: receipts -------------------------------------------------------------------


def test_a_delivery_receipt_names_its_mids_and_watermark() -> None:
    status = only_status("messenger_delivery")

    assert status.provider is Provider.MESSENGER
    assert status.account_id == PAGE_ID
    assert status.conversation_key == f"dm:{CUSTOMER}"
    assert status.status is DeliveryStatus.DELIVERED
    assert status.provider_message_ids == (ECHO_MID, "m_Out2Hy6Ju0Ki4Lo8Mp2Nq6Or0Ps4Qt8Ru")
    assert status.watermark == at(6, 26, 40, 111)  # 1718000800111 ms
    assert status.provider_timestamp == at(6, 26, 40, 321)
    assert status.errors == ()


def test_a_read_receipt_is_watermark_only() -> None:
    status = only_status("messenger_read")

    assert status.provider is Provider.MESSENGER
    assert status.account_id == PAGE_ID
    assert status.conversation_key == f"dm:{CUSTOMER}"
    assert status.status is DeliveryStatus.READ
    assert status.provider_message_ids == ()
    assert status.watermark == at(6, 28, 20, 600)
    assert status.provider_timestamp == at(6, 28, 20, 654)


# --- Facebook Page feed ---------------------------------------------------------------------


def test_a_page_comment_is_an_inbound_comment_in_the_posts_thread() -> None:
    msg = only_message("page_feed_comment")

    assert msg.provider is Provider.MESSENGER
    assert msg.account_id == PAGE_ID
    assert msg.conversation_key == f"post:{POST_ID}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == "8812345067712390"
    assert msg.author.name == "Marta Silva"
    assert msg.kind is MessageKind.COMMENT
    assert msg.content.text == "Are these back in stock in size 38?"
    assert msg.content.reply_to is None  # parent_id is the post itself: a top-level comment
    assert msg.content.attachments == ()
    assert msg.provider_message_id == FIRST_COMMENT_ID
    assert msg.provider_timestamp == at(6, 46, 40)  # created_time 1718002000 s


def test_a_reply_to_a_comment_names_the_parent_comment() -> None:
    msg = only_message("page_feed_reply")

    assert msg.conversation_key == f"post:{POST_ID}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == "4409876123345678"
    assert msg.author.name == "Joao Pereira"
    assert msg.kind is MessageKind.COMMENT
    assert msg.content.text == "Same question, also 39 please"
    assert msg.content.reply_to == FIRST_COMMENT_ID
    assert msg.provider_message_id == "122109876543210987_990011223344777"
    assert msg.provider_timestamp == at(6, 48, 20)


def test_a_comment_by_the_page_itself_is_outbound() -> None:
    msg = only_message("page_feed_comment_by_page")

    assert msg.account_id == PAGE_ID
    assert msg.conversation_key == f"post:{POST_ID}"
    assert msg.direction is Direction.OUTBOUND
    assert msg.author.id == PAGE_ID
    assert msg.author.name == "Sapataria Aurora"
    assert msg.kind is MessageKind.COMMENT
    assert msg.content.text == "Yes! Restocked this morning in 36-41."
    assert msg.content.reply_to == FIRST_COMMENT_ID
    assert msg.provider_message_id == "122109876543210987_990011223344888"
    assert msg.provider_timestamp == at(6, 50, 0)


def test_an_edited_comment_is_an_edit_of_that_comment_with_its_new_text() -> None:
    result = parse("page_feed_edited")

    assert (result.messages, result.skipped, result.failures) == ((), (), ())
    assert result.changes == (
        ParsedChange(
            provider=Provider.MESSENGER,
            account_id=PAGE_ID,
            conversation_key=f"post:{POST_ID}",
            provider_message_id=FIRST_COMMENT_ID,
            action=ChangeAction.EDITED,
            provider_timestamp=at(6, 51, 45),  # the entry's time: created_time is the comment's
            text="Are these back in stock in size 37?",
            author=Author(id="8812345067712390", name="Marta Silva"),
            kind=MessageKind.COMMENT,
        ),
    )


def test_a_removed_comment_is_a_deletion_of_that_comment() -> None:
    [change] = parse("page_feed_removed").changes

    assert change.action is ChangeAction.DELETED
    assert (change.account_id, change.conversation_key) == (PAGE_ID, f"post:{POST_ID}")
    assert change.provider_message_id == FIRST_COMMENT_ID
    assert change.provider_timestamp == at(6, 56, 45)
    assert change.text is None
    assert change.author == Author(id="8812345067712390", name="Marta Silva")


def test_an_edited_or_removed_post_is_a_change_of_the_post_its_thread_is_named_after() -> None:
    [edited] = parse("page_feed_post_edited").changes
    [removed] = parse("page_feed_post_removed").changes

    assert (edited.action, edited.provider_message_id) == (ChangeAction.EDITED, POST_ID)
    assert edited.conversation_key == f"post:{POST_ID}"
    assert edited.text == "New season boots, sizes 35-42. Restocked 36-41!"
    assert edited.provider_timestamp == at(6, 58, 25)
    assert (removed.action, removed.provider_message_id, removed.text) == (
        ChangeAction.DELETED,
        POST_ID,
        None,
    )
    assert removed.conversation_key == f"post:{POST_ID}"
    assert removed.provider_timestamp == at(7, 0, 5)


def test_hidden_comments_stay_skipped_by_name() -> None:
    payload = fixtures.load("meta", "page_feed_removed")
    payload["entry"][0]["changes"][0]["value"]["verb"] = "hide"

    result = registry.webhook_endpoint("meta").parse(payload)  # type: ignore[union-attr]

    assert result == ParseResult(skipped=("messenger.feed.comment.hide",))


def test_page_posts_and_statuses_are_skipped_by_item() -> None:
    assert parse("page_feed_post") == ParseResult(skipped=("messenger.feed.status", "messenger.feed.post"))


# --- Instagram messaging -------------------------------------------------------------------


def test_an_instagram_dm_is_an_inbound_direct_message() -> None:
    msg = only_message("instagram_dm")

    assert msg.provider is Provider.INSTAGRAM
    assert msg.account_id == IG_ID
    assert msg.conversation_key == f"dm:{IGSID}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == IGSID
    assert msg.kind is MessageKind.DIRECT
    assert msg.content.text == "hi! is the blue jacket still available?"
    assert msg.content.deleted is False
    assert msg.provider_message_id == IG_DM_MID
    assert msg.provider_timestamp == at(7, 3, 20, 250)


def test_an_instagram_echo_is_outbound_in_the_customers_thread() -> None:
    msg = only_message("instagram_echo")
    customer = only_message("instagram_dm")

    assert msg.provider is Provider.INSTAGRAM
    assert msg.account_id == IG_ID
    assert msg.conversation_key == f"dm:{IGSID}" == customer.conversation_key
    assert msg.direction is Direction.OUTBOUND
    assert msg.author.id == IG_ID
    assert msg.kind is MessageKind.DIRECT
    assert msg.content.text == "It is! Sizes S and M left."
    assert msg.provider_message_id.endswith("MDAwMDAwMDAwMDAwMDAwMgZDZD")
    assert msg.provider_timestamp == at(7, 4, 20, 750)


def test_a_story_mention_keeps_the_story_url() -> None:
    msg = only_message("instagram_story_mention")
    url = "https://lookaside.example-cdn.com/ig_messaging_cdn/?asset_id=18033331234567890&signature=AbCdEf"

    assert msg.provider is Provider.INSTAGRAM
    assert msg.conversation_key == f"dm:{IGSID}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == IGSID
    assert msg.kind is MessageKind.DIRECT
    assert msg.content.text is None
    # the payload has only the CDN URL; its asset_id is the story's media id
    assert msg.content.story == StoryRef(kind="mention", story_id="18033331234567890", url=url)
    assert msg.content.attachments == (
        Attachment(type="story_mention", url=url, media_id="18033331234567890"),
    )
    assert msg.provider_message_id.endswith("MDAwMDAwMDAwMDAwMDAwMwZDZD")
    assert msg.provider_timestamp == at(7, 5, 0, 125)


def test_a_story_reply_keeps_the_story_id_and_url() -> None:
    msg = only_message("instagram_story_reply")

    assert msg.conversation_key == f"dm:{IGSID}"
    assert msg.direction is Direction.INBOUND
    assert msg.content.text == "love these colours \U0001f60d"
    assert msg.content.story == StoryRef(
        kind="reply",
        story_id="18044445678901234",
        url="https://lookaside.example-cdn.com/ig_messaging_cdn/?asset_id=18044445678901234&signature=GhIjKl",
    )
    assert msg.content.reply_to is None
    assert msg.content.attachments == ()
    assert msg.provider_message_id.endswith("MDAwMDAwMDAwMDAwMDAwNAZDZD")
    assert msg.provider_timestamp == at(7, 6, 40, 375)


def test_a_deleted_instagram_message_is_marked_deleted_under_its_own_mid() -> None:
    msg = only_message("instagram_deleted")

    assert msg.provider is Provider.INSTAGRAM
    assert msg.account_id == IG_ID
    assert msg.conversation_key == f"dm:{IGSID}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == IGSID
    assert msg.content.deleted is True
    assert msg.content.text is None
    assert msg.provider_message_id == IG_DM_MID
    assert msg.provider_timestamp == at(7, 8, 20, 500)


# --- Instagram comments and mentions --------------------------------------------------------


def test_an_instagram_comment_is_an_inbound_comment_in_the_medias_thread() -> None:
    msg = only_message("instagram_comment")

    assert msg.provider is Provider.INSTAGRAM
    assert msg.account_id == IG_ID
    assert msg.conversation_key == f"media:{IG_MEDIA}"
    assert msg.direction is Direction.INBOUND
    assert msg.author.id == IG_COMMENTER
    assert msg.author.name == "marta.runs"
    assert msg.kind is MessageKind.COMMENT
    assert msg.content.text == "What's the price of the red ones?"
    assert msg.content.reply_to is None
    assert msg.provider_message_id == "17999888777666555"
    assert msg.provider_timestamp == at(7, 10, 0)  # entry time 1718003400 s


def test_instagram_comment_replies_name_their_parent_and_the_accounts_own_is_outbound() -> None:
    result = parse("instagram_comment_reply")

    assert result.skipped == ()
    by_account, by_customer = result.messages
    for msg in (by_account, by_customer):
        assert msg.provider is Provider.INSTAGRAM
        assert msg.account_id == IG_ID
        assert msg.conversation_key == f"media:{IG_MEDIA}"
        assert msg.kind is MessageKind.COMMENT
        assert msg.content.reply_to == "17999888777666555"
        assert msg.provider_timestamp == at(7, 11, 40)
    assert by_account.direction is Direction.OUTBOUND
    assert by_account.author.id == IG_ID
    assert by_account.author.name == "aurora.shoes"
    assert by_account.content.text == "@marta.runs 59,90 EUR, in store and online!"
    assert by_account.provider_message_id == "17999888777666600"
    assert by_customer.direction is Direction.INBOUND
    assert by_customer.author.id == IG_COMMENTER
    assert by_customer.author.name == "marta.runs"
    assert by_customer.content.text == "thanks!!"
    assert by_customer.provider_message_id == "17999888777666700"


def test_an_instagram_mention_is_a_mention_in_the_medias_thread() -> None:
    msg = only_message("instagram_mention")

    assert msg.provider is Provider.INSTAGRAM
    assert msg.account_id == IG_ID
    assert msg.conversation_key == "media:18066677788899900"
    assert msg.direction is Direction.INBOUND
    assert msg.kind is MessageKind.MENTION
    assert msg.content.text is None
    assert msg.provider_message_id == "mention:17988877766655544"
    assert msg.provider_timestamp == at(7, 13, 20)
    # ids only: the normalizer asks Graph for the comment (mentioned_comment) and its author
    assert msg.fetch == ContentToFetch("mentioned_comment", "17988877766655544", "18066677788899900")


def test_a_caption_mention_asks_for_the_medias_caption() -> None:
    msg = only_message("instagram_mention_caption")

    assert (msg.account_id, msg.kind) == (IG_ID, MessageKind.MENTION)
    assert msg.conversation_key == "media:18066677788899911"
    assert msg.provider_message_id == "mention:18066677788899911"
    assert msg.provider_timestamp == at(7, 15, 0)
    assert msg.fetch == ContentToFetch("mentioned_media", "18066677788899911", "18066677788899911")


# --- skipped -------------------------------------------------------------------------------


def test_an_unknown_object_is_skipped_by_name() -> None:
    assert parse("unknown_object") == ParseResult(skipped=("meta.user",))


def test_an_unknown_change_field_is_skipped_by_name() -> None:
    assert parse("unknown_field") == ParseResult(skipped=("messenger.changes.ratings",))


# --- 2026 payloads: stickers, shared posts and reels, referrals, reactions, seen, unsupported ----

STICKER_URL = "https://scontent.example-cdn.net/v/t39.1997-6/851557_369239263222822_thumbs_up.png"


def test_a_sticker_is_one_sticker_attachment_during_the_transition_and_after() -> None:
    result = parse("messenger_sticker")

    assert result.skipped == ()
    transition, new_only = result.messages
    assert transition.content.attachments == (
        Attachment(type="sticker", url=STICKER_URL, sticker_id="369239263222822"),
    )
    assert new_only.content.attachments == (
        Attachment(
            type="sticker",
            url="https://scontent.example-cdn.net/v/t39.1997-6/767226160478561_happy_cat.webp",
            sticker_id="767226160478561",
        ),
    )
    for msg in (transition, new_only):
        assert (msg.provider, msg.direction, msg.kind) == (
            Provider.MESSENGER,
            Direction.INBOUND,
            MessageKind.DIRECT,
        )
        assert msg.conversation_key == f"dm:{CUSTOMER}"
        assert msg.content.text is None
    assert transition.provider_message_id == "m_Stk1Transition8Qw2Er4Ty6Ui8Op0As2Df"
    assert transition.provider_timestamp == at(7, 20, 0, 100)
    assert new_only.provider_timestamp == at(7, 21, 0, 200)


def test_the_old_sticker_form_an_image_with_a_sticker_id_is_still_a_sticker() -> None:
    msg = only_message("messenger_sticker_legacy")

    assert msg.content.attachments == (
        Attachment(type="sticker", url=STICKER_URL, sticker_id="369239263222822"),
    )
    assert msg.provider_message_id == "m_Stk3Legacy4Rt6Yu8Io0Pa2Sd4Fg6Hj8Kl0Z"


def test_a_link_referral_and_an_ad_referral_are_the_customers_turn_with_what_brought_them() -> None:
    result = parse("messenger_referral")

    assert result.skipped == ()
    link, ad = result.messages
    for msg in (link, ad):
        assert (msg.provider, msg.account_id) == (Provider.MESSENGER, PAGE_ID)
        assert msg.conversation_key == f"dm:{CUSTOMER}"
        assert msg.direction is Direction.INBOUND
        assert msg.author.id == CUSTOMER
        assert msg.kind is MessageKind.DIRECT  # it restarts the 24-hour window, as a message does
        assert (msg.content.text, msg.content.attachments) == (None, ())
    assert link.content == Content(
        referral=Referral(source="SHORTLINK", type="OPEN_THREAD", ref="summer-sale-newsletter")
    )
    assert ad.content.referral == Referral(
        source="ADS",
        type="OPEN_THREAD",
        ref="boots-campaign",
        ad_id="120210987654321098",
        ad_title="Winter boots, 20% off",
    )
    assert link.provider_message_id == f"referral:{CUSTOMER}:1718004180400"
    assert ad.provider_message_id == f"referral:{CUSTOMER}:1718004240500"
    assert ad.provider_timestamp == at(7, 24, 0, 500)


def test_an_instagram_link_referral_is_read_the_same_way() -> None:
    msg = only_message("instagram_referral")

    assert (msg.provider, msg.conversation_key) == (Provider.INSTAGRAM, f"dm:{IGSID}")
    assert msg.content.referral == Referral(source="SHORTLINK", type="OPEN_THREAD", ref="bio-link")
    assert msg.provider_message_id == f"referral:{IGSID}:1718004720500"


def test_a_shared_post_is_an_ig_post_with_its_media_id_and_caption() -> None:
    result = parse("instagram_ig_post")

    assert result.skipped == ()
    shared, transition = result.messages
    assert shared.content.attachments == (
        Attachment(
            type="ig_post",
            url="https://lookaside.example-cdn.com/ig_messaging_cdn/?asset_id=18139494541428835&signature=MnOpQr",
            media_id="18139494541428835",
            title="New season: the red trail runners are in.",
        ),
    )
    # a legacy share next to its ig_post (Meta sent both until 2026-04-27) is one attachment
    assert [(a.type, a.media_id, a.title) for a in transition.content.attachments] == [
        ("ig_post", "18139494541428836", "Which colour next?")
    ]
    assert shared.conversation_key == f"dm:{IGSID}"
    assert shared.provider_timestamp == at(7, 25, 0, 600)


def test_a_shared_reel_keeps_its_video_id() -> None:
    msg = only_message("instagram_reel")

    assert msg.content.attachments == (
        Attachment(
            type="ig_reel",
            url="https://lookaside.example-cdn.com/ig_messaging_cdn/?asset_id=18222333444555666&signature=YzAbCd",
            media_id="18222333444555666",
            title="How we make the soles",
        ),
    )


def test_instagram_reactions_are_reaction_messages_on_the_message_they_target() -> None:
    result = parse("instagram_reaction")

    assert result.skipped == ()
    react, unreact = result.messages
    target = IG_DM_MID.replace("MQZDZD", "MgZDZD")
    assert react.content.reaction == Reaction(emoji="\u2764\ufe0f", action="react", target_message_id=target)
    assert unreact.content.reaction == Reaction(emoji=None, action="unreact", target_message_id=target)
    assert {m.kind for m in result.messages} == {MessageKind.REACTION}
    assert {m.provider for m in result.messages} == {Provider.INSTAGRAM}
    assert react.provider_message_id == f"reaction:{target}:{IGSID}:react:1718004480100"


def test_instagram_seen_is_a_read_receipt_naming_the_message_read() -> None:
    status = only_status("instagram_seen")

    assert (status.provider, status.account_id) == (Provider.INSTAGRAM, IG_ID)
    assert status.conversation_key == f"dm:{IGSID}"
    assert status.status is DeliveryStatus.READ
    assert status.provider_message_ids == (IG_DM_MID.replace("MQZDZD", "MgZDZD"),)
    assert status.watermark is None
    assert status.provider_timestamp == at(7, 30, 0, 300)


def test_an_unsupported_instagram_message_is_marked_so_the_agent_sees_it() -> None:
    msg = only_message("instagram_unsupported")

    assert msg.content.unsupported is True
    assert (msg.content.text, msg.content.attachments) == (None, ())
    assert msg.direction is Direction.INBOUND
    assert msg.kind is MessageKind.DIRECT
    assert msg.provider_message_id.endswith("MDAwOAZDZD")


def test_an_ordinary_message_is_not_marked_unsupported_and_has_no_referral() -> None:
    msg = only_message("instagram_dm")
    assert msg.content.unsupported is False
    assert msg.content.referral is None


def test_live_comments_are_skipped_by_name() -> None:
    assert parse("instagram_live_comment") == ParseResult(skipped=("instagram.changes.live_comments",))
