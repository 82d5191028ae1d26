"""GraphClient's WhatsApp Cloud API calls against the provider sandbox.

Numbers, verification codes, registration and sends, on a system user's token. A success is
checked by what the method returns and what the sandbox recorded; every error class the Cloud
API documents and the sandbox can produce is checked for every method: a dead token (190), a
token without access to the number (200), throttling (130429, 429 with the wait), server faults,
no answer, the closed customer-service window (131047) and requests that can never succeed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from parley_providers import ErrorKind, registry
from parley_providers.meta.client import GraphClient
from parley_providers.whatsapp.connect import WhatsAppConnector
from parley_sandbox.state import WhatsAppTemplate

from tests.support.sandbox import GRAPH_VERSION, WA_TOKEN, WABA_ID, Sandbox, fails, nobody_listening

pytestmark = [pytest.mark.integration, pytest.mark.contract]


async def test_whatsapp_number_verification_registration_and_send(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number()
    graph = sandbox.graph
    text = {"to": "+1 555 123 4567", "type": "text", "text": {"body": "Hello from Parley"}}

    error = await fails(graph.whatsapp_send(number, WA_TOKEN, text))
    assert (error.provider, error.code, error.kind) == ("whatsapp", 133010, ErrorKind.INVALID_REQUEST)

    error = await fails(graph.whatsapp_request_code(number, WA_TOKEN, "EMAIL"))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    assert await sandbox.admin_status("GET", f"/whatsapp/numbers/{number}/last-code") == 404

    await graph.whatsapp_request_code(number, WA_TOKEN, "sms")
    code = (await sandbox.admin("GET", f"/whatsapp/numbers/{number}/last-code"))["code"]
    assert len(code) == 6 and code.isdigit()
    assert sandbox.state.whatsapp_numbers[number].last_code == code

    error = await fails(graph.whatsapp_register(number, WA_TOKEN, "123456"))
    assert (error.code, error.kind) == (133006, ErrorKind.INVALID_REQUEST)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    error = await fails(graph.whatsapp_verify_code(number, WA_TOKEN, wrong))
    assert (error.code, error.kind) == (136025, ErrorKind.INVALID_REQUEST)
    assert sandbox.state.whatsapp_numbers[number].verified is False

    await graph.whatsapp_verify_code(number, WA_TOKEN, code)
    assert sandbox.state.whatsapp_numbers[number].verified is True
    error = await fails(graph.whatsapp_verify_code(number, WA_TOKEN, code))  # single use
    assert error.code == 136025

    error = await fails(graph.whatsapp_register(number, WA_TOKEN, "12ab"))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    await graph.whatsapp_register(number, WA_TOKEN, "246810")
    view = await sandbox.admin("GET", f"/whatsapp/numbers/{number}")
    assert (view["verified"], view["registered"], view["pin"]) == (True, True, "246810")
    assert "token" not in view
    error = await fails(graph.whatsapp_register(number, WA_TOKEN, "111111"))
    assert (error.code, error.kind) == (133005, ErrorKind.INVALID_REQUEST)

    sandbox.state.sent.clear()
    wamid = await graph.whatsapp_send(number, WA_TOKEN, text)
    other = await graph.whatsapp_send(number, WA_TOKEN, text)
    assert wamid.startswith("wamid.") and other.startswith("wamid.") and wamid != other
    record = sandbox.state.sent[0]
    assert (record.provider, record.path, record.result_id) == (
        "whatsapp",
        f"/{GRAPH_VERSION}/{number}/messages",
        wamid,
    )
    assert record.body == {"messaging_product": "whatsapp", **text}
    assert WA_TOKEN not in repr(record)

    error = await fails(graph.whatsapp_send(number, WA_TOKEN, {**text, "text": {"body": "y" * 4097}}))
    assert (error.code, error.kind) == (131009, ErrorKind.INVALID_REQUEST)
    assert "4096" in error.message  # error_data.details is part of the message
    error = await fails(
        graph.whatsapp_send(
            number, WA_TOKEN, {"to": "15551234567", "type": "template", "template": {"name": "x"}}
        )
    )
    assert error.code == 131008
    assert sandbox.state.sent[-1].status == 400


async def test_whatsapp_tokens_are_checked(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number(verified=True, registered=True)
    await sandbox.whatsapp_number(phone_number_id="2222", waba_id="other-waba", token="other-token")
    text = {"to": "15551234567", "text": {"body": "hi"}}
    error = await fails(sandbox.graph.whatsapp_send(number, "not-a-token", text))
    assert (error.provider, error.code, error.kind) == ("whatsapp", 190, ErrorKind.REAUTH_REQUIRED)
    error = await fails(sandbox.graph.whatsapp_send(number, "other-token", text))
    assert (error.code, error.kind) == (200, ErrorKind.PERMISSION_MISSING)
    error = await fails(sandbox.graph.whatsapp_request_code("999999", WA_TOKEN, "SMS"))
    assert (error.code, error.subcode) == (100, 33)
    await sandbox.admin("POST", f"/meta/tokens/{WA_TOKEN}/revoke", {"subcode": 467})
    error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
    assert (error.code, error.subcode, error.kind) == (190, 467, ErrorKind.REAUTH_REQUIRED)


async def test_a_wabas_phone_numbers_are_listed_for_a_token_that_manages_it(sandbox: Sandbox) -> None:
    """GET /{waba-id}/phone_numbers (security #13 finding 7): every page, only for the WABA's token."""
    waba = WABA_ID
    numbers = [f"10654035224{n:04d}" for n in range(130)]
    for number_id in numbers:
        await sandbox.whatsapp_number(phone_number_id=number_id, verified_name="Acme")
    await sandbox.whatsapp_number(phone_number_id="2222", waba_id="other-waba", token="other-token")
    listed = await sandbox.graph.whatsapp_phone_numbers(waba, WA_TOKEN)
    assert [n.id for n in listed] == numbers  # 130 numbers: two result pages
    assert (listed[0].display_phone_number, listed[0].verified_name) == ("+1 555 010 0001", "Acme")
    assert [n.id for n in await sandbox.graph.whatsapp_phone_numbers("other-waba", "other-token")] == ["2222"]
    error = await fails(sandbox.graph.whatsapp_phone_numbers(waba, "other-token"))
    assert (error.provider, error.code, error.kind) == ("whatsapp", 200, ErrorKind.PERMISSION_MISSING)
    error = await fails(sandbox.graph.whatsapp_phone_numbers("no-such-waba", WA_TOKEN))
    assert (error.code, error.subcode) == (100, 33)
    error = await fails(sandbox.graph.whatsapp_phone_numbers(waba, "not-a-token"))
    assert (error.code, error.kind) == (190, ErrorKind.REAUTH_REQUIRED)


async def test_whatsapp_window_needs_a_recent_inbound_message_or_a_template(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number(verified=True, registered=True, enforce_window=True)
    text = {"to": "15557654321", "type": "text", "text": {"body": "Following up"}}
    template = {
        "to": "15557654321",
        "type": "template",
        "template": {"name": "follow_up", "language": {"code": "en_US"}},
    }
    error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
    assert (error.code, error.kind) == (131047, ErrorKind.WINDOW_CLOSED)
    assert (await sandbox.graph.whatsapp_send(number, WA_TOKEN, template)).startswith("wamid.")

    await sandbox.admin(
        "POST", "/windows", {"account_id": number, "customer_id": "15557654321", "ago_s": 3600}
    )
    assert (await sandbox.graph.whatsapp_send(number, WA_TOKEN, text)).startswith("wamid.")
    sandbox.state.advance(23 * 3600 + 1)
    error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
    assert error.kind is ErrorKind.WINDOW_CLOSED


async def test_fault_switches_answer_in_the_cloud_apis_shape_and_classify(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number(verified=True, registered=True)
    text = {"to": "15551234567", "text": {"body": "hi"}}

    fault = await sandbox.admin(
        "POST", "/faults", {"path_contains": "/messages", "status": 400, "code": 130429, "times": 2}
    )
    assert fault["times"] == 2
    assert (await sandbox.admin("GET", "/faults"))["data"][0]["code"] == 130429
    for _ in range(2):
        error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
        assert (error.status, error.code, error.kind) == (400, 130429, ErrorKind.RATE_LIMITED)
    assert sandbox.state.faults == []
    assert (await sandbox.graph.whatsapp_send(number, WA_TOKEN, text)).startswith("wamid.")
    assert [s.status for s in sandbox.state.sent] == [400, 400, 200]

    cases: list[tuple[dict[str, Any], tuple[int, int | None, int | None, ErrorKind]]] = [
        ({"status": 500, "code": 1}, (500, 1, None, ErrorKind.RETRYABLE)),
        ({"status": 500, "code": 131000}, (500, 131000, None, ErrorKind.RETRYABLE)),
        ({"status": 400, "code": 131047}, (400, 131047, None, ErrorKind.WINDOW_CLOSED)),
        ({"status": 400, "code": 131056}, (400, 131056, None, ErrorKind.RATE_LIMITED)),
        ({"status": 400, "code": 190, "subcode": 463}, (400, 190, 463, ErrorKind.REAUTH_REQUIRED)),
        ({"status": 403, "code": 200}, (403, 200, None, ErrorKind.PERMISSION_MISSING)),
        ({"status": 429}, (429, 4, None, ErrorKind.RATE_LIMITED)),
        ({"status": 503, "plain": True}, (503, None, None, ErrorKind.RETRYABLE)),
        ({"status": 400, "code": 100}, (400, 100, None, ErrorKind.INVALID_REQUEST)),
    ]
    for spec, expected in cases:
        await sandbox.admin("POST", "/faults", {"path_contains": f"/{number}/messages", **spec})
        error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
        assert (error.status, error.code, error.subcode, error.kind) == expected, spec


# --- every method against every error class -----------------------------------------------

CUSTOMER = "15551234567"
TEXT = {"to": CUSTOMER, "type": "text", "text": {"body": "Hello from Parley"}}


@dataclass
class Number:
    """A verified, registered number of WABA_ID with a code waiting to be typed in."""

    sandbox: Sandbox
    id: str


ORDER_UPDATE: dict[str, Any] = {
    "name": "order_update",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {"type": "BODY", "text": "Hi {{1}}, order {{2}} shipped.", "example": {"body_text": [["Ada", "#42"]]}}
    ],
}


@pytest.fixture
async def number(sandbox: Sandbox) -> Number:
    number_id = await sandbox.whatsapp_number(verified=True, registered=True)
    sandbox.state.whatsapp_numbers[number_id].last_code = "246810"
    template = WhatsAppTemplate(id="8000000000000001", waba_id=WABA_ID, **ORDER_UPDATE, status="APPROVED")
    sandbox.state.whatsapp_templates[template.id] = template
    return Number(sandbox, number_id)


@dataclass(frozen=True)
class CloudCall:
    """One WhatsApp Cloud API method of GraphClient, called the way Parley calls it."""

    name: str
    method: str
    path: str
    call: Callable[[GraphClient, Number, str], Awaitable[object]]

    def __str__(self) -> str:
        return self.name

    def run(self, graph: GraphClient, number: Number, token: str = WA_TOKEN) -> Awaitable[object]:
        return self.call(graph, number, token)


CALLS = [
    CloudCall("whatsapp_send", "POST", "/messages", lambda g, n, t: g.whatsapp_send(n.id, t, TEXT)),
    CloudCall(
        "whatsapp_mark_read",
        "POST",
        "/messages",
        lambda g, n, t: g.whatsapp_mark_read(
            n.id, t, {"status": "read", "message_id": "wamid.IN1", "typing_indicator": {"type": "text"}}
        ),
    ),
    CloudCall(
        "whatsapp_phone_numbers",
        "GET",
        "/phone_numbers",
        lambda g, n, t: g.whatsapp_phone_numbers(WABA_ID, t),
    ),
    CloudCall(
        "whatsapp_phone_number_throughput",
        "GET",
        "",
        lambda g, n, t: g.whatsapp_phone_number_throughput(n.id, t),
    ),
    CloudCall(
        "whatsapp_business_portfolio",
        "GET",
        f"/{WABA_ID}",
        lambda g, n, t: g.whatsapp_business_portfolio(WABA_ID, t),
    ),
    CloudCall(
        "whatsapp_subscribe_app",
        "POST",
        f"/{WABA_ID}/subscribed_apps",
        lambda g, n, t: g.whatsapp_subscribe_app(WABA_ID, t),
    ),
    CloudCall(
        "whatsapp_thread_control",
        "POST",
        "/thread_control",
        lambda g, n, t: g.whatsapp_thread_control(n.id, t, {"action": "take", "to": "15557654321"}),
    ),
    CloudCall(
        "whatsapp_request_code",
        "POST",
        "/request_code",
        lambda g, n, t: g.whatsapp_request_code(n.id, t, "SMS"),
    ),
    CloudCall(
        "whatsapp_verify_code",
        "POST",
        "/verify_code",
        lambda g, n, t: g.whatsapp_verify_code(n.id, t, "246810"),
    ),
    CloudCall(
        "whatsapp_register",
        "POST",
        "/register",
        lambda g, n, t: g.whatsapp_register(n.id, t, "246810"),
    ),
    CloudCall(
        "whatsapp_create_template",
        "POST",
        "/message_templates",
        lambda g, n, t: g.whatsapp_create_template(WABA_ID, t, {**ORDER_UPDATE, "language": "pt_BR"}),
    ),
    CloudCall(
        "whatsapp_templates", "GET", "/message_templates", lambda g, n, t: g.whatsapp_templates(WABA_ID, t)
    ),
    CloudCall(
        "whatsapp_delete_template",
        "DELETE",
        "/message_templates",
        lambda g, n, t: g.whatsapp_delete_template(WABA_ID, t, "order_update"),
    ),
    CloudCall(
        "whatsapp_business_profile",
        "GET",
        "/whatsapp_business_profile",
        lambda g, n, t: g.whatsapp_business_profile(n.id, t, "about,email"),
    ),
    CloudCall(
        "whatsapp_update_business_profile",
        "POST",
        "/whatsapp_business_profile",
        lambda g, n, t: g.whatsapp_update_business_profile(n.id, t, {"about": "Open 9-5"}),
    ),
]


def test_every_public_whatsapp_method_is_in_the_contract_table() -> None:
    public = {name for name in vars(GraphClient) if name.startswith("whatsapp_")}
    assert {call.name for call in CALLS} == public


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_every_call_succeeds_and_the_sandbox_records_it(call: CloudCall, number: Number) -> None:
    sandbox = number.sandbox
    sandbox.state.calls.clear()

    result = await call.run(sandbox.graph, number)

    assert result is None or result
    [recorded] = sandbox.state.calls
    assert (recorded.method, recorded.status) == (call.method, 200)
    assert recorded.path.startswith(f"/{GRAPH_VERSION}/") and recorded.path.endswith(call.path)


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_the_throughput_limit_is_rate_limited(call: CloudCall, number: Number) -> None:
    sandbox = number.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=400, code=130429)
    await sandbox.fault(path_contains=call.path, method=call.method, status=429, retry_after_s=120)

    throughput = await fails(call.run(sandbox.graph, number))
    throttled = await fails(call.run(sandbox.graph, number))

    assert (throughput.provider, throughput.code, throughput.kind) == (
        "whatsapp",
        130429,
        ErrorKind.RATE_LIMITED,
    )
    assert (throttled.status, throttled.kind, throttled.retry_after_s) == (429, ErrorKind.RATE_LIMITED, 120.0)
    await call.run(sandbox.graph, number)  # each fault was for one call


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_server_fault_is_retryable(call: CloudCall, number: Number) -> None:
    sandbox = number.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=500, code=131000)
    await sandbox.fault(path_contains=call.path, method=call.method, status=503, plain=True)

    graph_shaped = await fails(call.run(sandbox.graph, number))
    plain = await fails(call.run(sandbox.graph, number))

    assert (graph_shaped.status, graph_shaped.code, graph_shaped.kind) == (500, 131000, ErrorKind.RETRYABLE)
    assert (plain.status, plain.code, plain.kind) == (503, None, ErrorKind.RETRYABLE)


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_request_the_cloud_api_refuses_as_it_is_is_not_retried(
    call: CloudCall, number: Number
) -> None:
    sandbox = number.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=400, code=100)

    error = await fails(call.run(sandbox.graph, number))

    assert (error.provider, error.status, error.code, error.kind) == (
        "whatsapp",
        400,
        100,
        ErrorKind.INVALID_REQUEST,
    )


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_revoked_system_user_token_needs_a_reconnect(call: CloudCall, number: Number) -> None:
    sandbox = number.sandbox
    await sandbox.admin("POST", f"/meta/tokens/{WA_TOKEN}/revoke", {"subcode": 467})

    error = await fails(call.run(sandbox.graph, number))

    assert (error.provider, error.code, error.subcode, error.kind) == (
        "whatsapp",
        190,
        467,
        ErrorKind.REAUTH_REQUIRED,
    )
    assert registry.reauth_reason("whatsapp", error.code, error.subcode) == "token_invalid"
    assert WA_TOKEN not in str(error)


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_token_without_access_to_the_number_is_a_missing_permission(
    call: CloudCall, number: Number
) -> None:
    sandbox = number.sandbox
    await sandbox.whatsapp_number(phone_number_id="2222", waba_id="other-waba", token="other-token")

    error = await fails(call.run(sandbox.graph, number, "other-token"))

    assert (error.status, error.code, error.kind) == (403, 200, ErrorKind.PERMISSION_MISSING)
    assert registry.reauth_reason("whatsapp", error.code, error.subcode) == "permission_revoked"


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_no_answer_at_all_is_retryable(call: CloudCall, number: Number) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        nobody = GraphClient(http, nobody_listening(), "app", "secret", GRAPH_VERSION)

        error = await fails(call.run(nobody, number))

    assert (error.provider, error.status, error.kind) == ("whatsapp", 0, ErrorKind.RETRYABLE)


async def test_outside_the_window_only_a_template_is_sent(number: Number) -> None:
    sandbox = number.sandbox
    sandbox.state.whatsapp_numbers[number.id].enforce_window = True
    template: dict[str, Any] = {
        "to": CUSTOMER,
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}},
    }

    error = await fails(sandbox.graph.whatsapp_send(number.id, WA_TOKEN, TEXT))
    wamid = await sandbox.graph.whatsapp_send(number.id, WA_TOKEN, template)

    assert (error.status, error.code, error.kind) == (400, 131047, ErrorKind.WINDOW_CLOSED)
    assert "24 hours" in error.message  # error_data.details
    assert [(s.status, s.result_id) for s in sandbox.state.sent] == [(400, None), (200, wamid)]


# --- templates, business profile and uploads ------------------------------------------------


async def test_templates_are_created_listed_reviewed_and_deleted(number: Number) -> None:
    sandbox = number.sandbox
    templates = WhatsAppConnector(sandbox.graph)
    header = {
        "type": "HEADER",
        "format": "TEXT",
        "text": "Sale {{1}}",
        "example": {"header_text": ["Spring"]},
    }
    body = {"type": "BODY", "text": "Use {{1}} by {{2}}", "example": {"body_text": [["SPRING10", "Friday"]]}}

    created = await templates.create_template(
        WABA_ID,
        WA_TOKEN,
        name="spring_sale",
        language="en_US",
        category="MARKETING",
        components=[header, body],
        parameter_format=None,
    )

    assert (created.name, created.status, created.category, created.parameter_count) == (
        "spring_sale",
        "PENDING",
        "MARKETING",
        3,
    )
    stored = sandbox.state.whatsapp_templates[created.id]
    assert (stored.waba_id, stored.components) == (WABA_ID, [header, body])
    listed = {t.name: t for t in await templates.templates(WABA_ID, WA_TOKEN)}
    assert {n: (t.status, t.parameter_count) for n, t in listed.items()} == {
        "order_update": ("APPROVED", 2),
        "spring_sale": ("PENDING", 3),
    }

    await sandbox.admin(
        "POST", f"/whatsapp/templates/{created.id}", {"status": "REJECTED", "reason": "TAG_CONTENT_MISMATCH"}
    )
    [rejected] = [t for t in await templates.templates(WABA_ID, WA_TOKEN) if t.id == created.id]
    assert (rejected.status, rejected.rejected_reason) == ("REJECTED", "TAG_CONTENT_MISMATCH")

    duplicate = await fails(
        templates.create_template(
            WABA_ID,
            WA_TOKEN,
            name="spring_sale",
            language="en_US",
            category="MARKETING",
            components=[body],
            parameter_format=None,
        )
    )
    assert (duplicate.code, duplicate.subcode, duplicate.kind) == (100, 2388024, ErrorKind.INVALID_REQUEST)
    unnamed = await fails(
        sandbox.graph.whatsapp_create_template(WABA_ID, WA_TOKEN, {**ORDER_UPDATE, "name": "Bad Name"})
    )
    assert (unnamed.code, unnamed.kind) == (100, ErrorKind.INVALID_REQUEST)

    await templates.delete_template(WABA_ID, WA_TOKEN, "spring_sale", created.id)
    assert [t.name for t in await templates.templates(WABA_ID, WA_TOKEN)] == ["order_update"]
    gone = await fails(templates.delete_template(WABA_ID, WA_TOKEN, "spring_sale", None))
    assert (gone.code, gone.kind) == (100, ErrorKind.INVALID_REQUEST)


async def test_many_templates_are_listed_page_by_page(number: Number) -> None:
    sandbox = number.sandbox
    for n in range(120):
        template = WhatsAppTemplate(
            id=str(9000000000000000 + n), waba_id=WABA_ID, **{**ORDER_UPDATE, "name": f"t_{n:03d}"}
        )
        sandbox.state.whatsapp_templates[template.id] = template

    listed = await sandbox.graph.whatsapp_templates(WABA_ID, WA_TOKEN)

    assert len(listed) == 121
    assert len({t["id"] for t in listed}) == 121


async def test_the_business_profile_is_updated_with_an_uploaded_picture(number: Number) -> None:
    sandbox = number.sandbox
    profiles = WhatsAppConnector(sandbox.graph)
    picture = b"\xff\xd8\xff\xe0" + b"jpeg" * 100

    await profiles.update_business_profile(
        number.id,
        WA_TOKEN,
        {"about": "Succulents, delivered", "websites": ["https://shop.example"], "vertical": "RETAIL"},
        (picture, "image/jpeg"),
    )

    [upload] = sandbox.state.uploads.values()
    assert (upload.data, upload.file_type, upload.file_length) == (picture, "image/jpeg", len(picture))
    assert upload.handle in sandbox.state.upload_handles
    profile = await profiles.business_profile(number.id, WA_TOKEN)
    assert profile["about"] == "Succulents, delivered"
    assert (profile["websites"], profile["vertical"]) == (["https://shop.example"], "RETAIL")
    assert profile["profile_picture_url"].startswith("https://pps.whatsapp.net/")
    session = next(c for c in sandbox.state.calls if c.path.endswith("/uploads"))
    assert session.path == f"/{GRAPH_VERSION}/{sandbox.state.meta_app_id}/uploads"

    error = await fails(
        sandbox.graph.whatsapp_update_business_profile(number.id, WA_TOKEN, {"about": "x" * 140})
    )
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    bad_handle = await fails(
        sandbox.graph.whatsapp_update_business_profile(
            number.id, WA_TOKEN, {"profile_picture_handle": "4::nope"}
        )
    )
    assert bad_handle.code == 100
    wrong_type = await fails(sandbox.graph.start_upload(WA_TOKEN, "p.gif", 6, "image/gif"))
    assert (wrong_type.code, wrong_type.kind) == (100, ErrorKind.INVALID_REQUEST)
    no_token = await fails(sandbox.graph.start_upload("not-a-token", "p.jpg", len(picture), "image/jpeg"))
    session = await sandbox.graph.start_upload(WA_TOKEN, "p.jpg", 4, "image/jpeg")
    too_many = await fails(sandbox.graph.upload_bytes(session, WA_TOKEN, b"12345"))
    assert (too_many.code, too_many.kind) == (100, ErrorKind.INVALID_REQUEST)
    assert (no_token.code, no_token.kind) == (190, ErrorKind.REAUTH_REQUIRED)


async def test_a_numbers_throughput_level_and_coexistence_are_read_from_its_fields(sandbox: Sandbox) -> None:
    standard = await sandbox.whatsapp_number(phone_number_id="900000000000201", registered=True)
    upgraded = await sandbox.whatsapp_number(phone_number_id="900000000000202", throughput_level="HIGH")
    shared = await sandbox.whatsapp_number(phone_number_id="900000000000203", on_biz_app=True)
    sandbox.state.calls.clear()

    assert await sandbox.graph.whatsapp_phone_number_throughput(standard, WA_TOKEN) == ("STANDARD", False)
    assert await sandbox.graph.whatsapp_phone_number_throughput(upgraded, WA_TOKEN) == ("HIGH", False)
    assert await sandbox.graph.whatsapp_phone_number_throughput(shared, WA_TOKEN) == ("STANDARD", True)
    [call, *_] = sandbox.state.calls
    assert (call.method, call.path) == ("GET", f"/{GRAPH_VERSION}/{standard}")


async def test_an_accounts_business_portfolio_is_read_from_its_owner_business_info(sandbox: Sandbox) -> None:
    await sandbox.whatsapp_number(owner_business_id="1234567890123456")
    other = await sandbox.whatsapp_number(phone_number_id="900000000000301", waba_id="900000000000399")
    connector = WhatsAppConnector(sandbox.graph)
    sandbox.state.calls.clear()

    assert await connector.business_portfolio(WABA_ID, WA_TOKEN) == "1234567890123456"
    [call] = sandbox.state.calls
    assert (call.method, call.path) == ("GET", f"/{GRAPH_VERSION}/{WABA_ID}")
    # an account nobody set an owner for has one of its own: its numbers share nothing with others
    assert sandbox.state.whatsapp_numbers[other].waba_id == "900000000000399"
    assert await connector.business_portfolio("900000000000399", WA_TOKEN) == "business-900000000000399"
    # a system user's token that cannot manage the account is refused, as Graph does (code 200)
    await sandbox.whatsapp_number(
        phone_number_id="900000000000401", waba_id="900000000000499", token="wa-other-system-user"
    )
    refused = await fails(sandbox.graph.whatsapp_business_portfolio(WABA_ID, "wa-other-system-user"))
    assert (refused.code, refused.kind) == (200, ErrorKind.PERMISSION_MISSING)
