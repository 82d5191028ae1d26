"""WhatsApp's parser against recorded-shape Cloud API webhooks (tests/fixtures/providers/whatsapp).

WhatsApp Business Account deliveries arrive through Meta's webhook endpoint (the WhatsApp plugin
has none of its own), so every delivery here is parsed by the ``meta`` endpoint the registry
lists, as the normalizer parses it; the expected values are written out by hand from the fixture.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from parley_events import (
    Attachment,
    Author,
    Choice,
    DeliveryStatus,
    Direction,
    IdentityChange,
    Location,
    MessageKind,
    Pricing,
    Provider,
    ProviderError,
    Reaction,
    SharedContact,
    ThreadControlAction,
)
from parley_providers import registry
from parley_providers.inbound import (
    ItemFailure,
    ParsedHandover,
    ParsedMessage,
    ParsedMessagingLimit,
    ParsedThroughputChange,
    ParseResult,
)

from tests.support import fixtures

pytestmark = [pytest.mark.unit, pytest.mark.contract]

WABA_ID = "900000000000001"
PHONE_NUMBER_ID = "900000000000101"
CUSTOMER = "15550123456"
SENT_AT = datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC)  # "1718000000"
NOW = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return fixtures.load("whatsapp", name)


def parse(delivery: dict[str, Any]) -> ParseResult:
    endpoint = registry.webhook_endpoint("meta")  # WhatsApp's deliveries come through Meta's
    assert endpoint is not None
    return endpoint.parse(delivery, NOW)


def refusal(result: ParseResult) -> ItemFailure:
    """The one item a delivery's parse refused (and nothing normalized beside it)."""
    assert (result.messages, result.statuses, result.templates) == ((), (), ())
    [failure] = result.failures
    return failure


def only_message(name: str) -> ParsedMessage:
    result = parse(load(name))
    assert result.skipped == ()
    assert result.statuses == ()
    assert result.failures == ()
    [message] = result.messages
    return message


def first_value(delivery: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = delivery["entry"][0]["changes"][0]["value"]
    return value


# --- messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message_id", "kind"),
    [
        ("text", "wamid.TEXT0001", MessageKind.DIRECT),
        ("image_with_caption", "wamid.IMAGE0001", MessageKind.DIRECT),
        ("audio", "wamid.AUDIO0001", MessageKind.DIRECT),
        ("video", "wamid.VIDEO0001", MessageKind.DIRECT),
        ("document", "wamid.DOCUMENT0001", MessageKind.DIRECT),
        ("sticker", "wamid.STICKER0001", MessageKind.DIRECT),
        ("location", "wamid.LOCATION0001", MessageKind.DIRECT),
        ("contacts", "wamid.CONTACTS0001", MessageKind.DIRECT),
        ("interactive_button_reply", "wamid.IBUTTON0001", MessageKind.DIRECT),
        ("interactive_list_reply", "wamid.ILIST0001", MessageKind.DIRECT),
        ("button", "wamid.BUTTON0001", MessageKind.DIRECT),
        ("reaction", "wamid.REACTION0001", MessageKind.REACTION),
        ("reaction_removed", "wamid.REACTION0002", MessageKind.REACTION),
        ("reply_with_context", "wamid.REPLY0001", MessageKind.DIRECT),
    ],
)
def test_every_customer_message_is_inbound_from_the_customer_to_the_number(
    name: str, message_id: str, kind: MessageKind
) -> None:
    message = only_message(name)

    assert message.provider is Provider.WHATSAPP
    assert message.account_id == PHONE_NUMBER_ID
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.direction is Direction.INBOUND
    assert (message.author.id, message.author.name) == (CUSTOMER, "Ana Example")
    assert message.provider_message_id == message_id
    assert message.provider_timestamp == SENT_AT
    assert message.kind is kind


def test_a_text_message_is_an_inbound_direct_message_in_the_customers_thread() -> None:
    message = only_message("text")

    assert message.provider is Provider.WHATSAPP
    assert message.account_id == PHONE_NUMBER_ID
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.direction is Direction.INBOUND
    assert message.kind is MessageKind.DIRECT
    assert message.author.id == CUSTOMER
    assert message.author.name == "Ana Example"
    assert message.content.text == "Hi, where is my order #1042?"
    assert message.content.attachments == ()
    assert message.content.reply_to is None
    assert message.provider_message_id == "wamid.TEXT0001"
    assert message.provider_timestamp == SENT_AT


def test_an_image_becomes_an_attachment_and_its_caption_the_text() -> None:
    message = only_message("image_with_caption")

    assert message.content.attachments == (Attachment(type="image", media_id="7000000000000001"),)
    assert message.content.text == "The box arrived like this"
    assert message.provider_message_id == "wamid.IMAGE0001"


def test_a_voice_note_is_an_audio_attachment_without_text() -> None:
    message = only_message("audio")

    assert message.content.attachments == (Attachment(type="audio", media_id="7000000000000002"),)
    assert message.content.text is None


def test_a_video_keeps_its_media_id_and_caption() -> None:
    message = only_message("video")

    assert message.content.attachments == (Attachment(type="video", media_id="7000000000000003"),)
    assert message.content.text == "Unboxing"


def test_a_document_is_an_attachment_and_its_caption_the_text() -> None:
    message = only_message("document")

    assert message.content.attachments == (Attachment(type="document", media_id="7000000000000004"),)
    assert message.content.text == "My invoice"


def test_a_sticker_is_a_sticker_attachment() -> None:
    message = only_message("sticker")

    assert message.content.attachments == (Attachment(type="sticker", media_id="7000000000000005"),)
    assert message.content.text is None


def test_a_shared_location_keeps_coordinates_name_and_address() -> None:
    message = only_message("location")

    assert message.content.location == Location(
        latitude=38.7223, longitude=-9.1393, name="Example Store", address="1 Sample Street, Lisbon"
    )
    assert message.content.text is None


def test_shared_contact_cards_keep_names_phones_and_emails() -> None:
    message = only_message("contacts")

    assert message.content.contacts == (
        SharedContact(
            name="Bruno Sample",
            phones=("+1 555 0100 200", "+1 555 0100 201"),
            emails=("bruno@example.com",),
        ),
        SharedContact(name="Carla Sample", phones=("+1 555 0100 300",)),
    )


def test_a_tapped_reply_button_is_a_button_reply_choice() -> None:
    message = only_message("interactive_button_reply")

    assert message.content.choice == Choice(
        kind="button_reply", payload="track-order", title="Track my order"
    )
    assert message.content.text == "Track my order"
    assert message.content.reply_to == "wamid.OUT0001"
    assert message.kind is MessageKind.DIRECT


def test_a_picked_list_row_is_a_list_reply_choice() -> None:
    message = only_message("interactive_list_reply")

    assert message.content.choice == Choice(kind="list_reply", payload="size-m", title="Medium")
    assert message.content.reply_to == "wamid.OUT0002"


def test_a_template_quick_reply_button_is_a_button_choice() -> None:
    message = only_message("button")

    assert message.content.choice == Choice(
        kind="button", payload="CONFIRM_DELIVERY", title="Yes, deliver tomorrow"
    )
    assert message.content.reply_to == "wamid.OUT0003"


def test_a_reaction_is_a_reaction_message_aimed_at_the_reacted_message() -> None:
    message = only_message("reaction")

    assert message.kind is MessageKind.REACTION
    assert message.content.reaction == Reaction(
        emoji="\N{THUMBS UP SIGN}", action="react", target_message_id="wamid.OUT0004"
    )
    assert message.provider_message_id == "wamid.REACTION0001"
    assert message.conversation_key == f"dm:{CUSTOMER}"


def test_a_reaction_with_an_empty_emoji_is_a_removed_reaction() -> None:
    message = only_message("reaction_removed")

    assert message.kind is MessageKind.REACTION
    assert message.content.reaction == Reaction(
        emoji=None, action="unreact", target_message_id="wamid.OUT0004"
    )


def test_a_reply_names_the_message_it_answers() -> None:
    message = only_message("reply_with_context")

    assert message.content.reply_to == "wamid.OUT0005"
    assert message.content.text == "Thanks, that works"


def test_an_unsupported_message_type_is_skipped_and_named() -> None:
    result = parse(load("unknown_type"))

    assert result.messages == ()
    assert result.skipped == ("whatsapp.message.unsupported",)


def test_any_unknown_message_type_is_skipped_and_named() -> None:
    delivery = load("text")
    first_value(delivery)["messages"][0]["type"] = "order"

    assert parse(delivery).skipped == ("whatsapp.message.order",)


def test_the_author_name_comes_from_the_matching_contact_only() -> None:
    delivery = load("text")
    first_value(delivery)["contacts"][0]["wa_id"] = "15550999999"

    [message] = parse(delivery).messages

    assert message.author.id == CUSTOMER
    assert message.author.name is None


# --- business-scoped user ids and usernames ----------------------------------------------

BSUID = "US.13491208655302741918"


def test_a_message_with_the_phone_withheld_is_a_normal_message_in_the_bsuids_thread() -> None:
    message = only_message("bsuid_phone_withheld")

    assert message.provider_message_id == "wamid.BSUID0001"
    assert message.direction is Direction.INBOUND
    assert message.conversation_key == f"dm:{BSUID}"
    assert message.author == Author(id=BSUID, name="Noor", phone=None, user_id=BSUID, username="@noor.k")
    assert message.aliases == (f"dm:{BSUID}",)
    assert message.content.text == "Is my order on its way?"


def test_a_message_with_phone_and_username_keeps_the_phone_thread_and_every_identifier() -> None:
    message = only_message("username_with_phone")

    # the phone number stays the key: conversations from before BSUIDs keep their ids
    assert message.conversation_key == f"dm:{CUSTOMER}"
    assert message.author == Author(
        id=CUSTOMER,
        name="Sheena Nelson",
        phone=CUSTOMER,
        user_id="US.20000000000000000001",
        username="@sheena",
    )
    # every key the customer goes by, the thread's first: the normalizer keeps them on one conversation
    assert message.aliases == (f"dm:{CUSTOMER}", "dm:US.20000000000000000001")


def test_the_bsuid_comes_from_the_contact_when_the_message_has_only_the_phone() -> None:
    delivery = load("username_with_phone")
    del first_value(delivery)["messages"][0]["from_user_id"]

    [message] = parse(delivery).messages

    assert message.author.user_id == "US.20000000000000000001"
    assert message.conversation_key == f"dm:{CUSTOMER}"


def test_a_message_naming_neither_phone_nor_bsuid_costs_only_itself() -> None:
    delivery = load("bsuid_phone_withheld")
    del first_value(delivery)["messages"][0]["from_user_id"]

    failure = refusal(parse(delivery))

    assert failure.reason == "from and from_user_id are missing"


def test_a_number_change_is_an_identity_change_on_the_old_numbers_thread() -> None:
    message = only_message("system_user_changed_number")

    assert message.conversation_key == f"dm:{CUSTOMER}"  # the conversation the customer already has
    assert message.author == Author(id=CUSTOMER, phone=CUSTOMER, user_id="US.20000000000000000001")
    assert message.provider_message_id == "wamid.SYSTEM0001"
    assert message.content.identity_change == IdentityChange(
        kind="user_changed_number",
        phone="15550199999",
        user_id="US.20000000000000000002",
        previous_user_id="US.20000000000000000001",
        text="User Sheena Nelson changed from 15550123456 to 15550199999",
    )
    assert message.content.text is None
    assert message.aliases == (
        f"dm:{CUSTOMER}",
        "dm:US.20000000000000000001",
        "dm:15550199999",
        "dm:US.20000000000000000002",
    )


def test_a_bsuid_change_is_an_identity_change_on_the_previous_bsuids_thread() -> None:
    message = only_message("system_user_changed_user_id")

    assert message.conversation_key == f"dm:{BSUID}"
    assert message.author == Author(id=BSUID, user_id=BSUID)
    assert message.aliases == (f"dm:{BSUID}", "dm:US.13491208655302749999")
    assert message.content.identity_change == IdentityChange(
        kind="user_changed_user_id",
        user_id="US.13491208655302749999",
        previous_user_id=BSUID,
        text="User Noor changed their user id",
    )


def test_another_system_message_is_skipped_and_named() -> None:
    delivery = load("system_user_changed_number")
    first_value(delivery)["messages"][0]["system"]["type"] = "customer_identity_changed"

    result = parse(delivery)

    assert (result.messages, result.failures) == ((), ())
    assert result.skipped == ("whatsapp.message.system",)


# --- coexistence echoes -----------------------------------------------------------------


def test_an_echo_from_the_business_app_is_an_outbound_message_in_the_customers_thread() -> None:
    result = parse(load("echo_text"))

    assert (result.statuses, result.skipped, result.failures) == ((), (), ())
    [echo] = result.messages
    assert echo.direction is Direction.OUTBOUND
    assert echo.account_id == PHONE_NUMBER_ID
    assert echo.conversation_key == f"dm:{CUSTOMER}"
    assert echo.author == Author(id="15550001111")  # the business number, not the customer
    assert echo.content.text == "Typed in the Business app: it ships today"
    assert echo.provider_message_id == "wamid.ECHO0001"
    assert echo.provider_timestamp == datetime.fromtimestamp(1718000300, tz=UTC)
    assert echo.kind is MessageKind.DIRECT
    assert echo.aliases == (f"dm:{CUSTOMER}",)  # an echo to a changed number finds the old thread


def test_an_echo_to_a_customer_without_a_phone_is_in_the_bsuids_thread() -> None:
    delivery = load("echo_text")
    echo = first_value(delivery)["message_echoes"][0]
    del echo["to"]
    echo["to_user_id"] = BSUID

    [message] = parse(delivery).messages

    assert message.conversation_key == f"dm:{BSUID}"


# --- standby (Conversation Routing: another responder answers the thread) ----------------


def test_a_standby_delivery_gives_the_customers_message_and_the_other_responders_reply_marked() -> None:
    result = parse(load("standby_message_and_echo"))

    assert (result.statuses, result.failures) == ((), ())
    assert result.skipped == ("whatsapp.standby.statuses",)  # receipts of the other responder's sends
    customer, reply = result.messages
    assert (customer.direction, customer.standby, customer.account_id) == (
        Direction.INBOUND,
        True,
        PHONE_NUMBER_ID,
    )
    assert customer.conversation_key == f"dm:{CUSTOMER}"
    assert (customer.author.id, customer.author.name) == (CUSTOMER, "Ada Lovelace")
    assert customer.content.text == "Is my order on its way?"
    assert customer.provider_message_id == "wamid.STANDBY0001"
    assert (reply.direction, reply.standby, reply.conversation_key) == (
        Direction.OUTBOUND,
        True,
        f"dm:{CUSTOMER}",
    )
    assert reply.content.text == "It left the warehouse this morning."
    assert reply.provider_timestamp == datetime.fromtimestamp(1718000405, tz=UTC)


def test_messages_on_the_messages_field_say_nothing_about_who_answers() -> None:
    [message] = parse(load("text")).messages
    assert message.standby is None  # on WhatsApp, a message reaching an app is no take


def test_a_malformed_standby_message_costs_only_itself() -> None:
    delivery = load("standby_message_and_echo")
    del first_value(delivery)["standby"]["messages"][0]["id"]

    result = parse(delivery)

    assert [m.provider_message_id for m in result.messages] == ["wamid.STANDBY0002"]
    [failure] = result.failures
    assert "standby.messages" in failure.position


# --- statuses ---------------------------------------------------------------------------


def test_a_status_carries_the_providers_pricing() -> None:
    [receipt] = parse(load("status_sent")).statuses

    assert receipt.pricing == Pricing(billable=True, category="service", pricing_model="CBP")


def test_a_status_to_a_customer_without_a_phone_is_in_the_bsuids_thread_with_pricing() -> None:
    result = parse(load("status_delivered_pricing_bsuid"))

    assert (result.messages, result.failures) == ((), ())
    [receipt] = result.statuses
    assert receipt.conversation_key == f"dm:{BSUID}"
    assert receipt.aliases == (f"dm:{BSUID}",)
    assert receipt.status is DeliveryStatus.DELIVERED
    assert receipt.provider_message_ids == ("wamid.OUT0009",)
    assert receipt.pricing == Pricing(billable=True, category="utility", pricing_model="PMP", type="regular")


def test_a_status_without_pricing_has_none() -> None:
    [receipt] = parse(load("status_read")).statuses

    assert receipt.pricing is None


@pytest.mark.parametrize(
    ("name", "status", "seconds"),
    [
        ("status_sent", DeliveryStatus.SENT, 1718000100),
        ("status_delivered", DeliveryStatus.DELIVERED, 1718000105),
        ("status_read", DeliveryStatus.READ, 1718000160),
    ],
)
def test_a_status_is_a_receipt_for_the_business_message_in_the_recipients_thread(
    name: str, status: DeliveryStatus, seconds: int
) -> None:
    result = parse(load(name))

    assert result.messages == ()
    [receipt] = result.statuses
    assert receipt.provider is Provider.WHATSAPP
    assert receipt.account_id == PHONE_NUMBER_ID
    assert receipt.conversation_key == f"dm:{CUSTOMER}"
    assert receipt.status is status
    assert receipt.provider_message_ids == ("wamid.OUT0001",)
    assert receipt.provider_timestamp == datetime.fromtimestamp(seconds, tz=UTC)
    assert receipt.watermark is None
    assert receipt.errors == ()


def test_a_failed_status_carries_the_providers_error_codes() -> None:
    [receipt] = parse(load("status_failed")).statuses

    assert receipt.status is DeliveryStatus.FAILED
    assert receipt.provider_message_ids == ("wamid.OUT0006",)
    assert receipt.errors == (
        ProviderError(code=131047, title="Re-engagement message", message="Re-engagement message"),
    )


def test_a_status_error_without_a_message_falls_back_to_its_details() -> None:
    delivery = load("status_failed")
    del first_value(delivery)["statuses"][0]["errors"][0]["message"]

    [receipt] = parse(delivery).statuses

    assert receipt.errors[0].code == 131047
    assert receipt.errors[0].message is not None
    assert receipt.errors[0].message.startswith("Message failed to send because more than 24 hours")


def test_an_unknown_status_value_is_skipped_and_named() -> None:
    delivery = load("status_read")
    first_value(delivery)["statuses"][0]["status"] = "deleted"

    result = parse(delivery)

    assert result.statuses == ()
    assert result.skipped == ("whatsapp.status.deleted",)


# --- batches ----------------------------------------------------------------------------


def test_a_batch_yields_every_message_and_status_of_every_entry() -> None:
    result = parse(load("batch"))

    assert result.skipped == ()
    assert [m.provider_message_id for m in result.messages] == [
        "wamid.BATCH0001",
        "wamid.BATCH0002",
        "wamid.BATCH0003",
        "wamid.BATCH0004",
    ]
    assert [m.account_id for m in result.messages] == [PHONE_NUMBER_ID] * 3 + ["900000000000202"]
    assert [m.conversation_key for m in result.messages] == [
        f"dm:{CUSTOMER}",
        "dm:15550177777",
        f"dm:{CUSTOMER}",
        "dm:15550188888",
    ]
    assert [m.author.name for m in result.messages] == [
        "Ana Example",
        "Dan Placeholder",
        "Ana Example",
        "Eve Placeholder",
    ]
    assert [m.provider_timestamp.timestamp() for m in result.messages] == [
        1718000300,
        1718000301,
        1718000302,
        1718000304,
    ]
    assert result.messages[2].content.attachments == (Attachment(type="image", media_id="7000000000000009"),)
    [receipt] = result.statuses
    assert (receipt.status, receipt.provider_message_ids) == (DeliveryStatus.DELIVERED, ("wamid.OUT0007",))


# --- templates --------------------------------------------------------------------------


def test_an_approved_template_is_a_template_status_for_the_business_account() -> None:
    result = parse(load("template_approved"))

    assert (result.messages, result.statuses, result.skipped) == ((), (), ())
    [template] = result.templates
    assert template.business_account_id == WABA_ID
    assert template.status == "APPROVED"
    assert template.template_id == "8000000000000001"
    assert template.template_name == "order_update"
    assert template.language == "en_US"
    assert template.reason is None  # Meta sends the string "NONE"
    assert template.provider_timestamp == datetime.fromtimestamp(1718001000, tz=UTC)


def test_a_rejected_template_keeps_the_reason() -> None:
    [template] = parse(load("template_rejected")).templates

    assert template.status == "REJECTED"
    assert template.template_id == "8000000000000002"
    assert template.template_name == "spring_promo"
    assert template.language == "pt_BR"
    assert template.reason == "INCORRECT_CATEGORY"
    assert template.provider_timestamp == datetime.fromtimestamp(1718002000, tz=UTC)


def test_a_status_update_carries_the_template_category() -> None:
    [template] = parse(load("template_paused_with_category")).templates

    assert (template.update, template.status, template.category) == ("status", "PAUSED", "UTILITY")
    assert template.template_name == "order_update"
    assert template.reason is None


def test_a_completed_category_change_is_a_template_category_update() -> None:
    result = parse(load("template_category_update"))

    assert result.skipped == ()
    [template] = result.templates
    assert template.update == "category"
    assert (template.previous_category, template.category) == ("UTILITY", "MARKETING")
    assert (template.template_id, template.template_name, template.language) == (
        "8000000000000001",
        "order_update",
        "en_US",
    )
    assert template.business_account_id == WABA_ID
    assert template.provider_timestamp == datetime.fromtimestamp(1718003000, tz=UTC)


def test_an_announced_category_change_is_skipped_until_it_happens() -> None:
    result = parse(load("template_category_update_announced"))

    assert result.templates == ()
    assert result.skipped == ("whatsapp.template_category_update",)


def test_a_quality_update_is_a_template_quality_change() -> None:
    [template] = parse(load("template_quality_update")).templates

    assert template.update == "quality"
    assert (template.previous_quality_score, template.quality_score) == ("GREEN", "YELLOW")
    assert template.template_name == "order_update"
    assert template.provider_timestamp == datetime.fromtimestamp(1718004000, tz=UTC)


# --- messaging limits -------------------------------------------------------------------


def test_a_business_capability_update_sets_the_business_messaging_limit() -> None:
    result = parse(load("business_capability_update"))

    assert (result.messages, result.statuses, result.templates, result.skipped) == ((), (), (), ())
    assert result.limits == (
        ParsedMessagingLimit(
            business_account_id=WABA_ID,
            tier="TIER_2K",
            messaging_limit=2_000,
            provider_timestamp=datetime.fromtimestamp(1718004000, tz=UTC),
        ),
    )


def test_a_quality_update_naming_the_business_limit_sets_it() -> None:
    [limit] = parse(load("phone_number_quality_update_limit")).limits

    assert (limit.tier, limit.messaging_limit) == ("TIER_10K", 10_000)
    assert limit.provider_timestamp == datetime.fromtimestamp(1718005000, tz=UTC)


@pytest.mark.parametrize(
    ("value", "tier", "limit"),
    [
        ({"max_daily_conversations_per_business": "TIER_UNLIMITED"}, "TIER_UNLIMITED", None),
        ({"max_daily_conversations_per_business": "TIER_250"}, "TIER_250", 250),
        ({"max_daily_conversations_per_business": "TIER_100K"}, "TIER_100K", 100_000),
        ({"max_daily_conversation_per_phone": -1}, "TIER_UNLIMITED", None),  # the earlier form
        ({"max_daily_conversation_per_phone": 10000}, "10000", 10_000),
    ],
)
def test_each_tier_the_provider_names_is_its_number_of_customers(
    value: dict[str, Any], tier: str, limit: int | None
) -> None:
    delivery = load("business_capability_update")
    delivery["entry"][0]["changes"][0]["value"] = value

    [found] = parse(delivery).limits

    assert (found.tier, found.messaging_limit) == (tier, limit)


def test_an_update_without_a_business_limit_or_a_throughput_change_is_skipped_and_named() -> None:
    delivery = load("phone_number_quality_update_limit")
    first_value(delivery)["max_daily_conversations_per_business"] = "TIER_NOT_SET"
    first_value(delivery)["event"] = "ONBOARDING"

    result = parse(delivery)

    assert (result.limits, result.throughputs) == ((), ())
    assert result.skipped == ("whatsapp.phone_number_quality_update",)


def test_a_throughput_upgrade_names_the_number_by_its_display_number() -> None:
    delivery = load("phone_number_quality_update_limit")
    first_value(delivery)["max_daily_conversations_per_business"] = "TIER_NOT_SET"

    result = parse(delivery)

    assert result.limits == ()
    assert result.skipped == ()
    assert result.throughputs == (
        ParsedThroughputChange(
            business_account_id=WABA_ID,
            display_phone_number="15550001111",
            event="THROUGHPUT_UPGRADE",
            provider_timestamp=datetime.fromtimestamp(1718005000, tz=UTC),
        ),
    )
    # the fixture as recorded names the business limit too: both are kept
    full = parse(load("phone_number_quality_update_limit"))
    assert (len(full.limits), len(full.throughputs)) == (1, 1)


def test_other_fields_are_skipped_and_named() -> None:
    entry = {
        "id": WABA_ID,
        "time": 1718003000,
        "changes": [
            {
                "field": "account_update",
                "value": {"phone_number": "15550001111", "event": "VERIFIED_ACCOUNT"},
            },
            {"field": "phone_number_quality_update", "value": {"event": "FLAGGED"}},
        ],
    }

    result = parse({"object": "whatsapp_business_account", "entry": [entry]})

    assert result.skipped == ("whatsapp.account_update", "whatsapp.phone_number_quality_update")
    assert (result.messages, result.statuses, result.templates) == ((), (), ())


# --- malformed deliveries ---------------------------------------------------------------


def _break(name: str, path: tuple[str | int, ...], new: Any = ..., *, delete: bool = False) -> dict[str, Any]:
    """The fixture with the value at ``path`` (below the first change's value) replaced or removed."""
    delivery = copy.deepcopy(load(name))
    target: Any = first_value(delivery)
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return delivery


@pytest.mark.parametrize(
    "delivery",
    [
        pytest.param(_break("text", ("messages", 0, "from"), delete=True), id="message-without-from"),
        pytest.param(_break("text", ("messages", 0, "id"), delete=True), id="message-without-id"),
        pytest.param(
            _break("text", ("messages", 0, "timestamp"), delete=True), id="message-without-timestamp"
        ),
        pytest.param(_break("text", ("messages", 0, "timestamp"), "yesterday"), id="non-numeric-timestamp"),
        pytest.param(_break("text", ("messages", 0, "type"), delete=True), id="message-without-type"),
        pytest.param(_break("text", ("messages", 0, "text"), "hello"), id="text-not-an-object"),
        pytest.param(_break("text", ("messages",), {"from": CUSTOMER}), id="messages-not-a-list"),
        pytest.param(_break("text", ("metadata",), delete=True), id="no-metadata"),
        pytest.param(_break("location", ("messages", 0, "location", "latitude"), "north"), id="bad-latitude"),
        pytest.param(
            _break("contacts", ("messages", 0, "contacts"), {"name": "x"}), id="contacts-not-a-list"
        ),
        pytest.param(
            _break("status_read", ("statuses", 0, "recipient_id"), delete=True), id="status-no-recipient"
        ),
        pytest.param(_break("status_read", ("statuses", 0, "timestamp"), "soon"), id="status-bad-timestamp"),
        pytest.param(_break("status_read", ("statuses", 0, "id"), delete=True), id="status-without-id"),
    ],
)
def test_shapes_whatsapp_does_not_document_are_malformed(delivery: dict[str, Any]) -> None:
    failure = refusal(parse(delivery))
    assert failure.position.startswith("entry[0].changes[0]"), failure
    assert failure.reason


def test_a_change_value_that_is_not_an_object_is_malformed() -> None:
    delivery = load("text")
    delivery["entry"][0]["changes"][0]["value"] = ["not", "an", "object"]

    failure = refusal(parse(delivery))
    assert (failure.position, failure.reason) == ("entry[0].changes[0]", "change value is not an object")


def test_changes_that_are_not_a_list_are_malformed() -> None:
    delivery = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": {"field": "messages"}}],
    }
    failure = refusal(parse(delivery))
    assert (failure.position, failure.reason) == ("entry[0].changes", "changes is not a list")


def test_a_template_update_without_the_entry_time_is_malformed() -> None:
    delivery = load("template_approved")
    del delivery["entry"][0]["time"]

    assert "time" in refusal(parse(delivery)).reason


# --- Conversation Routing: handovers ----------------------------------------------------------


def test_a_thread_passed_to_parley_on_whatsapp_makes_it_the_active_responder() -> None:
    result = parse(load("handover_control_passed"))

    assert (result.messages, result.skipped, result.failures) == ((), (), ())
    assert result.handovers == (
        ParsedHandover(
            provider=Provider.WHATSAPP,
            account_id=PHONE_NUMBER_ID,
            conversation_key=f"dm:{CUSTOMER}",
            action=ThreadControlAction.PASS,
            parley_active=True,
            provider_timestamp=datetime(2024, 6, 10, 6, 18, 20, tzinfo=UTC),  # "1718000300"
            metadata="AI agent could not answer: refund request",
        ),
    )


def test_a_thread_taken_from_parley_on_whatsapp_makes_another_responder_active() -> None:
    [handover] = parse(load("handover_control_taken")).handovers

    assert handover.action is ThreadControlAction.TAKE
    assert handover.parley_active is False
    assert (handover.account_id, handover.conversation_key) == (PHONE_NUMBER_ID, f"dm:{CUSTOMER}")
    assert handover.provider_timestamp == datetime(2024, 6, 10, 6, 19, 20, tzinfo=UTC)
    assert handover.metadata == "escalated to the support desk"
    # Meta names no apps on WhatsApp (roles only): the app ids stay empty
    assert (handover.new_owner_app_id, handover.previous_owner_app_id) == (None, None)


def test_a_handover_without_type_is_read_from_its_object_and_a_withheld_phone_names_the_bsuid() -> None:
    delivery = load("handover_control_taken")
    value = first_value(delivery)
    del value["type"]
    value["sender"] = {"user_id": BSUID}

    [handover] = parse(delivery).handovers

    assert handover.action is ThreadControlAction.TAKE
    assert handover.conversation_key == f"dm:{BSUID}"


def test_an_unknown_handover_is_skipped_and_one_naming_no_user_is_refused_alone() -> None:
    unknown = load("handover_control_passed")
    first_value(unknown)["type"] = "control_requested"
    del first_value(unknown)["control_passed"]
    assert parse(unknown).skipped == ("whatsapp.handover.other",)

    nameless = load("handover_control_passed")
    first_value(nameless)["sender"] = {}
    result = parse(nameless)
    assert result.handovers == ()
    assert len(result.failures) == 1
