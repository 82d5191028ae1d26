"""The rest of the issue's walk in Chromium: every setting of the Edit form reaches onboarding's API,
business hours and the away message (a channel's and a team's) with their refusals by the field,
and a team given Contributor in the console reaches the channel in routing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from parley_events import Provider
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings
from parley_sandbox import SandboxState
from playwright.async_api import Page, expect

from tests.browser.conftest import Console, dev_sign_in, served_console
from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually, publish_events
from tests.support.onboarding import ADMIN, TENANT, X_REDIRECT, Stack
from tests.support.policy import channel as snapshot_of
from tests.support.policy import inbound

pytestmark = pytest.mark.browser

PAGE_ID = "104512345678901"
HANDLE = "1500000000000000001"
XAA_WEBHOOK = "1900000000000000042"
AWAY = "Thanks for writing. We are back on Monday at nine."


@pytest.fixture
async def x_console(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Console]:
    """The console with the X Activity API configured too, so an X channel may switch APIs."""

    def register(state: SandboxState) -> None:
        state.x_webhooks[XAA_WEBHOOK] = []

    async with served_console(
        infra,
        namespace,
        store_url,
        configure=register,
        x_activity_webhook_id=XAA_WEBHOOK,
        x_bearer_token=SandboxState.x_bearer_token,
    ) as served:
        yield served


async def api_get(console: Console, path: str) -> Any:
    """What onboarding's HTTP API answers on the port the browser uses, to an administrator's
    bearer token (not the service object: what any client of the API would read)."""
    async with httpx.AsyncClient(base_url=console.url, headers=console.stack.admin(), timeout=10) as api:
        response = await api.get(f"/v1{path}")
    assert response.status_code == 200, response.text
    return response.json()


async def connected_x(stack: Stack) -> str:
    code, verifier = await stack.x_code(HANDLE, "acme_jobs")
    body = {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    return str((await stack.call("POST", "/connections/x", body))["id"])


async def test_every_setting_of_the_edit_form_reaches_the_api(x_console: Console, page: Page) -> None:
    console = x_console
    channel_id = await connected_x(console.stack)
    before = await api_get(console, f"/channels/{channel_id}")
    # the defaults the form changes, each to another value: a field the form stopped sending (or
    # the service stopped saving) keeps its old value and its assertion below fails
    assert before["display_name"] != "Acme on X"
    assert before["settings"] == {
        "auto_ownership": True,
        "auto_resolve_new_s": 30 * 86400,
        "auto_resolve_pending_s": 30 * 86400,
        "human_agent_tag": False,
        "text_limit": None,
        "business_hours": None,
        "away_message": None,
        "mark_read_on_open": False,
        "x_api": "activity",
    }

    await dev_sign_in(page, console, ADMIN, TENANT)
    await page.goto(console.at(f"/channels/{channel_id}"))
    await page.get_by_label("Display name").fill("Acme on X")
    await page.get_by_label("Auto-ownership").uncheck()
    await page.get_by_label("Auto-resolve New conversations after (minutes)").fill("45")
    await page.get_by_label("Auto-resolve Pending conversations after (minutes)").fill("90")
    await page.get_by_label("Human agent tag").check()
    await page.get_by_label("Mark read when an agent opens a conversation").check()
    await page.get_by_label("Text limit (characters)").fill("250")
    await page.get_by_label("X delivery API").select_option("account_activity")
    await page.get_by_label("This channel has business hours of its own").check()
    await page.get_by_label("Time zone").fill("Europe/Berlin")
    await page.get_by_label("Monday").fill("09:00-12:00, 13:00-17:30")
    await page.get_by_label("Friday").fill("09:00 - 13:00")
    await page.get_by_label("Saturday").fill("22:00-24:00")  # a night shift: two days
    await page.get_by_label("Sunday").fill("00:00-06:00")
    await page.get_by_label("Holidays").fill("2026-12-25\n2026-12-26")
    await page.get_by_label("Away message").fill(AWAY)
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")

    after = await api_get(console, f"/channels/{channel_id}")
    assert after["display_name"] == "Acme on X"
    assert after["settings"] == {
        "auto_ownership": False,
        "auto_resolve_new_s": 45 * 60,
        "auto_resolve_pending_s": 90 * 60,
        "human_agent_tag": True,
        "text_limit": 250,
        "business_hours": {
            "time_zone": "Europe/Berlin",
            "intervals": [
                {"day": "mon", "start": "09:00", "end": "12:00"},
                {"day": "mon", "start": "13:00", "end": "17:30"},
                {"day": "fri", "start": "09:00", "end": "13:00"},
                {"day": "sat", "start": "22:00", "end": "24:00"},
                {"day": "sun", "start": "00:00", "end": "06:00"},
            ],
            "holidays": ["2026-12-25", "2026-12-26"],
        },
        "away_message": AWAY,
        "mark_read_on_open": True,
        "x_api": "account_activity",
    }
    # the page shows what was saved
    await expect(page.get_by_label("Monday")).to_have_value("09:00-12:00, 13:00-17:30")
    await expect(page.get_by_label("Friday")).to_have_value("09:00-13:00")
    await expect(page.get_by_label("Tuesday")).to_have_value("")
    await expect(page.get_by_label("Holidays")).to_have_value("2026-12-25, 2026-12-26")
    await expect(page.get_by_label("X delivery API")).to_have_value("account_activity")
    await expect(page.locator(".hours-now")).to_contain_text("In force: the channel's own hours.")

    # and back: unticked, emptied and zero remove what they stand for
    await page.get_by_label("Auto-ownership").check()
    await page.get_by_label("Auto-resolve New conversations after (minutes)").fill("0")
    await page.get_by_label("Human agent tag").uncheck()
    await page.get_by_label("Mark read when an agent opens a conversation").uncheck()
    await page.get_by_label("Text limit (characters)").fill("0")
    await page.get_by_label("X delivery API").select_option("activity")
    await page.get_by_label("This channel has business hours of its own").uncheck()
    await page.get_by_label("Away message").fill("")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")
    settings = (await api_get(console, f"/channels/{channel_id}"))["settings"]
    assert settings == {
        "auto_ownership": True,
        "auto_resolve_new_s": None,
        "auto_resolve_pending_s": 90 * 60,
        "human_agent_tag": False,
        "text_limit": None,
        "business_hours": None,
        "away_message": None,
        "mark_read_on_open": False,
        "x_api": "activity",
    }
    await expect(page.locator(".hours-now")).to_contain_text("No hours are in force")


async def test_business_hours_and_the_away_message_are_refused_by_their_fields(
    console: Console, page: Page
) -> None:
    channels = await console.stack.connect_pages("meta-user-walk", [{"id": PAGE_ID, "name": "Acme"}])
    channel_id = str(channels[PAGE_ID]["id"])
    await dev_sign_in(page, console, ADMIN, TENANT)
    await page.goto(console.at(f"/channels/{channel_id}"))

    await page.get_by_label("This channel has business hours of its own").check()
    await page.get_by_label("Time zone").fill("Mars/Olympus_Mons")
    await page.get_by_label("Monday").fill("17:00-09:00")
    await page.get_by_label("Tuesday").fill("09:00-13:00, 12:00-17:00")
    await page.get_by_label("Wednesday").fill("9 to 5")
    await page.get_by_label("Holidays").fill("2026-02-30")
    await page.get_by_role("button", name="Save settings").click()

    async def refused(label: str, text: str) -> None:
        field = page.get_by_label(label, exact=True)
        await expect(field).to_have_attribute("aria-invalid", "true")
        error_id = next(
            i for i in (await field.get_attribute("aria-describedby") or "").split() if i.endswith("-error")
        )
        await expect(page.locator(f"#{error_id}")).to_contain_text(text)

    await refused("Time zone", "This time zone is unknown")
    await refused("Monday", "An opening ends after it starts")
    await refused("Tuesday", "Openings on this day overlap.")
    await refused("Wednesday", "Write each opening as HH:MM-HH:MM")
    await refused("Holidays", "Write each holiday as a date")
    await expect(page.get_by_label("Thursday")).not_to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Monday")).to_have_value("17:00-09:00")  # kept for correction
    assert (await api_get(console, f"/channels/{channel_id}"))["settings"]["business_hours"] is None

    # the away message longer than the channel's own text limit: the service's refusal, by the field
    await page.get_by_label("This channel has business hours of its own").uncheck()
    await page.get_by_label("Text limit (characters)").fill("20")
    await page.get_by_label("Away message").fill(AWAY)
    await page.get_by_role("button", name="Save settings").click()
    await refused("Away message", "The away message is at most 20 characters long here")
    settings = (await api_get(console, f"/channels/{channel_id}"))["settings"]
    assert (settings["away_message"], settings["text_limit"]) == (None, None)


async def test_a_team_s_business_hours_are_set_on_its_page_and_its_channels_follow_them(
    console: Console, page: Page
) -> None:
    channels = await console.stack.connect_pages("meta-user-walk", [{"id": PAGE_ID, "name": "Acme"}])
    channel_id = str(channels[PAGE_ID]["id"])
    await dev_sign_in(page, console, ADMIN, TENANT)
    await page.get_by_role("link", name="Teams").click()
    await page.get_by_label("Name").fill("Support")
    await page.get_by_role("button", name="Create team").click()
    await expect(page.get_by_role("status")).to_have_text("Team created.")

    await page.get_by_label("This team has business hours").check()
    await page.get_by_label("Time zone").fill("America/New_York")
    await page.get_by_label("Thursday").fill("08:00-12:00, 11:00-16:00")
    await page.get_by_role("button", name="Save business hours").click()
    await expect(page.get_by_label("Thursday")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#hours_thu-error")).to_have_text("Openings on this day overlap.")
    [team] = await api_get(console, "/teams")
    assert team["business_hours"] is None

    await page.get_by_label("Thursday").fill("08:00-16:00")
    await page.get_by_label("Holidays").fill("2026-11-26")
    await page.get_by_role("button", name="Save business hours").click()
    await expect(page.get_by_role("status")).to_have_text("Business hours saved.")
    [team] = await api_get(console, "/teams")
    assert team["business_hours"] == {
        "time_zone": "America/New_York",
        "intervals": [{"day": "thu", "start": "08:00", "end": "16:00"}],
        "holidays": ["2026-11-26"],
    }

    # a channel that gives the team a role, with no hours of its own, follows the team's
    await page.goto(console.at(f"/channels/{channel_id}"))
    await expect(page.locator(".hours-now")).to_contain_text("No hours are in force")
    await page.get_by_label("Support").select_option("viewer")
    await page.get_by_role("button", name="Save access").click()
    await expect(page.get_by_role("status")).to_have_text("Access saved.")
    await expect(page.locator(".hours-now")).to_contain_text("In force: a team's hours")

    # unticked: the team has none again
    await page.goto(console.at(f"/teams/{team['id']}"))
    await expect(page.get_by_label("Thursday")).to_have_value("08:00-16:00")
    await page.get_by_label("This team has business hours").uncheck()
    await page.get_by_role("button", name="Save business hours").click()
    await expect(page.get_by_role("status")).to_have_text("Business hours saved.")
    [team] = await api_get(console, "/teams")
    assert team["business_hours"] is None


async def test_a_team_given_contributor_in_the_console_reaches_the_channel_in_routing(
    console: Console, page: Page, infra: Infra, namespace: str, store_url: str
) -> None:
    """Routing runs for real: it learns the channel's access and the team's members from the
    snapshots onboarding publishes on Kafka, and answers the member's token with the role."""
    stack = console.stack
    channels = await stack.connect_pages("meta-user-walk", [{"id": PAGE_ID, "name": "Acme"}])
    channel_id = str(channels[PAGE_ID]["id"])
    member, outsider = stack.agent("usr-maria"), stack.agent("usr-otto")
    settings = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=stack.jwt_secret,
    )
    async with running(create_routing_app(settings)) as routing:
        # a customer writes to the channel: routing opens the conversation
        message = inbound(
            snapshot_of(channel_id, Provider.MESSENGER, PAGE_ID, tenant=TENANT),
            "conv-walk",
            "2400000000000001",
            datetime.now(UTC),
        )
        await publish_events(infra.kafka, namespace, message)

        async def status(headers: dict[str, str]) -> int:
            return (await routing.get("/v1/conversations/conv-walk", headers=headers)).status_code

        async def opened() -> bool:  # an administrator sees every channel of the tenant
            return await status(stack.admin()) == 200

        await eventually(opened, timeout=60)
        assert await status(member) == 404  # no role on the channel yet

        await dev_sign_in(page, console, ADMIN, TENANT)
        await page.get_by_role("link", name="Teams").click()
        await page.get_by_label("Name").fill("Support")
        await page.get_by_role("button", name="Create team").click()
        await page.get_by_label("User id").fill("usr-maria")
        await page.get_by_role("button", name="Add member").click()
        await expect(page.locator("ul.members")).to_contain_text("usr-maria")
        await page.goto(console.at(f"/channels/{channel_id}"))
        await page.get_by_label("Support").select_option("contributor")
        await page.get_by_role("button", name="Save access").click()
        await expect(page.get_by_role("status")).to_have_text("Access saved.")

        async def member_role() -> str | None:
            answer = await routing.get("/v1/conversations/conv-walk", headers=member)
            return str(answer.json()["your_role"]) if answer.status_code == 200 else None

        assert await eventually(member_role, timeout=60) == "contributor"
        listed = await routing.get("/v1/conversations", params={"channel_id": channel_id}, headers=member)
        assert [(c["id"], c["your_role"]) for c in listed.json()["items"]] == [("conv-walk", "contributor")]
        # a Contributor may take the conversation: routing's own rule, from the role it learned
        taken = await routing.post(
            "/v1/conversations/conv-walk/owner",
            json={"owner_id": "usr-maria"},
            headers={**member, "Idempotency-Key": "walk-assign"},
        )
        assert taken.status_code == 200, taken.text
        assert taken.json()["conversation"]["owner_id"] == "usr-maria"

        # a user outside the team gets nothing
        assert await status(outsider) == 404
        assert (await routing.get("/v1/conversations", headers=outsider)).json()["items"] == []
