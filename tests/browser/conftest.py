"""The console in a real browser: onboarding served on a local port, Debian's Chromium driving it.

Playwright (Python) launches the system Chromium (``scripts/browser.sh install`` puts it at
/usr/bin/chromium; Playwright's own browser downloads are never used) with a fresh profile per
test. Onboarding runs for real against the test's Kafka namespace and store, with the provider
sandbox behind it, as in tests/integration.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from parley_reports.bootstrap import create_reports_app
from parley_reports.settings import ReportsSettings
from parley_sandbox import SandboxState
from playwright.async_api import BrowserContext, Page, async_playwright

from tests.conftest import Infra
from tests.support.onboarding import Stack, onboarding_stack, serve

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Console:
    """Onboarding with its console on ``url``, and the stack behind it."""

    stack: Stack
    url: str
    reports_url: str | None = None

    def at(self, path: str) -> str:
        return f"{self.url}/console{path}"


@contextlib.asynccontextmanager
async def served_console(
    infra: Infra, namespace: str, store_url: str, **overrides: Any
) -> AsyncIterator[Console]:
    """Onboarding with its console (and the development sign-in) served on a free local port;
    ``overrides`` go to ``onboarding_stack`` (its sandbox ``configure``, onboarding's settings)."""
    async with (
        onboarding_stack(
            infra, namespace, store_url, console_enabled=True, console_dev_sign_in=True, **overrides
        ) as stack,
        serve(stack.app) as url,
    ):
        yield Console(stack, url)


@pytest.fixture
async def console(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Console]:
    async with served_console(infra, namespace, store_url) as served:
        yield served


@pytest.fixture
async def full_console(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Console]:
    """The console with every page: the Reports page, with the reports service running for real
    (its consumers on the test's namespace, its API served on a local port, verifying the same
    tokens as onboarding), and WhatsApp Embedded Signup through the sandbox's signup window."""
    jwt_secret = secrets.token_urlsafe(32)
    reports = create_reports_app(
        ReportsSettings(
            kafka_bootstrap_servers=infra.kafka,
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
            # the sandbox's Login dialog opened with this configuration is the signup window
            whatsapp_embedded_signup_config_id=SandboxState.whatsapp_signup_config_id,
        ) as stack,
        serve(stack.app) as url,
    ):
        yield Console(stack, url, reports_url)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh Chromium profile (no cookies, no cache) in headless Chromium."""
    if shutil.which(str(CHROMIUM)) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser.sh install")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def page(browser: BrowserContext) -> Page:
    return browser.pages[0] if browser.pages else await browser.new_page()


async def dev_sign_in(page: Page, console: Console, user: str, tenant: str, *, admin: bool = True) -> Any:
    """Sign in with the development sign-in; the response of the page it lands on."""
    await page.goto(console.at("/sign-in"))
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("Tenant id").fill(tenant)
    await page.get_by_label("Tenant administrator").set_checked(admin)
    async with page.expect_navigation() as landed:
        await page.get_by_role("button", name="Sign in for development").click()
    return await landed.value
