"""The console's screenshots under docs/console/ (shown in the README): run by hand after a change.

    PARLEY_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python -m tests.browser.screenshots

Runs onboarding with the sandbox as the browser tests do (a topic namespace and a PostgreSQL
schema of its own, removed after), fills it with two Pages (one restricted from sending), an
Instagram profile, an X handle (whose token Parley renews), teams with business hours and access,
a channel's business hours and away message, walks a WhatsApp number to its code entry, and saves
each main page at a laptop's size (Add Channel, and the channel list in German too). The reports
service runs beside it for the Reports page, fed with five days of public conversation events.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from parley_events import ChannelSendingRestricted, Provider
from parley_reports.bootstrap import create_reports_app
from parley_reports.settings import ReportsSettings
from parley_shared.admin import delete_namespace, ensure_topics
from parley_shared.settings import ServiceSettings
from playwright.async_api import async_playwright

from tests.browser.conftest import CHROMIUM, FLAGS, Console
from tests.conftest import LOCAL_POSTGRES_URL, ROOT
from tests.support.kafka import eventually, publish_events
from tests.support.onboarding import ADMIN, TENANT, X_REDIRECT, onboarding_stack, serve
from tests.support.postgres import schema_for
from tests.support.reports import Conversation

OUT = ROOT / "docs" / "console"
PHONE_ID = "106540352242922"
WABA_ID = "102290129340398"
WA_TOKEN = "wa-system-user-screenshots-token"


async def main() -> None:
    kafka = ServiceSettings().kafka_bootstrap_servers
    namespace = f"shots{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka, namespace, partitions=1)
    from tests.conftest import Infra

    infra = Infra(kafka, "", "env")
    try:
        with schema_for(LOCAL_POSTGRES_URL, f"test_{namespace}") as store_url:
            jwt_secret = secrets.token_urlsafe(32)
            reports = create_reports_app(
                ReportsSettings(
                    kafka_bootstrap_servers=kafka,
                    store_url=store_url,
                    topic_namespace=namespace,
                    consumer_group_prefix=namespace,
                    jwt_hs256_secret=jwt_secret,
                )
            )
            async with (
                reports.router.lifespan_context(reports),
                serve(reports) as reports_url,
                onboarding_stack(
                    infra,
                    namespace,
                    store_url,
                    jwt_secret=jwt_secret,
                    console_enabled=True,
                    console_dev_sign_in=True,
                    console_reports_url=reports_url,
                ) as stack,
                serve(stack.app) as url,
            ):
                await shoot(Console(stack, url, reports_url))
    finally:
        await delete_namespace(kafka, namespace)


REPORT_DAYS = ("2026-03-23", "2026-03-27")


async def conversations(console: Console, channel_id: str) -> None:
    """Five days of conversations on a channel, answered and resolved, until reports has them all."""
    stack, created = console.stack, 0
    events: list[Any] = []
    for day, count in enumerate((3, 5, 2, 6, 4)):
        for n in range(count):
            conversation = Conversation(f"conv_{day}_{n}", channel_id, TENANT)
            start = (day - 4) * 1440 + n * 37  # minutes from Friday 27 March 2026, 09:00 UTC
            reply = conversation.reply(start + 2 + 3 * n + day, agent="ana")
            events += [
                conversation.created(start),
                conversation.message(start),
                reply,
                conversation.echo(reply),
            ]
            if n % 2 == 0:
                events.append(conversation.resolved(start + 30 + 10 * n, actor="ana"))
            created += 1
    await publish_events(stack.infra.kafka, stack.namespace, *events)
    token = stack.admin()

    async def all_in() -> bool:
        assert console.reports_url is not None
        params = {"from": REPORT_DAYS[0], "to": REPORT_DAYS[1], "channel_id": channel_id}
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(
                f"{console.reports_url}/v1/reports/activity", params=params, headers=token
            )
        return answer.status_code == 200 and answer.json()["total"]["conversations_created"] == created

    await eventually(all_in, timeout=60)


async def shoot(console: Console) -> None:
    stack = console.stack
    pages = [
        {
            "id": "104512345678901",
            "name": "Acme",
            "instagram": {"id": "17841400000000001", "username": "acme"},
        },
        {"id": "104512345678902", "name": "Acme Outlet"},
    ]
    channels = await stack.connect_pages("meta-user-shots", pages)
    page_channel = channels["104512345678901"]["id"]
    outlet = channels["104512345678902"]["id"]
    code, verifier = await stack.x_code("1500000000000000001", "acme_jobs")
    await stack.call(
        "POST", "/connections/x", {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    )
    # what policy announces when Meta refuses a send with 10/1893063, recorded as onboarding does
    await stack.service.on_sending_restricted(
        ChannelSendingRestricted(
            event_id="rpl_shots:restricted",
            channel_id=outlet,
            tenant_id=TENANT,
            provider=Provider.MESSENGER,
            occurred_at=datetime.now(UTC) - timedelta(hours=2),
            provider_code=10,
            provider_subcode=1893063,
        )
    )
    team = await stack.call("POST", "/teams", {"name": "Support"}, status=201)
    for member in ("usr-maria", "usr-otto"):
        await stack.call("PUT", f"/teams/{team['id']}/members/{member}")
    await stack.call("POST", "/teams", {"name": "Sales"}, status=201)
    await stack.call(
        "PUT",
        f"/channels/{page_channel}/access",
        {"user_access": {"usr-lena": "supervisor"}, "team_access": {team["id"]: "contributor"}},
    )
    office = {
        "time_zone": "Europe/Berlin",
        "intervals": [
            {"day": day, "start": start, "end": end}
            for day in ("mon", "tue", "wed", "thu", "fri")
            for start, end in (("09:00", "12:30"), ("13:30", "18:00"))
        ],
        "holidays": ["2026-12-24", "2026-12-25", "2026-12-26"],
    }
    await stack.call("PUT", f"/teams/{team['id']}/business-hours", {"business_hours": office})
    await stack.call(
        "PATCH",
        f"/channels/{page_channel}/settings",
        {
            "business_hours": {
                **office,
                "intervals": [*office["intervals"], {"day": "sat", "start": "10:00", "end": "14:00"}],
            },
            "away_message": "Thanks for your message. We answer Monday to Saturday from 9:00 (Berlin time).",
        },
    )
    await stack.whatsapp_number(PHONE_ID, WABA_ID, WA_TOKEN)
    await conversations(console, page_channel)
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800}, locale="en-GB")

        async def shot(name: str) -> None:
            await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)

        await page.goto(console.at("/sign-in"))
        await shot("sign-in")
        await page.get_by_label("User id").fill(ADMIN)
        await page.get_by_label("Tenant id").fill(TENANT)
        await page.get_by_role("button", name="Sign in for development").click()
        await page.wait_for_url("**/console/channels")
        await shot("channels")
        await page.get_by_role("link", name="Add Channel").click()
        await shot("add-channel")
        await page.goto(console.at(f"/channels/{page_channel}"))
        await page.get_by_label("Display name").fill("N" * 256)
        await page.get_by_role("button", name="Save settings").click()
        await page.locator("#display_name-error").wait_for()
        await shot("channel")
        await page.goto(console.at("/teams"))
        await shot("teams")
        await page.goto(console.at(f"/teams/{team['id']}"))
        await shot("team")

        # a WhatsApp number at the code entry, one wrong code in
        await page.goto(console.at("/whatsapp"))
        await page.get_by_role("button", name="Start with a new number").click()
        onboarding_id = page.url.split("/whatsapp/")[1].split("?")[0]
        await page.get_by_role("button", name="Sign the agreement").click()
        await page.get_by_role("button", name="Accept the terms").click()
        await page.get_by_label("Phone number").fill("+14155550123")
        await page.get_by_label("Business Manager id").fill("1234567890")
        await page.get_by_label("Display name").fill("Acme Support")
        await page.get_by_role("button", name="Submit the details").click()
        operator = f"/whatsapp/onboardings/{onboarding_id}"
        created = {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": WA_TOKEN}
        await stack.call("POST", f"{operator}/account-created", created, headers=stack.operator())
        await page.reload()
        await page.get_by_role("button", name="I approved the request").click()
        await stack.call("POST", f"{operator}/business-verified", headers=stack.operator())
        await page.reload()
        await page.get_by_role("button", name="Send the code").click()
        sent = str((await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}/last-code"))["code"])
        await page.get_by_label("Code", exact=True).fill(f"{(int(sent) + 1) % 10**6:06d}")
        await page.get_by_role("button", name="Verify the code").click()
        await page.locator("#code-error").wait_for()
        await shot("whatsapp")

        # the Supervisors' reports: five days by day, a chart per measure
        await page.goto(console.at(f"/reports?from={REPORT_DAYS[0]}&to={REPORT_DAYS[1]}&tz=Europe/Berlin"))
        await page.locator("figure.measure").first.wait_for()
        await shot("reports")

        # the same list in German, as a browser asking for German gets it
        await page.get_by_label("Language").select_option("de")
        await page.get_by_role("button", name="Switch").click()
        await page.goto(console.at("/channels"))
        await shot("channels-de")
        await browser.close()
    print(f"wrote {sorted(p.name for p in OUT.glob('*.png'))} to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
