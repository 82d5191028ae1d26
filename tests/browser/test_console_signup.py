"""WhatsApp Embedded Signup in Chromium: Add Channel > WhatsApp > the sandbox's signup window and
back to the console's callback, which calls the API's service method with the window's code and
ids; a permission left out is refused in words, and a replayed callback connects nothing new."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, Request, expect

from tests.browser.conftest import Console, dev_sign_in
from tests.support.onboarding import ADMIN, TENANT

pytestmark = pytest.mark.browser

WABA_ID = "102290129340311"
PHONE_ID = "106540352242911"
REFUSED_PHONE_ID = "106540352242912"


async def open_signup_window(page: Page, console: Console) -> None:
    await page.goto(console.at("/channels/add"))
    await page.get_by_role("link", name="Connect with Embedded Signup").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Connect your business to WhatsApp")
    assert page.url.startswith(f"{console.stack.sandbox_url}/")


async def test_a_number_connected_through_embedded_signup_is_an_active_channel_once(
    full_console: Console, page: Page
) -> None:
    console, stack = full_console, full_console.stack
    callbacks: list[str] = []

    def remember(request: Request) -> None:
        if "/console/connect/whatsapp/callback" in request.url and "again=" not in request.url:
            callbacks.append(request.url)

    page.on("request", remember)
    await dev_sign_in(page, console, ADMIN, TENANT)

    # the business leaves out a permission: Meta's token cannot message, and nothing is connected
    await open_signup_window(page, console)
    await page.get_by_label("WhatsApp Business Account id").fill(WABA_ID)
    await page.get_by_label("Phone number id").fill(REFUSED_PHONE_ID)
    await page.get_by_label("whatsapp_business_messaging").uncheck()
    await page.get_by_role("button", name="Finish").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Nothing was connected")
    await expect(page.locator(".error-page")).to_have_text(
        "Grant these permissions in the signup: whatsapp_business_messaging."
    )
    await expect(page.locator(".reason code")).to_have_text("SCOPES_MISSING")
    assert await stack.call("GET", "/channels") == []

    # again, granting both
    await open_signup_window(page, console)
    await page.get_by_label("WhatsApp Business Account id").fill(WABA_ID)
    await page.get_by_label("Phone number id").fill(PHONE_ID)
    await page.get_by_label("Phone number", exact=True).fill("+1 415 555 0199")
    await page.get_by_label("Display name").fill("Acme Support")
    await page.get_by_role("button", name="Finish").click()

    await expect(page.get_by_role("status")).to_have_text(
        "The account is connected and its channel is active."
    )
    [channel] = await stack.call("GET", "/channels")
    assert (channel["provider"], channel["account_id"], channel["status"]) == ("whatsapp", PHONE_ID, "active")
    assert channel["business_account_id"] == WABA_ID
    assert page.url.startswith(console.at(f"/channels/{channel['id']}"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acme Support")
    # Parley's side of the signup happened at the provider: the app subscribed, the number registered
    waba = await stack.sandbox_admin("GET", f"/whatsapp/wabas/{WABA_ID}")
    assert waba["subscribed_apps"] == [stack.sandbox.meta_app_id]
    assert stack.recorder.matching(f"/{PHONE_ID}/register")
    # neither the code nor the business token is written into a page
    html = await page.content()
    handed_out = [t.value for t in stack.sandbox.tokens.values()] + list(stack.sandbox.codes)
    assert not [s for s in handed_out if s in html]

    # the window's answer again: its state worked once, so nothing new is connected
    assert len(callbacks) == 2
    registered = len(stack.recorder.matching("/register"))
    await page.goto(callbacks[-1])
    await expect(page.get_by_role("heading", level=1)).to_have_text("Nothing was connected")
    await expect(page.locator(".reason code")).to_have_text("oauth_state_missing")
    assert [c["id"] for c in await stack.call("GET", "/channels")] == [channel["id"]]
    assert len(stack.recorder.matching("/register")) == registered


async def test_cancelling_the_signup_window_connects_nothing(full_console: Console, page: Page) -> None:
    console = full_console
    await dev_sign_in(page, console, ADMIN, TENANT)
    await open_signup_window(page, console)
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator(".reason code")).to_have_text("access_denied")
    assert await console.stack.call("GET", "/channels") == []
