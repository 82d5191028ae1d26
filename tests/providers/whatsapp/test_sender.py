"""WhatsAppSender, as the registry builds it from policy's settings, against the provider sandbox.

A free-form text and an approved template are each sent once: the sender answers the ``wamid``
and the sandbox recorded the Cloud API ``/messages`` call the documentation describes. Then each
error class the Cloud API documents and the sandbox can produce, for both kinds of reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from parley_events import Provider, ReplyApproved, TemplateRef
from parley_providers import ErrorKind, registry
from parley_providers.base import ReadReceipts, ReadRef, Sender, ThreadControl, ThreadRef

from tests.support.sandbox import GRAPH_VERSION, WA_TOKEN, Sandbox, approved, fails

pytestmark = [pytest.mark.integration, pytest.mark.contract]

CUSTOMER = "15557654321"


@dataclass(frozen=True)
class Case:
    name: str
    reply: ReplyApproved
    body: dict[str, Any]

    def __str__(self) -> str:
        return self.name


def text_reply(number: str, text: str = "Your order ships today.") -> ReplyApproved:
    return approved(Provider.WHATSAPP, number, CUSTOMER, "direct", text=text)


def template_reply(number: str) -> ReplyApproved:
    template = TemplateRef(name="order_update", language="en_US", parameters=("1042", "today"))
    return approved(
        Provider.WHATSAPP, number, CUSTOMER, "direct", template=template, messaging_type="TEMPLATE"
    )


def cases(number: str) -> list[Case]:
    return [
        Case(
            "text",
            text_reply(number),
            {
                "messaging_product": "whatsapp",
                "to": CUSTOMER,
                "type": "text",
                "text": {"body": "Your order ships today."},
            },
        ),
        Case(
            "template",
            template_reply(number),
            {
                "messaging_product": "whatsapp",
                "to": CUSTOMER,
                "type": "template",
                "template": {
                    "name": "order_update",
                    "language": {"code": "en_US"},
                    "components": [
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": "1042"},
                                {"type": "text", "text": "today"},
                            ],
                        }
                    ],
                },
            },
        ),
    ]


KINDS = ["text", "template"]


@dataclass
class Number:
    sandbox: Sandbox
    id: str

    @property
    def sender(self) -> Sender:
        return self.sandbox.senders[Provider.WHATSAPP]

    def case(self, name: str) -> Case:
        return next(c for c in cases(self.id) if c.name == name)


@pytest.fixture
async def number(sandbox: Sandbox) -> Number:
    """A registered number whose customer wrote an hour ago (the window is open)."""
    number_id = await sandbox.whatsapp_number(verified=True, registered=True, enforce_window=True)
    sandbox.state.open_window(number_id, CUSTOMER, ago_s=3600)
    return Number(sandbox, number_id)


def test_the_registry_builds_the_whatsapp_sender(sandbox: Sandbox) -> None:
    assert type(sandbox.senders[Provider.WHATSAPP]).__name__ == "WhatsAppSender"


@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_of_reply_is_sent_as_the_cloud_api_documents_it(kind: str, number: Number) -> None:
    case = number.case(kind)

    wamid = await number.sender.send(case.reply, WA_TOKEN)

    [record] = number.sandbox.state.sent
    assert (record.provider, record.path, record.status) == (
        "whatsapp",
        f"/{GRAPH_VERSION}/{number.id}/messages",
        200,
    )
    assert record.body == case.body
    assert wamid.startswith("wamid.") and record.result_id == wamid


async def test_outside_the_window_a_text_is_window_closed_and_a_template_is_sent(number: Number) -> None:
    number.sandbox.state.advance(24 * 3600)  # the customer's message is now 25 hours old

    error = await fails(number.sender.send(number.case("text").reply, WA_TOKEN))
    wamid = await number.sender.send(number.case("template").reply, WA_TOKEN)

    assert (error.provider, error.code, error.kind) == ("whatsapp", 131047, ErrorKind.WINDOW_CLOSED)
    assert wamid.startswith("wamid.")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_revoked_token_needs_a_reconnect(kind: str, number: Number) -> None:
    await number.sandbox.admin("POST", f"/meta/tokens/{WA_TOKEN}/revoke", {"subcode": 460})

    error = await fails(number.sender.send(number.case(kind).reply, WA_TOKEN))

    assert (error.code, error.subcode, error.kind) == (190, 460, ErrorKind.REAUTH_REQUIRED)
    assert registry.reauth_reason(Provider.WHATSAPP, error.code, error.subcode) == "password_changed"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_token_of_another_business_is_a_missing_permission(kind: str, number: Number) -> None:
    await number.sandbox.whatsapp_number(phone_number_id="2222", waba_id="other-waba", token="other-token")

    error = await fails(number.sender.send(number.case(kind).reply, "other-token"))

    assert (error.status, error.code, error.kind) == (403, 200, ErrorKind.PERMISSION_MISSING)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("code", [130429, 131056])
async def test_the_throughput_and_pair_rate_limits_are_rate_limited(
    kind: str, code: int, number: Number
) -> None:
    await number.sandbox.fault(path_contains="/messages", status=400, code=code)

    error = await fails(number.sender.send(number.case(kind).reply, WA_TOKEN))

    assert (error.code, error.kind) == (code, ErrorKind.RATE_LIMITED)


@pytest.mark.parametrize("kind", KINDS)
async def test_throttling_is_rate_limited_with_the_wait_meta_asks_for(kind: str, number: Number) -> None:
    await number.sandbox.fault(path_contains="/messages", status=429, retry_after_s=60)

    error = await fails(number.sender.send(number.case(kind).reply, WA_TOKEN))

    assert (error.status, error.kind, error.retry_after_s) == (429, ErrorKind.RATE_LIMITED, 60.0)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_fault_is_retryable(kind: str, number: Number) -> None:
    await number.sandbox.fault(path_contains="/messages", status=500, code=131000)

    error = await fails(number.sender.send(number.case(kind).reply, WA_TOKEN))

    assert (error.status, error.code, error.kind) == (500, 131000, ErrorKind.RETRYABLE)


async def test_a_text_over_4096_characters_is_refused(number: Number) -> None:
    error = await fails(number.sender.send(text_reply(number.id, "y" * 4097), WA_TOKEN))

    assert (error.code, error.kind) == (131009, ErrorKind.INVALID_REQUEST)
    assert "4096" in error.message


async def test_a_number_not_registered_for_the_cloud_api_is_refused(sandbox: Sandbox) -> None:
    number_id = await sandbox.whatsapp_number(verified=True, registered=False)

    error = await fails(sandbox.senders[Provider.WHATSAPP].send(text_reply(number_id), WA_TOKEN))

    assert (error.code, error.kind) == (133010, ErrorKind.INVALID_REQUEST)


async def test_a_customer_known_only_by_the_business_scoped_user_id_is_sent_to_through_recipient(
    sandbox: Sandbox,
) -> None:
    bsuid = "US.13491208655302741918"
    number_id = await sandbox.whatsapp_number(verified=True, registered=True, enforce_window=True)
    sandbox.state.open_window(number_id, bsuid, ago_s=60)
    reply = approved(Provider.WHATSAPP, number_id, bsuid, "direct", text="Your order ships today.")

    wamid = await sandbox.senders[Provider.WHATSAPP].send(reply, WA_TOKEN)

    [record] = sandbox.state.sent
    assert record.body == {
        "messaging_product": "whatsapp",
        "recipient": bsuid,
        "type": "text",
        "text": {"body": "Your order ships today."},
    }
    assert wamid.startswith("wamid.") and record.result_id == wamid


async def test_a_read_receipt_with_typing_is_one_status_read_call_and_a_bad_message_id_is_refused(
    number: Number,
) -> None:
    sender = number.sender
    assert isinstance(sender, ReadReceipts)

    await sender.mark_read(ReadRef(Provider.WHATSAPP, number.id, "wamid.IN1"), WA_TOKEN, typing=True)
    await sender.mark_read(ReadRef(Provider.WHATSAPP, number.id, "wamid.IN2"), WA_TOKEN, typing=False)
    error = await fails(
        sender.mark_read(ReadRef(Provider.WHATSAPP, number.id, "m_1"), WA_TOKEN, typing=False)
    )

    typing, plain, refused = number.sandbox.state.sent
    assert (typing.path, typing.status) == (f"/{GRAPH_VERSION}/{number.id}/messages", 200)
    assert typing.body == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
        "typing_indicator": {"type": "text"},
    }
    assert plain.body == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN2"}
    assert refused.status == 400
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)


async def test_a_thread_is_taken_and_released_on_its_number_and_only_its_owner_releases_it(
    number: Number,
) -> None:
    sender = number.sender
    assert isinstance(sender, ThreadControl)
    thread = ThreadRef(Provider.WHATSAPP, number.id, CUSTOMER)
    bsuid = ThreadRef(Provider.WHATSAPP, number.id, "US.13491208655302741918", metadata="agent")

    await sender.take_thread_control(thread, WA_TOKEN)
    state = number.sandbox.state.whatsapp_numbers[number.id]
    assert state.thread_owners == {CUSTOMER: number.sandbox.state.meta_app_id}
    await sender.release_thread_control(thread, WA_TOKEN)
    assert state.thread_owners == {}
    not_owner = await fails(sender.release_thread_control(thread, WA_TOKEN))
    await sender.take_thread_control(bsuid, WA_TOKEN)

    calls = [c for c in number.sandbox.state.calls if c.path.endswith("/thread_control")]
    assert [c.status for c in calls] == [200, 200, 400, 200]
    assert (not_owner.code, not_owner.kind) == (100, ErrorKind.INVALID_REQUEST)
    assert state.thread_owners == {"US.13491208655302741918": number.sandbox.state.meta_app_id}


async def test_only_the_numbers_escalation_partner_may_take_a_thread(sandbox: Sandbox) -> None:
    number_id = await sandbox.whatsapp_number(registered=True, escalation_partner=False)
    sender = sandbox.senders[Provider.WHATSAPP]
    assert isinstance(sender, ThreadControl)

    error = await fails(
        sender.take_thread_control(ThreadRef(Provider.WHATSAPP, number_id, CUSTOMER), WA_TOKEN)
    )

    assert error.kind is ErrorKind.INVALID_REQUEST
