"""Add Channel without a browser: the login-state cookie, the provider's redirect back from another
site, a Page another tenant holds, and the sandbox dialog's codes (bound to their redirect_uri, good
once). tests/browser/test_console_connect.py walks the same pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION

from tests.conftest import Infra
from tests.integration.test_console import browser_like, sign_in
from tests.support.onboarding import OTHER_TENANT, Stack, onboarding_stack

pytestmark = pytest.mark.integration

PAGE_ID = "104512345678901"
META_USER = "meta-user-connect"


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    async with onboarding_stack(infra, namespace, store_url, console_enabled=True) as s:
        yield s


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def through_dialog(
    stack: Stack, dialog: str, pages: list[str], permissions: list[str] | None = None
) -> str:
    """Log in to the sandbox's Facebook dialog as the test user, grant ``pages`` and the
    ``permissions`` (every one asked for by default); the URL it sends the browser back to."""
    http = stack.sandbox_http
    assert (await http.get(dialog)).status_code == 200
    chooser = await http.post(dialog, data={"user": META_USER, "step": "login"})
    assert "Choose the Pages" in chooser.text
    scope = params(dialog)["scope"].split(",") if permissions is None else permissions
    back = await http.post(
        dialog, data={"user": META_USER, "step": "grant", "page": pages, "permission": scope}
    )
    assert back.status_code == 302
    return back.headers["location"]


async def test_a_login_starts_with_a_lax_httponly_state_cookie_and_facebooks_dialog(stack: Stack) -> None:
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        started = await client.get("/console/connect/facebook/start")
        assert started.status_code == 303
        dialog = started.headers["location"]
        assert dialog.startswith(f"{stack.sandbox_url}/{DEFAULT_GRAPH_API_VERSION}/dialog/oauth?")
        sent = params(dialog)
        assert sent["redirect_uri"] == "http://127.0.0.1/console/connect/facebook/callback"
        assert sent["client_id"] == stack.settings.meta_app_id
        cookie = started.headers["set-cookie"]
        assert cookie.startswith("parley_console_oauth=")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console/connect" in cookie
        assert sent["state"] not in cookie  # the cookie is sealed: the state is not readable in it


async def test_the_redirect_back_from_another_site_is_asked_again_from_the_console(stack: Stack) -> None:
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        await client.get("/console/connect/x/start")
        # the provider's redirect is a navigation from its site: the Strict session cookie stays behind
        client.cookies.delete("parley_console")
        answer = await client.get("/console/connect/x/callback?code=c0de&state=st")
        assert answer.status_code == 200
        again = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', answer.text)
        assert again is not None
        assert (
            again.group(1)
            .replace("&amp;", "&")
            .endswith("/console/connect/x/callback?code=c0de&state=st&again=1")
        )
        # asked again without a session after all: the sign-in, not a loop
        retried = await client.get("/console/connect/x/callback?code=c0de&state=st&again=1")
        assert retried.status_code == 303 and retried.headers["location"] == "/console/sign-in"


async def test_a_page_another_tenant_holds_is_refused_with_its_reason_code(stack: Stack) -> None:
    await stack.connect_pages(META_USER, [{"id": PAGE_ID, "name": "Acme"}])  # the first tenant's
    async with browser_like(stack) as client:
        await sign_in(client, stack, tenant=OTHER_TENANT)
        dialog = (await client.get("/console/connect/facebook/start")).headers["location"]
        back = await through_dialog(stack, dialog, [PAGE_ID])
        landed = await client.get(back.removeprefix("http://127.0.0.1"))
        assert landed.status_code == 303
        pages = await client.get(landed.headers["location"])
        assert pages.status_code == 200 and f'data-page="{PAGE_ID}"' in pages.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', pages.text)
        action = re.search(r'action="([^"]+/activate)"', pages.text)
        assert csrf is not None and action is not None
        refused = await client.post(action.group(1), data={"csrf_token": csrf.group(1), "page_ids": PAGE_ID})
        assert refused.status_code == 409
        assert "connected to another Parley tenant" in refused.text
        assert "<code>ACCOUNT_CONNECTED_ELSEWHERE</code>" in refused.text
    other = stack.admin(tenant=OTHER_TENANT)
    assert await stack.call("GET", "/channels", headers=other) == []


async def test_a_dialog_code_works_once_and_only_with_its_redirect_uri(stack: Stack) -> None:
    await stack.meta_user(META_USER, [{"id": PAGE_ID, "name": "Acme"}])
    redirect = "http://127.0.0.1/console/connect/facebook/callback"
    dialog = (
        f"{stack.sandbox_url}/{DEFAULT_GRAPH_API_VERSION}/dialog/oauth?client_id={stack.settings.meta_app_id}"
        f"&redirect_uri={redirect}&state=s1&scope=pages_show_list,pages_messaging"
    )
    back = await through_dialog(stack, dialog, [PAGE_ID], ["pages_show_list"])
    assert back.startswith(f"{redirect}?") and params(back)["state"] == "s1"
    code = params(back)["code"]

    async def trade(redirect_uri: str) -> httpx.Response:
        return await stack.sandbox_http.get(
            f"{stack.sandbox_url}/{DEFAULT_GRAPH_API_VERSION}/oauth/access_token",
            params={
                "client_id": stack.settings.meta_app_id,
                "client_secret": stack.settings.meta_app_secret.get_secret_value(),
                "redirect_uri": redirect_uri,
                "code": code,
            },
        )

    elsewhere = await trade("https://attacker.example/callback")
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["error_subcode"] == 36008
    assert (await trade(redirect)).status_code == 200
    again = await trade(redirect)
    assert again.status_code == 400 and again.json()["error"]["error_subcode"] == 36009
    # what the person chose is what Graph answers: the permission they unticked is declined
    user = stack.sandbox.meta_users[META_USER]
    assert "pages_show_list" in user.granted
    assert "pages_messaging" not in user.granted and "pages_messaging" in user.declined
