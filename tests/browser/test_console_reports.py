"""The Reports page in Chromium, with the reports service running for real.

Onboarding connects a Page and makes a user its Supervisor; the test publishes two conversations'
public events for that channel; the reports service (its consumers on the test's namespace, its
API on a local port) counts them; the console asks it with the signed-in user's token and draws a
chart per measure. The test reads each chart's table and bars and compares them with what the
reports API answers for the same query.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
import pytest
from parley_onboarding.console.reports import COUNTS, DURATIONS
from parley_shared.auth import issue_dev_token
from playwright.async_api import Page, expect

from tests.browser.conftest import Console, dev_sign_in
from tests.support.kafka import eventually, publish_events
from tests.support.onboarding import AGENT, TENANT
from tests.support.reports import Conversation

pytestmark = pytest.mark.browser

PAGE_ID = "104512345678902"
SUPERVISOR = "usr-sam"
QUERY = {"from": "2026-03-27", "to": "2026-03-27", "bucket": "hour", "tz": "Europe/Paris"}


async def supervised_channel_with_history(console: Console) -> str:
    """A Page channel whose Supervisor is usr-sam, and two conversations' events on it."""
    stack = console.stack
    channels = await stack.connect_pages("meta-user-reports", [{"id": PAGE_ID, "name": "Acme"}])
    channel_id = str(channels[PAGE_ID]["id"])
    await stack.call("PUT", f"/channels/{channel_id}/access", {"user_access": {SUPERVISOR: "supervisor"}})
    a, b = Conversation("conv_a", channel_id, TENANT), Conversation("conv_b", channel_id, TENANT)
    reply = a.reply(5, agent="ana")
    events = [
        a.created(0),  # 09:00 UTC on Friday 27 March 2026: 10:00 in Paris
        a.message(0),
        reply,
        a.echo(reply),
        a.resolved(20, actor="ana"),
        b.created(30),
        b.message(30),
        b.message(80),  # 11:20 in Paris
    ]
    await publish_events(stack.infra.kafka, stack.namespace, *events)
    return channel_id


async def reports_api(console: Console, user: str, params: dict[str, str]) -> httpx.Response:
    token = issue_dev_token(console.stack.jwt_secret, user, TENANT, [])
    assert console.reports_url is not None
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(
            f"{console.reports_url}/v1/reports/activity",
            params=params,
            headers={"authorization": f"Bearer {token}"},
        )


def minutes(value: float) -> str:
    return f"{round(value / 60, 1):g}"


async def test_a_supervisor_sees_a_chart_per_measure_with_the_reports_api_s_numbers(
    full_console: Console, page: Page
) -> None:
    console = full_console
    channel_id = await supervised_channel_with_history(console)
    params = {**QUERY, "channel_id": channel_id}

    async def counted() -> dict[str, Any] | None:
        response = await reports_api(console, SUPERVISOR, params)
        if response.status_code != 200:  # the access has not reached the reports service yet
            return None
        body: dict[str, Any] = response.json()
        t = body["total"]
        done = (t["conversations_created"], t["inbound_messages"], t["replies_human"], t["resolved_by_agent"])
        return body if done == (2, 3, 1, 1) else None

    answer = await eventually(counted, timeout=60)

    # a Supervisor who is not an administrator lands on the Reports page
    landed = await dev_sign_in(page, console, SUPERVISOR, TENANT, admin=False)
    assert landed.status == 200
    await expect(page.get_by_role("heading", level=1)).to_have_text("Reports")
    await expect(page.get_by_role("link", name="Reports")).to_have_attribute("aria-current", "page")
    await expect(page.get_by_role("link", name="Channels")).to_have_count(0)

    # the GET form: the day, hours, the channel, the time zone
    await page.get_by_label("First day").fill(QUERY["from"])
    await page.get_by_label("Last day").fill(QUERY["to"])
    await page.get_by_label("Period", exact=True).select_option("hour")
    await page.get_by_label("Channel", exact=True).select_option(channel_id)
    await page.get_by_label("Time zone").fill(QUERY["tz"])
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(re.compile(r".*[?&]bucket=hour.*"))
    assert f"channel={channel_id}" in page.url and "tz=Europe%2FParis" in page.url
    await expect(page.locator("figure.measure")).to_have_count(len(COUNTS) + len(DURATIONS))
    await expect(page.locator("script")).to_have_count(0)  # drawn on the server, no script

    # every hour of the day in Paris is on the axis; the API's rows are the hours with events
    rows = {datetime.fromisoformat(r["period_start"]).strftime("%Y-%m-%d %H:00"): r for r in answer["rows"]}
    hours = [f"2026-03-27 {h:02d}:00" for h in range(24)]
    assert set(rows) <= set(hours) and "2026-03-27 10:00" in rows

    for key, title in COUNTS:
        figure = page.locator(f'figure[data-measure="{key}"]')
        await expect(figure.get_by_role("img", name=title)).to_be_visible()
        table = [
            (await r.locator("th").inner_text(), await r.locator("td").inner_text())
            for r in await figure.locator("tbody tr").all()
        ]
        expected = [(h, str(rows[h]["activity"][key]) if h in rows else "0") for h in hours]
        assert table == expected, key
        bars = [await b.get_attribute("data-value") for b in await figure.locator("rect.bar").all()]
        assert bars == [value for _, value in expected], key
        await expect(figure.locator(".total")).to_contain_text(str(answer["total"][key]))

    for key, title in DURATIONS:
        figure = page.locator(f'figure[data-measure="{key}"]')
        await expect(figure.get_by_role("img", name=title)).to_be_visible()
        table = {
            await r.locator("th").inner_text(): await r.locator("td").inner_text()
            for r in await figure.locator("tbody tr").all()
        }
        measured = {
            h: minutes(r["activity"][key]["median_s"])
            for h, r in rows.items()
            if r["activity"][key]["median_s"] is not None
        }
        assert {h: v for h, v in table.items() if v != "-"} == measured, key
        points = await figure.locator("circle.point").count()
        assert points == len(measured), key
    # the events' own figures: ana answered after 5 minutes and resolved after 20
    first = page.locator('figure[data-measure="first_response"] tbody tr', has_text="2026-03-27 10:00")
    await expect(first.locator("td")).to_have_text("5")
    resolution = page.locator('figure[data-measure="resolution"] tbody tr', has_text="2026-03-27 10:00")
    await expect(resolution.locator("td")).to_have_text("20")
    await expect(page.locator('dd[data-measure="new"]')).to_have_text("1")  # conv_b is still open


async def test_someone_who_supervises_nothing_gets_the_reports_service_s_refusal_in_words(
    full_console: Console, page: Page
) -> None:
    console = full_console
    await supervised_channel_with_history(console)
    landed = await dev_sign_in(page, console, AGENT, TENANT, admin=False)
    assert landed.status == 403
    await expect(page.locator(".refusal")).to_have_text(
        "Reports are for the Supervisors of a channel and for administrators: you do not supervise "
        "this channel, or any channel."
    )
    await expect(page.locator(".reason code")).to_have_text("SUPERVISOR_REQUIRED")
    await expect(page.locator("figure.measure")).to_have_count(0)
    # the rest of the console stays the administrators'
    response = await page.goto(console.at("/channels"))
    assert response is not None and response.status == 403
