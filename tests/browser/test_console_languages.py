"""Every screen of the console in German, and in a pseudo-language that shows what skips the catalog.

The walk visits every page and the errors and notices the pages show. In German no page may show
an English message of the catalog. In the pseudo-language every translation is wrapped in ⟦ ⟧:
whatever a page shows outside the brackets must be data (ids, names, numbers, dates), so a string
added to a template or to the console's Python without ``_()`` makes this test fail.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from functools import cache

import httpx
import pytest
from parley_onboarding.console import i18n
from parley_shared.auth import issue_dev_token
from playwright.async_api import BrowserContext, Page, expect

from tests.browser.conftest import Console, dev_sign_in
from tests.support.console_languages import SAME_IN_GERMAN
from tests.support.kafka import eventually
from tests.support.onboarding import ADMIN, AGENT, OPERATOR, TENANT

pytestmark = pytest.mark.browser

PAGE_ID = "104512345678901"
PHONE_ID = "106540352242923"
WABA_ID = "102290129340399"
PHONE = "+14155550124"
SIGNUP_WABA_ID, SIGNUP_PHONE_ID, SIGNUP_REFUSED_PHONE_ID = (
    "102290129340377",
    "106540352242977",
    "106540352242978",
)
PSEUDO = "qps"
SOMEDAY = "someday soon"
AWAY = "We are away until Monday morning."
# names that are the same in every language: the switch's language names, the providers
NAMES = {"English", "Deutsch", "Pseudo", "Facebook", "Instagram", "WhatsApp", "X", "UTC"}

Check = Callable[[Page, str], Awaitable[None]]


async def visible_text(page: Page) -> str:
    """What a reader gets: the title, the rendered text, and the labels only assistive tech reads."""
    return str(
        await page.evaluate(
            """() => [document.title, document.body.innerText,
                ...[...document.querySelectorAll('[aria-label]')].map(e => e.getAttribute('aria-label'))]
                .join('\\n')"""
        )
    )


async def walk(page: Page, console: Console, check: Check) -> None:
    """Every screen of the console, with its errors and notices; ``check`` each one."""
    stack = console.stack
    channels = await stack.connect_pages("meta-user-languages", [{"id": PAGE_ID, "name": "Acme"}])
    channel_id = str(channels[PAGE_ID]["id"])

    await page.goto(console.at("/sign-in"))
    await check(page, "sign-in")
    await page.locator("#token").fill("not-a-token")
    await page.locator("form[action$='/sign-in'] button").click()
    await check(page, "sign-in refused")
    await page.goto(console.at("/sign-in"))
    await page.locator("#user_id").fill(AGENT)
    await page.locator("#tenant_id").fill(TENANT)
    await page.locator("#admin").set_checked(False)
    await page.locator("form[action$='/dev-sign-in'] button").click()
    if console.reports_url:
        # someone who is not an administrator lands on the Reports page: they supervise nothing
        await expect(page.locator(".refusal")).to_be_visible()
        await check(page, "reports refused")
        await page.goto(console.at("/channels"))
    await check(page, "403")
    await page.locator("form.sign-out button").click()
    await check(page, "signed out")

    await page.locator("#user_id").fill(ADMIN)
    await page.locator("#tenant_id").fill(TENANT)
    await page.locator("#admin").set_checked(True)
    await page.locator("form[action$='/dev-sign-in'] button").click()
    await expect(page.locator("table.channels")).to_be_visible()
    await check(page, "channels")
    if console.reports_url:
        await walk_reports(page, console, check)
    await walk_signup(page, console, check)

    await page.goto(console.at(f"/channels/{channel_id}"))
    await check(page, "channel")
    await page.locator("#auto_resolve_new_min").fill("soon")
    await page.locator("form[action$='/settings'] button").click()
    await expect(page.locator("#auto_resolve_new_min-error")).to_be_visible()
    await check(page, "channel settings refused by the form")
    await page.locator("#auto_resolve_new_min").fill("0")
    await page.locator("#display_name").fill("N" * 256)
    await page.locator("form[action$='/settings'] button").click()
    await expect(page.locator("#display_name-error")).to_be_visible()
    await check(page, "channel settings refused by the domain")
    await page.goto(console.at(f"/channels/{channel_id}"))
    await page.locator("#hours_own").set_checked(True)
    await page.locator("#hours_time_zone").fill("Mars/Olympus_Mons")
    await page.locator("#hours_mon").fill("17:00-09:00")
    await page.locator("#hours_tue").fill("09:00-13:00, 12:00-17:00")
    await page.locator("#hours_wed").fill("late")
    await page.locator("#hours_holidays").fill(SOMEDAY)
    await page.locator("form[action$='/settings'] button").click()
    await expect(page.locator("#hours_mon-error")).to_be_visible()
    await check(page, "business hours refused by the form")
    await page.locator("#hours_own").set_checked(False)
    await page.locator("#text_limit").fill("20")
    await page.locator("#away_message").fill(AWAY)
    await page.locator("form[action$='/settings'] button").click()
    await expect(page.locator("#away_message-error")).to_be_visible()
    await check(page, "away message refused by the domain")
    await page.goto(console.at(f"/channels/{channel_id}"))
    await page.locator("#hours_own").set_checked(True)
    await page.locator("#hours_time_zone").fill("Europe/Berlin")
    await page.locator("#hours_thu").fill("08:00-16:00")
    await page.locator("form[action$='/settings'] button").click()
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "business hours saved")
    await page.goto(console.at(f"/channels/{channel_id}"))
    await page.locator("#new_user_id").fill("usr-lena")
    await page.locator("form[action$='/access'] button").click()
    await expect(page.locator("#new_user_role-error")).to_be_visible()
    await check(page, "channel access refused")
    await page.locator("#new_user_role").select_option("supervisor")
    await page.locator("#all_users").set_checked(True)
    await page.locator("form[action$='/access'] button").click()
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "access saved")
    await page.locator("form[action$='/check'] button").click()
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "token checked")

    await page.goto(console.at("/teams"))
    await check(page, "teams, none yet")
    await page.locator("#name").fill("Support")
    await page.locator("form[action$='/teams'] button").click()
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "team created")
    await page.locator("#user_id").fill("usr-maria")
    await page.locator("form[action$='/members'] button").click()
    await expect(page.locator("ul.members")).to_be_visible()
    await check(page, "member added")
    await page.locator("#hours_own").set_checked(True)
    await page.locator("form[action$='/business-hours'] button").click()
    await expect(page.locator("#hours_time_zone-error")).to_be_visible()
    await check(page, "team hours refused")
    await page.locator("#hours_time_zone").fill("Europe/Berlin")
    await page.locator("#hours_fri").fill("08:00-16:00")
    await page.locator("form[action$='/business-hours'] button").click()
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "team hours saved")
    # past the field's maxlength, as a client that ignores it would send: the domain refuses it
    await page.evaluate("document.querySelector('#name').removeAttribute('maxlength')")
    await page.locator("#name").fill("S" * 101)
    await page.locator("form[action$='/name'] button").click()
    await expect(page.locator("#name-error")).to_be_visible()
    await check(page, "team rename refused")
    await page.goto(console.at("/teams"))
    await check(page, "teams")
    await page.goto(console.at(f"/channels/{channel_id}"))
    await check(page, "channel with a team")

    await stack.whatsapp_number(PHONE_ID, WABA_ID, "wa-system-user-languages-token")
    await page.goto(console.at("/whatsapp"))
    await check(page, "whatsapp start")
    await page.locator("form[method='post'][action$='/whatsapp'] button").click()
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "whatsapp started")
    onboarding_id = page.url.split("/whatsapp/")[1].split("?")[0]

    async def step(action: str) -> None:
        await page.locator(f"form[action$='/{action}'] button").click()

    await step("sign-agreement")
    await step("accept-terms")
    await check(page, "whatsapp details")
    await page.locator("#phone_number").fill("0041 not a number")
    await step("submit-details")
    await expect(page.locator("#phone_number-error")).to_be_visible()
    await check(page, "whatsapp details refused")
    await page.locator("#phone_number").fill(PHONE)
    await page.locator("#business_manager_id").fill("1234567890")
    await page.locator("#display_name").fill("Acme Support")
    await step("submit-details")
    await check(page, "whatsapp platform's turn")

    async def operator(action: str, body: dict[str, str] | None = None) -> None:
        await stack.call(
            "POST", f"/whatsapp/onboardings/{onboarding_id}/{action}", body, headers=stack.operator()
        )

    token = "wa-system-user-languages-token"
    await operator(
        "account-created", {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}
    )
    await page.reload()
    await step("approve-business-manager")
    await check(page, "whatsapp meta's turn")
    await operator("business-verified")
    await page.reload()
    await step("request-code")
    await expect(page.locator(".attempts-left")).to_be_visible()
    await check(page, "whatsapp code")
    await page.locator("form[action$='/request-code'] button").click()
    await expect(page.locator("#resend-error")).to_be_visible()
    await check(page, "whatsapp resend too soon")
    sent = str((await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}/last-code"))["code"])
    await page.locator("#code").fill(f"{(int(sent) + 1) % 10**6:06d}")
    await step("verify-code")
    await expect(page.locator("#code-error")).to_be_visible()
    await check(page, "whatsapp wrong code")
    await page.locator("#code").fill(sent)
    await step("verify-code")
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "whatsapp verified")

    await page.goto(console.at("/channels"))
    await check(page, "channels with WhatsApp")
    await page.goto(console.at(f"/channels/{channel_id}"))
    await page.locator("form[action$='/disconnect'] button").click()
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "disconnected")
    await page.goto(console.at("/channels/no-such-channel"))
    await check(page, "no such channel")
    await page.goto(console.at("/nowhere"))
    await check(page, "404")


async def walk_reports(page: Page, console: Console, check: Check) -> None:
    """The Reports page with its charts, its form's refusals and the reports service's."""
    token = issue_dev_token(console.stack.jwt_secret, ADMIN, TENANT, ["admin"])

    async def reports_see_the_channel() -> bool:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(
                f"{console.reports_url}/v1/reports/backlog", headers={"authorization": f"Bearer {token}"}
            )
        return answer.status_code == 200

    await eventually(reports_see_the_channel, timeout=60)
    await page.goto(console.at("/reports"))
    await expect(page.locator("figure.measure").first).to_be_visible()
    await check(page, "reports")
    await page.goto(console.at("/reports?bucket=week"))
    await expect(page.locator("figure.measure").first).to_be_visible()
    await check(page, "reports by week")
    await page.goto(console.at("/reports?from=soon&to=2026-03-27&bucket=hour"))
    await expect(page.locator("#from-error")).to_be_visible()
    await check(page, "reports form refused")
    await page.goto(console.at("/reports?tz=Mars/Olympus_Mons"))
    await expect(page.locator("#tz-error")).to_be_visible()
    await check(page, "reports time zone refused")
    await page.goto(console.at("/reports?channel=no-such-channel"))
    await expect(page.locator(".refusal")).to_be_visible()
    await check(page, "reports of no such channel")


async def walk_signup(page: Page, console: Console, check: Check) -> None:
    """Add Channel with Embedded Signup, a signup refused, one connected, its callback replayed
    (the signup window itself is the provider's page, in its own language)."""
    await page.goto(console.at("/channels/add"))
    await check(page, "add channel")
    callbacks: list[str] = []
    page.on(
        "request",
        lambda r: (
            callbacks.append(r.url) if "/connect/whatsapp/callback" in r.url and "code=" in r.url else None
        ),
    )

    async def sign_up(number_id: str, *, grant_all: bool) -> None:
        await page.goto(console.at("/channels/add"))
        await page.locator("a[href$='/connect/whatsapp/start']").click()
        await page.locator("#waba_id").fill(SIGNUP_WABA_ID)
        await page.locator("#phone_number_id").fill(number_id)
        await page.locator("#verified_name").fill("Acme Support")
        if not grant_all:
            await page.locator("input[value='whatsapp_business_messaging']").uncheck()
        await page.locator("button[value='finish']").click()

    await sign_up(SIGNUP_REFUSED_PHONE_ID, grant_all=False)
    await expect(page.locator(".reason code")).to_have_text("SCOPES_MISSING")
    await check(page, "embedded signup refused")
    await sign_up(SIGNUP_PHONE_ID, grant_all=True)
    await expect(page.locator("p.done")).to_be_visible()
    await check(page, "embedded signup connected")
    await page.goto(callbacks[-1])
    await expect(page.locator(".reason code")).to_have_text("oauth_state_missing")
    await check(page, "embedded signup replayed")


def english_phrases() -> list[re.Pattern[str]]:
    """The English messages German writes its own way, as whole phrases, their values left out.

    Only the listed words and names are the same in German; a German message left in English (or
    missing, so that English stands in) is therefore found on the page.
    """
    english = i18n.catalog("en")
    patterns = []
    for key, text in english.items():
        if key in SAME_IN_GERMAN:
            continue
        for part in re.split(r"%\(\w+\)s|<[^>]+>", text):
            part = part.strip(" .:;,()")
            if len(part) >= 3:
                patterns.append(re.compile(rf"(?<![\w-]){re.escape(part)}(?![\w-])"))
    return patterns


async def test_every_screen_in_german_shows_no_english_message(full_console: Console, page: Page) -> None:
    console = full_console
    await page.set_extra_http_headers({"accept-language": "de-CH,de;q=0.9,en;q=0.5"})
    phrases = english_phrases()
    seen: list[str] = []

    async def check(page: Page, screen: str) -> None:
        await expect(page.locator("html")).to_have_attribute("lang", "de")
        text = await visible_text(page)
        found = sorted({m.group(0) for p in phrases for m in p.finditer(text)})
        assert found == [], f"{screen}: English on the German page: {found}\n{text}"
        seen.append(screen)

    await walk(page, console, check)
    assert len(seen) >= 30
    # the German pages say what the brief calls things
    await page.goto(console.at("/channels"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Kanäle")


@cache
def pseudo_catalog() -> Mapping[str, str]:
    return {key: f"⟦{text}⟧" for key, text in i18n.catalog("en").items()}


async def test_every_screen_shows_only_catalog_text_and_data(
    full_console: Console, page: Page, browser: BrowserContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = full_console
    real = i18n.catalog
    monkeypatch.setattr(
        i18n, "catalog", lambda language: pseudo_catalog() if language == PSEUDO else real(language)
    )
    monkeypatch.setitem(i18n.LANGUAGES, PSEUDO, "Pseudo")
    await browser.add_cookies(
        [{"name": "parley_console_lang", "value": PSEUDO, "url": console.at("/"), "sameSite": "Strict"}]
    )
    data = [
        ADMIN,
        AGENT,
        OPERATOR,
        TENANT,
        PAGE_ID,
        PHONE,
        "Acme Support",
        "Acme",
        "Support",
        "usr-maria",
        "usr-lena",
        "N" * 256,
        "S" * 101,
        SOMEDAY,  # typed into fields (a textarea's text is the page's text too)
        AWAY,
    ]
    seen: list[str] = []

    async def check(page: Page, screen: str) -> None:
        text = await visible_text(page)
        # an error page's reason code (the API's code, a provider error's kind) is data
        rest = re.sub(r"(⟦Reason code:⟧)\s*[\w.]+", r"\1", text)
        # drop the bracketed (translated) parts, innermost first: a translation may hold another
        previous = None
        while rest != previous:
            previous, rest = rest, re.sub(r"⟦[^⟦⟧]*⟧", " ", rest)
        assert "⟦" not in rest and "⟧" not in rest, f"{screen}: unbalanced brackets\n{text}"
        rest = re.sub(r"\b[\w.]+\.(?:com|me)/\S*", " ", rest)  # the accounts' addresses
        for value in sorted(data + list(NAMES), key=len, reverse=True):
            rest = rest.replace(value, " ")
        words = re.findall(r"[^\W\d_]{2,}", rest)
        # ids the service makes (channel, team and onboarding ids) are data too
        words = [w for w in words if not re.fullmatch(r"ch|team|wa|[a-f0-9]+", w)]
        assert words == [], f"{screen}: text that did not go through the catalog: {words}\n{text}"
        seen.append(screen)

    await walk(page, console, check)
    assert len(seen) >= 30
    await expect(page.locator("html")).to_have_attribute("lang", PSEUDO)


async def test_the_switch_changes_the_language_and_remembers_it(console: Console, page: Page) -> None:
    await page.set_extra_http_headers({"accept-language": "de-DE,de;q=0.9"})
    await page.goto(console.at("/sign-in"))
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Anmelden")

    await page.get_by_label("Sprache").select_option("en")
    await page.get_by_role("button", name="Wechseln").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert page.url == console.at("/sign-in")  # back on the page it was switched on

    await dev_sign_in(page, console, ADMIN, TENANT)  # the English labels: the choice is kept
    await expect(page.get_by_role("heading", level=1)).to_have_text("Channels")
    await page.get_by_label("Language").select_option("de")
    await page.get_by_role("button", name="Switch").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Kanäle")
    await expect(page.get_by_role("link", name="Kanäle")).to_have_attribute("aria-current", "page")
