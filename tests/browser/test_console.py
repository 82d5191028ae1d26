"""The admin console, driven in Chromium: sign-in, the channel list, edit, access, sign-out, 403."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Console, dev_sign_in
from tests.support.onboarding import ADMIN, AGENT, OTHER_TENANT, TENANT

pytestmark = pytest.mark.browser

PAGE_ID = "104512345678901"


async def connected_page(console: Console) -> str:
    """A Facebook Page connected through the sandbox; its channel id."""
    channels = await console.stack.connect_pages("meta-user-console", [{"id": PAGE_ID, "name": "Acme"}])
    return str(channels[PAGE_ID]["id"])


async def test_an_admin_signs_in_renames_a_channel_and_signs_out(console: Console, page: Page) -> None:
    channel_id = await connected_page(console)
    await dev_sign_in(page, console, ADMIN, TENANT)

    # the list shows the channel the API lists, with its provider, account and status
    row = page.locator(f'tr[data-channel="{channel_id}"]')
    await expect(row.get_by_role("rowheader")).to_have_text("Acme")
    await expect(row).to_contain_text(PAGE_ID)
    await expect(row).to_contain_text("Active")

    await row.get_by_role("link", name="Acme").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acme")

    # 256 characters: the domain's refusal is shown by the field, tied to it for screen readers
    name = page.get_by_label("Display name")
    await name.fill("N" * 256)
    await page.get_by_role("button", name="Save settings").click()
    error = page.locator("#display_name-error")
    await expect(error).to_have_text("The display name is at most 255 characters.")
    await expect(name).to_have_attribute("aria-invalid", "true")
    described = await name.get_attribute("aria-describedby") or ""
    assert "display_name-error" in described.split()
    await expect(name).to_have_value("N" * 256)  # what was typed is kept for correction
    assert (await console.stack.call("GET", f"/channels/{channel_id}"))["display_name"] == "Acme"

    await name.fill("Acme Support")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acme Support")
    assert (await console.stack.call("GET", f"/channels/{channel_id}"))["display_name"] == "Acme Support"

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    # the session is gone: a console page sends the browser back to the sign-in
    await page.goto(console.at("/channels"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


async def test_a_role_given_in_the_console_reaches_the_api_and_the_access_view(
    console: Console, page: Page
) -> None:
    channel_id = await connected_page(console)
    await dev_sign_in(page, console, ADMIN, TENANT)

    # a team with a member, made in the console
    await page.get_by_role("link", name="Teams").click()
    await page.get_by_label("Name").fill("Support")
    await page.get_by_role("button", name="Create team").click()
    await expect(page.get_by_role("status")).to_have_text("Team created.")
    await page.get_by_label("User id").fill("usr-maria")
    await page.get_by_role("button", name="Add member").click()
    await expect(page.locator("ul.members")).to_contain_text("usr-maria")
    teams = await console.stack.call("GET", "/teams")
    assert [(t["name"], t["members"]) for t in teams] == [("Support", ["usr-maria"])]

    # the team gets Contributor, a user gets Viewer
    await page.goto(console.at(f"/channels/{channel_id}"))
    await page.get_by_label("Support").select_option("contributor")
    await page.get_by_label("Add a user (id)").fill("usr-otto")
    await page.get_by_label("Their role").select_option("viewer")
    await page.get_by_role("button", name="Save access").click()
    await expect(page.get_by_role("status")).to_have_text("Access saved.")

    access = (await console.stack.call("GET", f"/channels/{channel_id}"))["access"]
    assert access["team_access"] == {teams[0]["id"]: "contributor"}
    assert access["user_access"] == {"usr-otto": "viewer"}

    who = page.locator("table.who")
    await expect(who.get_by_role("row", name="usr-maria")).to_contain_text("Contributor")
    await expect(who.get_by_role("row", name="usr-otto")).to_contain_text("Viewer")

    # then the user's own role changes from Viewer to Supervisor
    await page.get_by_label("usr-otto").select_option("supervisor")
    await page.get_by_role("button", name="Save access").click()
    await expect(page.get_by_role("status")).to_have_text("Access saved.")
    access = (await console.stack.call("GET", f"/channels/{channel_id}"))["access"]
    assert access["user_access"] == {"usr-otto": "supervisor"}
    await expect(who.get_by_role("row", name="usr-otto")).to_contain_text("Supervisor")


async def test_someone_who_is_not_an_admin_gets_the_403_page(console: Console, page: Page) -> None:
    await connected_page(console)
    landed = await dev_sign_in(page, console, AGENT, TENANT, admin=False)
    assert landed.status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Administrators only")
    await expect(page.locator("table.channels")).to_have_count(0)
    await expect(page.get_by_role("navigation", name="Console")).to_have_count(0)
    response = await page.goto(console.at("/teams"))
    assert response is not None and response.status == 403


async def test_an_administrator_of_another_tenant_sees_none_of_it(console: Console, page: Page) -> None:
    channel_id = await connected_page(console)
    team = await console.stack.call("POST", "/teams", {"name": "Acme support"}, status=201)
    # the tenant's own administrator sees both
    await dev_sign_in(page, console, ADMIN, TENANT)
    await expect(page.locator(f'tr[data-channel="{channel_id}"]')).to_have_count(1)
    await page.get_by_role("button", name="Sign out").click()

    landed = await dev_sign_in(page, console, "usr-globex-admin", OTHER_TENANT)
    assert landed.status == 200
    await expect(page.get_by_role("heading", level=1)).to_have_text("Channels")
    await expect(page.locator(f'tr[data-channel="{channel_id}"]')).to_have_count(0)
    assert PAGE_ID not in await page.content()
    for path in (f"/channels/{channel_id}", f"/teams/{team['id']}"):
        response = await page.goto(console.at(path))
        assert response is not None and response.status == 404, path
        assert "Acme" not in await page.content()
    await page.goto(console.at("/teams"))
    assert "Acme support" not in await page.content()


async def test_the_edit_form_works_with_the_keyboard_alone(console: Console, page: Page) -> None:
    channel_id = await connected_page(console)
    await dev_sign_in(page, console, ADMIN, TENANT)
    await page.goto(console.at(f"/channels/{channel_id}"))

    async def focused() -> str:
        return str(await page.evaluate("document.activeElement.id || document.activeElement.textContent"))

    async def tab_to(target: str, limit: int = 40) -> None:
        for _ in range(limit):
            await page.keyboard.press("Tab")
            if await focused() == target:
                return
        raise AssertionError(f"Tab never reached {target}")

    await tab_to("display_name")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("Acme by keyboard")
    await page.keyboard.press("Tab")
    assert await focused() == "auto_ownership"  # the next control in reading order
    await page.keyboard.press("Space")  # unticks auto-ownership
    await tab_to("Save settings")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")

    channel = await console.stack.call("GET", f"/channels/{channel_id}")
    assert channel["display_name"] == "Acme by keyboard"
    assert channel["settings"]["auto_ownership"] is False


PHONE_ID = "106540352242922"
WABA_ID = "102290129340398"


async def test_a_whatsapp_number_is_walked_to_verified_with_a_wrong_code_first(
    console: Console, page: Page
) -> None:
    stack = console.stack
    token = "wa-system-user-console-test-token"
    await stack.whatsapp_number(PHONE_ID, WABA_ID, token)
    await dev_sign_in(page, console, ADMIN, TENANT)

    await page.get_by_role("link", name="WhatsApp").click()
    await page.get_by_role("button", name="Start with a new number").click()
    await expect(page.get_by_role("status")).to_contain_text("WhatsApp onboarding started")
    onboarding_id = page.url.split("/whatsapp/")[1].split("?")[0]
    await expect(page.locator(".next-actor")).to_have_text("You act next.")

    await page.get_by_role("button", name="Sign the agreement").click()
    await page.get_by_role("button", name="Accept the terms").click()
    await page.get_by_label("Phone number").fill("+14155550123")
    await page.get_by_label("Business Manager id").fill("1234567890")
    await page.get_by_label("Display name").fill("Acme Support")
    await page.get_by_role("button", name="Submit the details").click()
    # the platform acts next: the console says so and offers the admin nothing to click
    await expect(page.locator(".next-actor")).to_have_text("The platform operator acts next.")
    await expect(page.get_by_role("button", name="I approved the request")).to_have_count(0)

    async def operator(action: str, body: dict[str, str] | None = None) -> None:
        await stack.call(
            "POST", f"/whatsapp/onboardings/{onboarding_id}/{action}", body, headers=stack.operator()
        )

    await operator(
        "account-created", {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}
    )
    await page.reload()
    await page.get_by_role("button", name="I approved the request").click()
    await expect(page.locator(".next-actor")).to_have_text("Meta acts next; this usually takes 24-48 hours.")
    await operator("business-verified")
    await page.reload()
    await page.get_by_role("button", name="Send the code").click()
    await expect(page.get_by_role("status")).to_have_text("The code is on its way.")
    hint = page.locator("#code-hint")
    await expect(hint).to_contain_text("6 digits")
    await expect(hint).to_contain_text("valid 10 minutes")
    await expect(page.locator(".attempts-left")).to_have_text("5")

    # another code at once: the cooldown refuses it, by the resend button
    await page.get_by_role("button", name="Send a new code").click()
    await expect(page.locator("#resend-error")).to_contain_text("before asking for another code")

    sent = str((await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}/last-code"))["code"])
    wrong = f"{(int(sent) + 1) % 10**6:06d}"
    code = page.get_by_label("Code", exact=True)
    await code.fill(wrong)
    await page.get_by_role("button", name="Verify the code").click()
    await expect(page.locator("#code-error")).to_contain_text("Attempts left on this code: 4")
    await expect(code).to_have_attribute("aria-invalid", "true")
    await expect(code).to_have_value("")  # a code is never written back into the page
    await expect(page.locator(".attempts-left")).to_have_text("4")

    await code.fill(sent)
    await page.get_by_role("button", name="Verify the code").click()
    await expect(page.get_by_role("status")).to_have_text("The number is verified and its channel is active.")
    onboarding = await stack.call("GET", f"/whatsapp/onboardings/{onboarding_id}")
    assert onboarding["step"] == "activated"
    await page.get_by_role("link", name="Acme Support").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acme Support")
    # the list links the number to its WhatsApp address (click to chat)
    await page.get_by_role("link", name="All channels").click()
    row = page.locator(f'tr[data-channel="{onboarding["channel_id"]}"]')
    await expect(row.get_by_role("link", name="wa.me/14155550123")).to_have_attribute(
        "href", "https://wa.me/14155550123"
    )
