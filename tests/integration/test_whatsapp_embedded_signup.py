"""WhatsApp Embedded Signup end to end: the admin API, the real broker and store, and the provider
sandbox over HTTP playing Meta's code exchange, ``debug_token``, the WABA's numbers,
``subscribed_apps`` and ``register``.

Each signup is made in the sandbox the way Meta's window makes it (``/_sandbox/whatsapp/signups``:
a WABA, a verified number, a business token and a single-use code for it), then posted to
``POST /v1/connections/whatsapp/embedded-signup`` as the browser would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from parley_events import Provider, topics
from parley_onboarding.domain.channels import channel_id_for
from parley_onboarding.service import signup_onboarding_id

from tests.conftest import Infra
from tests.support.onboarding import ADMIN, OTHER_TENANT, TENANT, Stack, of_type, onboarding_stack

pytestmark = pytest.mark.integration

PHONE_ID = "106540352270001"
WABA_ID = "102290129370001"
OTHER_PHONE = "106540352270002"
OTHER_WABA = "102290129370002"
SIGNUP = "/connections/whatsapp/embedded-signup"
CONNECTED = "parley.channel.connected.v1"
SNAPSHOT = "parley.channel.snapshot.v1"
WA_STEP = "parley.whatsapp.step_changed.v1"


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    async with onboarding_stack(infra, namespace, store_url) as s:
        yield s


async def signup(stack: Stack, waba_id: str = WABA_ID, phone_id: str = PHONE_ID, **spec: Any) -> str:
    """A business finishes Meta's window for this WABA and number; the code the browser gets."""
    made = await stack.sandbox_admin(
        "POST",
        "/whatsapp/signups",
        {"waba_id": waba_id, "phone_number_id": phone_id, "display_phone_number": "+1 555-010-0001", **spec},
    )
    return str(made["code"])


async def test_embedded_signup_connects_registers_and_activates_the_number(stack: Stack) -> None:
    code = await signup(stack, owner_business_id="portfolio-acme")
    answer = await stack.call("POST", SIGNUP, {"code": code, "waba_id": WABA_ID, "phone_number_id": PHONE_ID})
    channel_id = channel_id_for(TENANT, Provider.WHATSAPP, PHONE_ID)
    channel = answer["channel"]
    assert (channel["id"], channel["status"], channel["account_id"], channel["business_account_id"]) == (
        channel_id,
        "active",
        PHONE_ID,
        WABA_ID,
    )
    onboarding = answer["onboarding"]
    assert (onboarding["step"], onboarding["channel_id"], onboarding["phone_number"]) == (
        "activated",
        channel_id,
        "+15550100001",
    )
    assert [h["step"] for h in onboarding["history"]] == ["embedded_signup_completed", "activated"]
    assert all(h["by"] == ADMIN for h in onboarding["history"])

    # Meta's side: the code was traded once, the app subscribed to the WABA, the number registered
    [exchange] = stack.recorder.matching("/oauth/access_token")
    assert exchange.method == "GET"
    waba = await stack.sandbox_admin("GET", f"/whatsapp/wabas/{WABA_ID}")
    assert waba["subscribed_apps"] == [stack.settings.meta_app_id]
    number = await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}")
    assert number["registered"] is True
    # the PIN Parley generated is the one Meta registered, and it is kept sealed
    pin = await stack.service.stores.whatsapp_pin(signup_onboarding_id(TENANT, code))
    assert pin is not None and number["pin"] == pin
    # the business token is the channel's credential
    credential = await stack.service.stores.credential(channel_id)
    assert credential is not None
    assert stack.sandbox.tokens[credential.access_token].waba_ids == [WABA_ID]
    assert await stack.waba_holder(WABA_ID) == TENANT

    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    latest = snapshots[-1]
    assert (latest["_key"], latest["status"], latest["business_account_id"]) == (
        channel_id,
        "active",
        WABA_ID,
    )
    assert latest["business_portfolio_id"] == "portfolio-acme"
    events = await stack.events(topics.CHANNEL_EVENTS)
    [connected] = of_type(events, CONNECTED, channel_id=channel_id)
    assert (connected["provider"], connected["account_id"]) == ("whatsapp", PHONE_ID)
    steps = of_type(events, WA_STEP, onboarding_id=onboarding["id"])
    assert sorted(e["step"] for e in steps) == ["activated", "embedded_signup_completed"]

    # the same request again (a browser retry) answers the same channel and trades nothing
    again = await stack.call("POST", SIGNUP, {"code": code, "waba_id": WABA_ID, "phone_number_id": PHONE_ID})
    assert again["channel"]["id"] == channel_id
    assert len(stack.recorder.matching("/oauth/access_token")) == 1


async def test_a_used_or_expired_code_is_refused_and_nothing_is_connected(stack: Stack) -> None:
    code = await signup(stack)
    # the code is single-use: someone traded it already (straight at Meta, not through Parley)
    spent = await stack.sandbox_http.get(
        f"{stack.sandbox_url}/v25.0/oauth/access_token",
        params={
            "client_id": stack.sandbox.meta_app_id,
            "client_secret": stack.sandbox.meta_app_secret,
            "code": code,
        },
    )
    assert spent.status_code == 200, spent.text
    used = await stack.call(
        "POST", SIGNUP, {"code": code, "waba_id": WABA_ID, "phone_number_id": PHONE_ID}, status=422
    )
    assert (used["code"], used["field"], used["provider_subcode"]) == ("SIGNUP_CODE_INVALID", "code", 36009)

    expiring = await signup(stack, expires_in=30)
    stack.sandbox.advance(31)
    expired = await stack.call(
        "POST", SIGNUP, {"code": expiring, "waba_id": WABA_ID, "phone_number_id": PHONE_ID}, status=422
    )
    assert (expired["code"], expired["provider_subcode"]) == ("SIGNUP_CODE_INVALID", 36007)
    assert await stack.call("GET", "/channels") == []
    assert (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}"))["registered"] is False
    assert await stack.waba_holder(WABA_ID) is None


async def test_a_number_of_another_waba_is_refused_before_anything_happens_at_meta(stack: Stack) -> None:
    await signup(stack, OTHER_WABA, OTHER_PHONE)  # someone else's WABA and number
    code = await signup(stack)
    # the browser reports the business's WABA with the other WABA's number
    refused = await stack.call(
        "POST", SIGNUP, {"code": code, "waba_id": WABA_ID, "phone_number_id": OTHER_PHONE}, status=422
    )
    assert (refused["code"], refused["field"], refused["reason"]) == (
        "WABA_NUMBER_MISMATCH",
        "phone_number_id",
        "number_not_in_account",
    )
    # or the other WABA itself, which this business never granted
    code = await signup(stack)
    foreign = await stack.call(
        "POST", SIGNUP, {"code": code, "waba_id": OTHER_WABA, "phone_number_id": OTHER_PHONE}, status=422
    )
    assert (foreign["code"], foreign["field"]) == ("WABA_NOT_ACCESSIBLE", "waba_id")
    assert stack.recorder.matching("/subscribed_apps") == []
    assert stack.recorder.matching("/register") == []
    assert await stack.call("GET", "/channels") == []
    assert await stack.waba_holder(WABA_ID) is None
    assert await stack.waba_holder(OTHER_WABA) is None


async def test_a_signup_without_the_messaging_permission_names_what_is_missing(stack: Stack) -> None:
    code = await signup(stack, scopes=["whatsapp_business_management"])
    missing = await stack.call(
        "POST", SIGNUP, {"code": code, "waba_id": WABA_ID, "phone_number_id": PHONE_ID}, status=422
    )
    assert (missing["code"], missing["missing"]) == ("SCOPES_MISSING", ["whatsapp_business_messaging"])
    assert await stack.call("GET", "/channels") == []


async def test_a_number_connected_by_another_tenant_cannot_be_taken_over(stack: Stack) -> None:
    first = await signup(stack)
    await stack.call("POST", SIGNUP, {"code": first, "waba_id": WABA_ID, "phone_number_id": PHONE_ID})
    registered_pin = (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}"))["pin"]

    # a second business signs the same WABA and number up in another tenant
    second = await signup(stack)
    globex = stack.admin("usr-globex-admin", OTHER_TENANT)
    refused = await stack.call(
        "POST",
        SIGNUP,
        {"code": second, "waba_id": WABA_ID, "phone_number_id": PHONE_ID},
        headers=globex,
        status=409,
    )
    assert (refused["code"], refused["field"]) == ("WABA_CLAIMED_ELSEWHERE", "waba_id")
    assert await stack.call("GET", "/channels", headers=globex) == []
    assert await stack.waba_holder(WABA_ID) == TENANT
    # Meta's number is untouched: still registered with the first tenant's PIN
    assert (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}"))["pin"] == registered_pin
    assert len(stack.recorder.matching(f"/{PHONE_ID}/register")) == 1


async def test_a_meta_outage_mid_signup_leaves_nothing_active_and_the_same_request_resumes(
    stack: Stack,
) -> None:
    code = await signup(stack)
    body = {"code": code, "waba_id": WABA_ID, "phone_number_id": PHONE_ID}
    await stack.sandbox_admin("POST", "/faults", {"path_contains": f"/{PHONE_ID}/register", "status": 500})
    down = await stack.call("POST", SIGNUP, body, status=503)
    assert (down["code"], down["retryable"]) == ("PROVIDER_UNAVAILABLE", True)
    assert await stack.call("GET", "/channels") == []
    channel_id = channel_id_for(TENANT, Provider.WHATSAPP, PHONE_ID)
    assert of_type(await stack.events(topics.CHANNELS), SNAPSHOT) == []

    # the code was spent by the first try: the retry resumes with the token it was traded for
    resumed = await stack.call("POST", SIGNUP, body)
    assert (resumed["channel"]["id"], resumed["channel"]["status"]) == (channel_id, "active")
    assert len(stack.recorder.matching("/oauth/access_token")) == 1
    assert (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}"))["registered"] is True


async def test_only_an_admin_connects_and_the_browser_gets_the_app_and_configuration_ids(
    stack: Stack,
) -> None:
    code = await signup(stack)
    body = {"code": code, "waba_id": WABA_ID, "phone_number_id": PHONE_ID}
    denied = await stack.call("POST", SIGNUP, body, headers=stack.agent(), status=403)
    assert denied["code"] == "ADMIN_REQUIRED"
    assert stack.recorder.matching("/oauth/access_token") == []
    # what the browser launches the window with is no secret: any user of the tenant reads it
    config = await stack.call("GET", SIGNUP, headers=stack.agent())
    assert config == {"app_id": stack.settings.meta_app_id, "config_id": None}
