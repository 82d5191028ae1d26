"""Add Channel and reconnect in Chromium, through the sandbox's login pages: Facebook's dialog
(log in as a test user, choose the Instagram accounts and the Pages, check the permissions), X's
authorization page with PKCE, and a reconnect that clears a channel's attention."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Console, dev_sign_in
from tests.support.onboarding import ADMIN, TENANT

pytestmark = pytest.mark.browser

META_USER = "meta-user-add-channel"
ACME_PAGE, ACME_IG = "104511110000001", "17841400000000001"
GLOBEX_PAGE = "104511110000002"
PAGES = [
    {"id": ACME_PAGE, "name": "Acme", "instagram": {"id": ACME_IG, "username": "acme"}},
    {"id": GLOBEX_PAGE, "name": "Globex Support"},
]


async def facebook_login(page: Page, console: Console, start: str) -> None:
    """From a console link to Facebook's dialog in the sandbox, logged in as the test user."""
    await page.get_by_role("link", name=start).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Log in to Facebook")
    assert page.url.startswith(f"{console.stack.sandbox_url}/")
    await page.get_by_label(f"Sandbox User ({META_USER})").check()
    await page.get_by_role("button", name="Log in").click()


def secrets_of(console: Console) -> list[str]:
    """Every token and code the sandbox handed out: none may appear in a console page."""
    sandbox = console.stack.sandbox
    return [t.value for t in sandbox.tokens.values()] + list(sandbox.codes)


async def test_a_facebook_page_is_connected_through_the_login_and_page_choice_to_an_active_channel(
    console: Console, page: Page
) -> None:
    stack = console.stack
    await stack.meta_user(META_USER, PAGES)
    await dev_sign_in(page, console, ADMIN, TENANT)

    await page.get_by_role("link", name="Add Channel").click()
    await facebook_login(page, console, "Continue with Facebook")
    # first time: choose the Instagram accounts, then the Pages, and review the permissions
    await expect(page.get_by_role("group", name="Choose the Instagram accounts")).to_be_visible()
    await expect(page.get_by_label("@acme")).to_be_checked()
    await page.get_by_label("Globex Support").uncheck()
    await expect(page.get_by_label("pages_messaging")).to_be_checked()
    await page.get_by_role("button", name="Save").click()

    # back in the console: the permissions check and the list of granted Pages (Globex was not)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Activate Pages")
    await expect(page.locator("#permissions-ok")).to_have_text("Every permission Pages need was granted.")
    await expect(page.locator("tr[data-page]")).to_have_count(1)
    await expect(page.locator(f'tr[data-page="{GLOBEX_PAGE}"]')).to_have_count(0)
    await page.get_by_label("Acme", exact=True).check()
    await page.get_by_label("@acme").check()
    await page.get_by_role("button", name="Activate").click()

    await expect(page.get_by_role("status")).to_have_text("The Pages you chose are activated.")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Channels")
    channels = {c["account_id"]: c for c in await stack.call("GET", "/channels")}
    assert {k: (c["provider"], c["status"]) for k, c in channels.items()} == {
        ACME_PAGE: ("messenger", "active"),
        ACME_IG: ("instagram", "active"),
    }
    row = page.locator(f'tr[data-channel="{channels[ACME_PAGE]["id"]}"]')
    await expect(row).to_contain_text("Active")
    html = await page.content()
    assert not [s for s in secrets_of(console) if s in html]

    # more Pages: Facebook offers Continue (the same Pages) or Edit settings (choose again)
    await page.get_by_role("link", name="Add Channel").click()
    await facebook_login(page, console, "Connect more Pages")
    await expect(page.get_by_role("button", name="Continue as Sandbox User")).to_be_visible()
    await page.get_by_role("button", name="Edit settings").click()
    await page.get_by_label("Globex Support").check()
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("tr[data-page]")).to_have_count(2)
    await expect(page.locator(f'tr[data-page="{ACME_PAGE}"]')).to_contain_text("(connected)")
    await page.get_by_label("Globex Support").check()
    await page.get_by_role("button", name="Activate").click()
    await expect(page.get_by_role("status")).to_have_text("The Pages you chose are activated.")
    statuses = {c["account_id"]: c["status"] for c in await stack.call("GET", "/channels")}
    assert statuses == {ACME_PAGE: "active", ACME_IG: "active", GLOBEX_PAGE: "active"}


async def test_declining_at_the_login_says_so_and_connects_nothing(console: Console, page: Page) -> None:
    stack = console.stack
    await stack.meta_user(META_USER, PAGES)
    await dev_sign_in(page, console, ADMIN, TENANT)

    await page.get_by_role("link", name="Add Channel").click()
    await facebook_login(page, console, "Continue with Facebook")
    await page.get_by_role("button", name="Cancel").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("Nothing was connected")
    await expect(page.locator(".error-page")).to_have_text(
        "You declined the provider's login, so nothing was connected."
    )
    await expect(page.locator(".reason code")).to_have_text("access_denied")
    assert await stack.call("GET", "/channels") == []

    # the login's state worked once: the same answer again is refused, and says why
    callback = page.url
    await page.goto(callback.replace("error=access_denied", "code=forged"))
    await expect(page.locator(".reason code")).to_have_text("oauth_state_missing")
    assert await stack.call("GET", "/channels") == []


async def test_an_x_account_is_connected_with_pkce_to_an_active_channel(console: Console, page: Page) -> None:
    stack = console.stack
    await stack.sandbox_admin("POST", "/x/users", {"id": "2244994945", "username": "acme_help"})
    await dev_sign_in(page, console, ADMIN, TENANT)

    await page.get_by_role("link", name="Add Channel").click()
    await page.get_by_role("link", name="Continue with X").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Authorize the app to access your X account"
    )
    authorize = parse_qs(urlsplit(page.url).query)
    assert authorize["code_challenge_method"] == ["S256"]
    assert "offline.access" in authorize["scope"][0].split()
    await page.get_by_label("@acme_help").check()
    await page.get_by_role("button", name="Authorize app").click()

    await expect(page.get_by_role("status")).to_have_text(
        "The account is connected and its channel is active."
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text("@acme_help")
    [channel] = await stack.call("GET", "/channels")
    assert (channel["provider"], channel["account_id"], channel["status"]) == ("x", "2244994945", "active")
    # the code was traded with the verifier of the challenge the browser carried, which no page showed
    [token_call] = [r for r in stack.recorder.matching("/2/oauth2/token") if b"authorization_code" in r.body]
    verifier = parse_qs(token_call.body.decode())["code_verifier"][0]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert authorize["code_challenge"] == [digest]
    assert verifier not in await page.content()


async def test_reconnecting_a_channel_that_needs_it_clears_the_attention(
    console: Console, page: Page
) -> None:
    stack = console.stack
    channels = await stack.connect_pages(META_USER, PAGES[:1], instagram=False)
    channel_id = channels[ACME_PAGE]["id"]
    await stack.service.provider_rejected(channel_id, 190, 460)  # Meta: the password changed
    await dev_sign_in(page, console, ADMIN, TENANT)

    row = page.locator(f'tr[data-channel="{channel_id}"]')
    await expect(row.locator(".attention")).to_contain_text("reconnect the account")
    await row.get_by_role("link", name="Acme").click()
    await expect(page.locator("#reconnect .notice")).to_be_visible()
    await facebook_login(page, console, "Reconnect the account")
    await page.get_by_role("button", name="Save").click()
    # the channel's Page is ticked already
    await expect(page.get_by_label("Acme", exact=True)).to_be_checked()
    await page.get_by_role("button", name="Activate").click()

    await expect(page.get_by_role("status")).to_have_text(
        "The account is reconnected and its channel is active again."
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acme")
    await expect(page.locator("#reconnect .notice")).to_have_count(0)
    assert (await stack.call("GET", f"/channels/{channel_id}"))["status"] == "active"
    await page.get_by_role("link", name="All channels").first.click()
    await expect(row.locator(".attention")).to_have_text("Nothing")


async def test_an_instagram_account_connects_with_instagram_login_once_every_permission_is_granted(
    console: Console, page: Page
) -> None:
    stack = console.stack
    await stack.sandbox_admin(
        "POST", "/instagram/accounts", {"id": "17841400000000777", "username": "acme_ig"}
    )
    await dev_sign_in(page, console, ADMIN, TENANT)

    # one permission unticked: Parley says which one is missing, and connects nothing
    await page.get_by_role("link", name="Add Channel").click()
    await page.get_by_role("link", name="Continue with Instagram").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Log in to Instagram")
    await page.get_by_label("@acme_ig").check()
    await page.get_by_label("instagram_business_manage_messages").uncheck()
    await page.get_by_role("button", name="Allow").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Nothing was connected")
    await expect(page.locator(".error-page")).to_contain_text("instagram_business_manage_messages")
    await expect(page.locator(".reason code")).to_have_text("PERMISSIONS_MISSING")
    assert await stack.call("GET", "/channels") == []

    await page.get_by_role("link", name="Try again").click()
    await page.get_by_role("link", name="Continue with Instagram").click()
    await page.get_by_label("@acme_ig").check()
    await page.get_by_role("button", name="Allow").click()
    await expect(page.get_by_role("status")).to_have_text(
        "The account is connected and its channel is active."
    )
    [channel] = await stack.call("GET", "/channels")
    assert (channel["provider"], channel["connect_path"], channel["status"]) == (
        "instagram",
        "instagram_login",
        "active",
    )
    assert not [s for s in secrets_of(console) if s in await page.content()]
