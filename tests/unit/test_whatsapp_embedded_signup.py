"""WhatsApp Embedded Signup in the provider package: how Meta's answers are read (the code
exchange, ``debug_token``'s granular scopes, the app subscription) and when they confirm what the
browser reported (``signup_refusal``, ``WhatsAppConnector.check_signup``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from parley_providers import ErrorKind, ProviderError
from parley_providers.base import EmbeddedSignup, SignedUpNumber, SignupRefusal
from parley_providers.meta.client import GraphClient, TokenGrants, WhatsAppPhoneNumber
from parley_providers.whatsapp.connect import SIGNUP_SCOPES, WhatsAppConnector, signup_refusal

pytestmark = pytest.mark.unit

WABA, NUMBER = "102290129340398", "106540352242922"
BOTH = ("whatsapp_business_management", "whatsapp_business_messaging", "public_profile")


def grants(
    scopes: tuple[str, ...] = BOTH, targets: dict[str, tuple[str, ...]] | None = None, valid: bool = True
) -> TokenGrants:
    if targets is None:
        targets = {s: (WABA,) for s in SIGNUP_SCOPES}
    return TokenGrants(valid=valid, expires_at=None, scopes=scopes, targets=targets)


def listed(*ids: str) -> list[WhatsAppPhoneNumber]:
    return [WhatsAppPhoneNumber(i, "+1 555-0100", "Acme") for i in ids]


def test_a_valid_token_with_both_permissions_on_the_waba_listing_the_number_confirms_the_signup() -> None:
    assert signup_refusal(grants(), WABA, NUMBER, listed("1065", NUMBER)) is None


@pytest.mark.parametrize(
    ("case", "reason", "missing"),
    [
        (lambda: (grants(valid=False), listed(NUMBER)), "token_invalid", ()),
        (
            lambda: (grants(scopes=("whatsapp_business_management",)), listed(NUMBER)),
            "scopes_missing",
            ("whatsapp_business_messaging",),
        ),
        (
            lambda: (
                grants(
                    targets={"whatsapp_business_management": ("999",), "whatsapp_business_messaging": (WABA,)}
                ),
                listed(NUMBER),
            ),
            "account_not_granted",
            ("whatsapp_business_management",),
        ),
        (
            lambda: (
                grants(
                    targets={"whatsapp_business_management": (WABA,), "whatsapp_business_messaging": ("999",)}
                ),
                listed(NUMBER),
            ),
            "account_not_granted",
            ("whatsapp_business_messaging",),
        ),
        (lambda: (grants(), None), "account_not_granted", ()),
        (lambda: (grants(), listed("1065")), "number_not_in_account", ()),
    ],
)
def test_what_the_token_cannot_confirm_is_refused_with_its_reason(
    case: Callable[[], tuple[TokenGrants, list[WhatsAppPhoneNumber] | None]],
    reason: str,
    missing: tuple[str, ...],
) -> None:
    token_grants, numbers = case()
    refusal = signup_refusal(token_grants, WABA, NUMBER, numbers)
    assert refusal is not None
    assert (refusal.reason, refusal.missing) == (reason, missing)


def test_a_permission_granted_without_named_objects_does_not_refuse_the_waba() -> None:
    assert signup_refusal(grants(targets={}), WABA, NUMBER, listed(NUMBER)) is None


def graph_answering(routes: dict[tuple[str, str], Any], seen: list[httpx.Request]) -> GraphClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path.split("/", 2)[2]  # without the version
        found = routes.get((request.method, path))
        if found is None:
            return httpx.Response(404, json={"error": {"code": 100, "message": "unknown"}})
        status, body = found
        return httpx.Response(status, json=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return GraphClient(http, "https://graph.test", "app-1", "secret-1")


DEBUG_TOKEN = {
    "data": {
        "app_id": "app-1",
        "type": "SYSTEM_USER",
        "expires_at": 0,
        "is_valid": True,
        "scopes": list(BOTH),
        "granular_scopes": [
            {"scope": "whatsapp_business_management", "target_ids": [WABA, "101"]},
            {"scope": "whatsapp_business_messaging", "target_ids": [WABA]},
            {"scope": "public_profile"},
        ],
    }
}


async def test_the_code_is_traded_without_a_redirect_uri_and_the_token_read_whole() -> None:
    seen: list[httpx.Request] = []
    graph = graph_answering(
        {
            ("GET", "oauth/access_token"): (200, {"access_token": "EAAbusiness", "token_type": "bearer"}),
            ("GET", "debug_token"): (200, DEBUG_TOKEN),
        },
        seen,
    )
    assert await graph.exchange_signup_code("AQcode") == "EAAbusiness"
    exchange = seen[0].url.params
    assert dict(exchange) == {"client_id": "app-1", "client_secret": "secret-1", "code": "AQcode"}
    read = await graph.token_grants("EAAbusiness")
    assert read == TokenGrants(
        valid=True,
        expires_at=None,
        scopes=BOTH,
        targets={
            "whatsapp_business_management": (WABA, "101"),
            "whatsapp_business_messaging": (WABA,),
            "public_profile": (),
        },
    )
    assert seen[1].headers["authorization"] == "Bearer app-1|secret-1"
    assert seen[1].url.params["input_token"] == "EAAbusiness"


async def test_a_used_code_is_a_refused_request_and_an_unconfirmed_subscription_an_error() -> None:
    seen: list[httpx.Request] = []
    used = {
        "error": {"code": 100, "error_subcode": 36009, "message": "This authorization code has been used."}
    }
    graph = graph_answering(
        {
            ("GET", "oauth/access_token"): (400, used),
            ("POST", f"{WABA}/subscribed_apps"): (200, {"success": False}),
        },
        seen,
    )
    with pytest.raises(ProviderError) as refused:
        await graph.exchange_signup_code("AQcode")
    assert (refused.value.status, refused.value.subcode) == (400, 36009)
    assert refused.value.kind not in (ErrorKind.RETRYABLE, ErrorKind.RATE_LIMITED)
    with pytest.raises(ProviderError):
        await graph.whatsapp_subscribe_app(WABA, "EAAbusiness")
    assert seen[-1].headers["authorization"] == "Bearer EAAbusiness"


async def test_check_signup_confirms_the_number_with_the_business_token() -> None:
    seen: list[httpx.Request] = []
    numbers = {"data": [{"id": NUMBER, "display_phone_number": "+1 555-0100", "verified_name": "Acme"}]}
    graph = graph_answering(
        {("GET", "debug_token"): (200, DEBUG_TOKEN), ("GET", f"{WABA}/phone_numbers"): (200, numbers)}, seen
    )
    connector = WhatsAppConnector(graph)
    assert isinstance(connector, EmbeddedSignup)
    checked = await connector.check_signup("EAAbusiness", WABA, NUMBER)
    assert checked == SignedUpNumber(WABA, NUMBER, "+1 555-0100", "Acme", None, BOTH)
    assert seen[-1].headers["authorization"] == "Bearer EAAbusiness"
    # another WABA's number: refused, never trusted
    assert isinstance(await connector.check_signup("EAAbusiness", WABA, "1065"), SignupRefusal)


async def test_check_signup_reads_a_waba_the_token_cannot_list_as_not_granted_but_raises_on_an_outage() -> (
    None
):
    seen: list[httpx.Request] = []
    denied = {"error": {"code": 200, "message": "(#200) You do not have permission"}}
    graph = graph_answering(
        {("GET", "debug_token"): (200, DEBUG_TOKEN), ("GET", f"{WABA}/phone_numbers"): (403, denied)}, seen
    )
    refusal = await WhatsAppConnector(graph).check_signup("EAAbusiness", WABA, NUMBER)
    assert isinstance(refusal, SignupRefusal) and refusal.reason == "account_not_granted"

    down = {"error": {"code": 2, "message": "Service temporarily unavailable"}}
    graph = graph_answering(
        {("GET", "debug_token"): (200, DEBUG_TOKEN), ("GET", f"{WABA}/phone_numbers"): (503, down)}, seen
    )
    with pytest.raises(ProviderError):
        await WhatsAppConnector(graph).check_signup("EAAbusiness", WABA, NUMBER)
