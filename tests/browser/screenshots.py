"""The console's screenshots under docs/console/ (shown in the README): run by hand after a change.

    PARLEY_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python -m tests.browser.screenshots

Runs onboarding with the sandbox as the browser tests do (a topic namespace and a PostgreSQL
schema of its own, removed after), fills it with a Page, an Instagram profile, a team and access,
and saves each main page at a laptop's size.
"""

from __future__ import annotations

import asyncio
import uuid

from parley_shared.admin import delete_namespace, ensure_topics
from parley_shared.settings import ServiceSettings
from playwright.async_api import async_playwright

from tests.browser.conftest import CHROMIUM, FLAGS, Console
from tests.conftest import LOCAL_POSTGRES_URL, ROOT
from tests.support.onboarding import ADMIN, TENANT, onboarding_stack, serve
from tests.support.postgres import schema_for

OUT = ROOT / "docs" / "console"


async def main() -> None:
    kafka = ServiceSettings().kafka_bootstrap_servers
    namespace = f"shots{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka, namespace, partitions=1)
    from tests.conftest import Infra

    infra = Infra(kafka, "", "env")
    try:
        with schema_for(LOCAL_POSTGRES_URL, f"test_{namespace}") as store_url:
            async with (
                onboarding_stack(
                    infra, namespace, store_url, console_enabled=True, console_dev_sign_in=True
                ) as stack,
                serve(stack.app) as url,
            ):
                await shoot(Console(stack, url))
    finally:
        await delete_namespace(kafka, namespace)


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
    team = await stack.call("POST", "/teams", {"name": "Support"}, status=201)
    for member in ("usr-maria", "usr-otto"):
        await stack.call("PUT", f"/teams/{team['id']}/members/{member}")
    await stack.call(
        "PUT",
        f"/channels/{page_channel}/access",
        {"user_access": {"usr-lena": "supervisor"}, "team_access": {team["id"]: "contributor"}},
    )
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(console.at("/sign-in"))
        await page.screenshot(path=str(OUT / "sign-in.png"), full_page=True)
        await page.get_by_label("User id").fill(ADMIN)
        await page.get_by_label("Tenant id").fill(TENANT)
        await page.get_by_role("button", name="Sign in for development").click()
        await page.wait_for_url("**/console/channels")
        await page.screenshot(path=str(OUT / "channels.png"), full_page=True)
        await page.goto(console.at(f"/channels/{page_channel}"))
        await page.get_by_label("Display name").fill("N" * 256)
        await page.get_by_role("button", name="Save settings").click()
        await page.locator("#display_name-error").wait_for()
        await page.screenshot(path=str(OUT / "channel.png"), full_page=True)
        await page.goto(console.at(f"/teams/{team['id']}"))
        await page.screenshot(path=str(OUT / "team.png"), full_page=True)
        await page.goto(console.at("/whatsapp"))
        await page.get_by_role("button", name="Start with a new number").click()
        await page.get_by_role("button", name="Sign the agreement").click()
        await page.get_by_role("button", name="Accept the terms").click()
        await page.screenshot(path=str(OUT / "whatsapp.png"), full_page=True)
        await browser.close()
    print(f"wrote {sorted(p.name for p in OUT.glob('*.png'))} to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
