"""The console's HTTP behaviour without a browser: settings that turn it on, cookies, CSRF, tenants.

tests/browser drives the pages in Chromium; these check what a browser hides (cookie attributes,
status codes, refused forms) against onboarding with the real Kafka, store and sandbox.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from parley_events import ChannelSendingRestricted, Provider

from tests.conftest import Infra
from tests.support.kafka import eventually, publish_events
from tests.support.onboarding import (
    ADMIN,
    OTHER_TENANT,
    REDIRECT,
    TENANT,
    X_REDIRECT,
    Stack,
    onboarding_stack,
)

pytestmark = pytest.mark.integration

PAGE_ID = "104512345678901"


def browser_like(stack: Stack, host: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.app), base_url=f"http://{host}")


async def csrf_of(client: httpx.AsyncClient, path: str = "/console/sign-in") -> str:
    page = await client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, stack: Stack, user: str = ADMIN, tenant: str = TENANT) -> str:
    """Sign in by pasting a token, as in production; the token."""
    token = stack.admin(user, tenant)["authorization"].removeprefix("Bearer ")
    answer = await client.post(
        "/console/sign-in", data={"csrf_token": await csrf_of(client), "token": f"Bearer {token}"}
    )
    assert answer.status_code == 303, answer.text
    return token


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    async with onboarding_stack(infra, namespace, store_url, console_enabled=True) as s:
        yield s


async def channel_of(stack: Stack) -> dict[str, Any]:
    channels = await stack.connect_pages("meta-user-console", [{"id": PAGE_ID, "name": "Acme"}])
    return channels[PAGE_ID]


async def test_the_console_is_not_served_unless_enabled(infra: Infra, namespace: str, store_url: str) -> None:
    async with onboarding_stack(infra, namespace, store_url) as stack, browser_like(stack) as client:
        assert (await client.get("/console/sign-in")).status_code == 404
        assert (await client.get("/v1/channels", headers=stack.admin())).status_code == 200


async def test_a_pasted_token_signs_in_with_a_strict_httponly_cookie_and_is_never_rendered(
    stack: Stack,
) -> None:
    async with browser_like(stack, "console.parley.test") as client:
        # on a real host name the cookies are Secure; httpx keeps them only over https
        page = await client.get("/console/sign-in")
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    async with browser_like(stack) as client:
        token = await sign_in(client, stack)
        cookies = [c for c in client.cookies.jar if c.name == "parley_console"]
        assert [c.value for c in cookies] == [token]
        assert cookies[0].has_nonstandard_attr("HttpOnly")
        channels = await client.get("/console/channels")
        assert channels.status_code == 200
        assert "Signed in as" in channels.text and token not in channels.text
        assert "Development sign-in" not in (await client.get("/console/sign-in")).text


async def test_a_token_that_does_not_verify_is_refused_by_its_field(stack: Stack) -> None:
    async with browser_like(stack) as client:
        answer = await client.post(
            "/console/sign-in", data={"csrf_token": await csrf_of(client), "token": "not-a-token"}
        )
        assert answer.status_code == 400
        assert 'id="token-error"' in answer.text and "token-error" in answer.text.split('id="token"')[1]
        assert (await client.get("/console/channels")).status_code == 303


async def test_the_development_sign_in_is_absent_unless_turned_on(stack: Stack) -> None:
    async with browser_like(stack) as client:
        csrf = await csrf_of(client)
        answer = await client.post(
            "/console/dev-sign-in",
            data={"csrf_token": csrf, "user_id": ADMIN, "tenant_id": TENANT, "admin": "on"},
        )
        assert answer.status_code == 404
        assert "parley_console" not in {c.name for c in client.cookies.jar}


async def test_a_form_without_the_csrf_token_changes_nothing(stack: Stack) -> None:
    channel = await channel_of(stack)
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        for csrf in ({}, {"csrf_token": "x" * 43}):
            answer = await client.post(
                f"/console/channels/{channel['id']}/settings", data={"display_name": "Forged", **csrf}
            )
            assert answer.status_code == 403
            assert "The form expired" in answer.text
    assert (await stack.call("GET", f"/channels/{channel['id']}"))["display_name"] == "Acme"


async def test_another_tenants_admin_sees_none_of_the_channels(stack: Stack) -> None:
    channel = await channel_of(stack)
    async with browser_like(stack) as client:
        await sign_in(client, stack, "usr-globex-admin", OTHER_TENANT)
        assert PAGE_ID not in (await client.get("/console/channels")).text
        page = await client.get(f"/console/channels/{channel['id']}")
        assert page.status_code == 404
        answer = await client.post(
            f"/console/channels/{channel['id']}/disconnect",
            data={"csrf_token": client.cookies.get("parley_console_csrf", path="/console")},
        )
        assert answer.status_code == 404
        unknown = await client.post(
            "/console/no-such-form",
            data={"csrf_token": client.cookies.get("parley_console_csrf", path="/console")},
        )
        assert unknown.status_code == 404
        assert "There is no such page in the console." in unknown.text
    assert (await stack.call("GET", f"/channels/{channel['id']}"))["status"] == "active"


async def test_disconnect_and_settings_in_minutes(stack: Stack) -> None:
    channel = await channel_of(stack)
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        csrf = client.cookies.get("parley_console_csrf", path="/console")
        answer = await client.post(
            f"/console/channels/{channel['id']}/settings",
            data={
                "csrf_token": csrf,
                "display_name": "Acme",
                "auto_ownership": "on",
                "auto_resolve_new_min": "90",
                "auto_resolve_pending_min": "0",
                "text_limit": "0",
            },
        )
        assert answer.status_code == 303
        settings = (await stack.call("GET", f"/channels/{channel['id']}"))["settings"]
        assert (settings["auto_resolve_new_s"], settings["auto_resolve_pending_s"]) == (5400, None)

        answer = await client.post(f"/console/channels/{channel['id']}/disconnect", data={"csrf_token": csrf})
        assert answer.status_code == 303
        page = await client.get(answer.headers["location"])
        assert "The channel is disconnected." in page.text and "Save settings" not in page.text
    assert (await stack.call("GET", f"/channels/{channel['id']}"))["status"] == "disconnected"


async def test_a_token_check_from_the_console_marks_a_refused_token_for_a_reconnect(stack: Stack) -> None:
    channel = await channel_of(stack)
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        csrf = client.cookies.get("parley_console_csrf", path="/console")
        check = f"/console/channels/{channel['id']}/check"
        page = await client.get((await client.post(check, data={"csrf_token": csrf})).headers["location"])
        assert "The provider accepted the token." in page.text

        await stack.sandbox_admin("POST", "/meta/users/meta-user-console/deauthorize")
        page = await client.get((await client.post(check, data={"csrf_token": csrf})).headers["location"])
        assert "The provider refused the token: reconnect the account." in page.text
        listed = await client.get("/console/channels")
        assert "Reconnect needed" in listed.text and "reconnect the account" in listed.text
    assert (await stack.call("GET", f"/channels/{channel['id']}"))["status"] == "reauth_required"


async def test_a_team_renamed_and_deleted_in_the_console_loses_its_grants(stack: Stack) -> None:
    channel = await channel_of(stack)
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        csrf = client.cookies.get("parley_console_csrf", path="/console")
        created = await client.post("/console/teams", data={"csrf_token": csrf, "name": "Support"})
        team_path = created.headers["location"].split("?")[0]
        team_id = team_path.rsplit("/", 1)[1]
        await client.post(
            f"/console/channels/{channel['id']}/access",
            data={"csrf_token": csrf, f"team:{team_id}": "supervisor"},
        )
        refused = await client.post(f"{team_path}/name", data={"csrf_token": csrf, "name": ""})
        assert refused.status_code == 422 and 'id="name-error"' in refused.text
        renamed = await client.post(f"{team_path}/name", data={"csrf_token": csrf, "name": "Care"})
        assert renamed.status_code == 303
        assert [t["name"] for t in await stack.call("GET", "/teams")] == ["Care"]
        assert (await stack.call("GET", f"/channels/{channel['id']}"))["access"]["team_access"] == {
            team_id: "supervisor"
        }

        deleted = await client.post(f"{team_path}/delete", data={"csrf_token": csrf})
        assert deleted.headers["location"] == "/console/teams?done=deleted"
    assert await stack.call("GET", "/teams") == []
    assert (await stack.call("GET", f"/channels/{channel['id']}"))["access"]["team_access"] == {}


async def test_names_are_escaped_and_ids_stay_inside_the_console(stack: Stack) -> None:
    channel = await channel_of(stack)
    await stack.call(
        "PATCH", f"/channels/{channel['id']}/settings", {"display_name": "<script>alert(1)</script>"}
    )
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        listed = await client.get("/console/channels")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed.text and "<script>" not in listed.text
        assert "default-src 'self'" in listed.headers["content-security-policy"]
        opened = await client.get("/console/whatsapp", params={"id": "../../v1/channels"})
        assert opened.headers["location"] == "/console/whatsapp/..%2F..%2Fv1%2Fchannels"


async def test_the_language_switch_sets_its_cookie_returns_to_the_console_only_and_needs_csrf(
    stack: Stack,
) -> None:
    async with browser_like(stack) as client:
        german = await client.get("/console/sign-in", headers={"accept-language": "de;q=0.9, en;q=0.4"})
        assert '<html lang="de">' in german.text and "Anmelden" in german.text
        csrf = await csrf_of(client)
        refused = await client.post("/console/language", data={"language": "de", "next": "/console/teams"})
        assert refused.status_code == 403 and "parley_console_lang" not in client.cookies

        switched = await client.post(
            "/console/language", data={"csrf_token": csrf, "language": "de", "next": "/console/sign-in"}
        )
        assert (switched.status_code, switched.headers["location"]) == (303, "/console/sign-in")
        assert "SameSite=strict" in switched.headers["set-cookie"]
        # the cookie wins over an English browser
        page = await client.get("/console/sign-in", headers={"accept-language": "en"})
        assert '<html lang="de">' in page.text
        for elsewhere in ("https://evil.test/", "//evil.test/console/", "/v1/channels", "/console\\..\\x"):
            answer = await client.post(
                "/console/language", data={"csrf_token": csrf, "language": "en", "next": elsewhere}
            )
            assert (answer.status_code, answer.headers["location"]) == (303, "/console/"), elsewhere
        # a language the console does not have changes nothing
        await client.post(
            "/console/language", data={"csrf_token": csrf, "language": "fr", "next": "/console/"}
        )
        assert client.cookies["parley_console_lang"] == "en"


async def test_the_list_links_each_account_to_its_address_on_the_provider(stack: Stack) -> None:
    """The address comes from each provider's plugin, from what onboarding recorded on connecting."""
    await stack.connect_pages(
        "meta-user-console",
        [{"id": PAGE_ID, "name": "Acme", "instagram": {"id": "17841400000000001", "username": "acme"}}],
    )
    code, verifier = await stack.x_code("1500000000000000001", "acme_jobs")
    await stack.call(
        "POST", "/connections/x", {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    )
    login = {"id": "17841400000000077", "username": "acme.shop", "redirect_uri": REDIRECT}
    login_code = (await stack.sandbox_admin("POST", "/instagram/accounts", login))["code"]
    await stack.call("POST", "/connections/instagram", {"code": login_code, "redirect_uri": REDIRECT})

    async with browser_like(stack) as client:
        await sign_in(client, stack)
        page = (await client.get("/console/channels")).text
    links = set(re.findall(r'<a class="account-url" href="([^"]+)"', page))
    assert links == {
        f"https://www.facebook.com/{PAGE_ID}",
        "https://www.instagram.com/acme",
        "https://www.instagram.com/acme.shop",
        "https://x.com/acme_jobs",
    }
    # what the addresses are made of is on the channel documents
    names = {c.account_id: c.account_name for c in await stack.service.channels(TENANT)}
    assert names == {
        PAGE_ID: None,
        "17841400000000001": "acme",
        "1500000000000000001": "acme_jobs",
        "17841400000000077": "acme.shop",
    }


async def test_policy_s_sending_restricted_on_the_bus_shows_in_the_attention_column(stack: Stack) -> None:
    """Policy publishes it when Meta refuses a send with 10/1893063; onboarding records it on the
    channel (for its own tenant only) and the console says so, until a reconnect."""
    channel = await channel_of(stack)
    refused_at = datetime.now(UTC).replace(microsecond=0)

    def news(event_id: str, tenant: str, at: datetime) -> ChannelSendingRestricted:
        return ChannelSendingRestricted(
            event_id=event_id,
            channel_id=channel["id"],
            tenant_id=tenant,
            provider=Provider.MESSENGER,
            occurred_at=at,
            provider_code=10,
            provider_subcode=1893063,
        )

    await publish_events(
        stack.infra.kafka,
        stack.namespace,
        news("rpl_other:restricted", OTHER_TENANT, refused_at),  # names another tenant: ignored
        news("rpl_1:restricted", TENANT, refused_at),
        source="/parley/policy",
    )

    async def recorded() -> Any:
        stored = await stack.service.stores.channel(channel["id"])
        return stored is not None and stored.sending_restricted

    restriction = await eventually(recorded, timeout=60)
    assert (restriction.since, restriction.provider_code, restriction.provider_subcode) == (
        refused_at,
        10,
        1893063,
    )
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        page = (await client.get("/console/channels")).text
        assert (
            "Sending restricted: the provider refuses this account&#39;s sends for now (code 10/1893063"
            in page
        )

        # a reconnect clears it: the next refused send would record it again
        await stack.connect_pages("meta-user-console", [{"id": PAGE_ID, "name": "Acme"}])
        stored = await stack.service.stores.channel(channel["id"])
        assert stored is not None and stored.sending_restricted is None
        assert "Sending restricted" not in (await client.get("/console/channels")).text


async def test_the_reports_page_is_absent_without_the_reports_service_s_url(stack: Stack) -> None:
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        assert (await client.get("/console/reports")).status_code == 404
        assert 'href="/console/reports"' not in (await client.get("/console/channels")).text


async def test_a_reports_service_that_does_not_answer_is_a_502_page_in_words(
    infra: Infra, namespace: str, store_url: str
) -> None:
    closed = "http://127.0.0.1:9"  # nothing listens there
    async with (
        onboarding_stack(
            infra, namespace, store_url, console_enabled=True, console_reports_url=closed
        ) as stack,
        browser_like(stack) as client,
    ):
        await sign_in(client, stack)
        assert 'href="/console/reports"' in (await client.get("/console/channels")).text
        page = await client.get("/console/reports")
    assert page.status_code == 502
    assert "The reports service did not answer" in page.text
    assert "reports_unavailable" in page.text


async def test_an_x_token_onboarding_renews_itself_is_not_an_attention_in_the_list(stack: Stack) -> None:
    """X's access token lives two hours and onboarding renews it with the refresh token the
    account granted (``offline.access``): nothing for the administrator to do. A grant without a
    refresh token ends for good, and the list says to reconnect before it does."""

    async def connect_x(user_id: str, handle: str, scopes: list[str] | None = None) -> str:
        code, verifier = await stack.x_code(user_id, handle, scopes)
        body = {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
        return str((await stack.call("POST", "/connections/x", body))["id"])

    renewed = await connect_x("1500000000000000001", "acme_renewed")
    ending = await connect_x(
        "1500000000000000002",
        "acme_ending",
        ["dm.read", "dm.write", "tweet.read", "tweet.write", "users.read"],
    )
    async with browser_like(stack) as client:
        await sign_in(client, stack)
        page = (await client.get("/console/channels")).text

    def row(channel_id: str) -> str:
        match = re.search(rf'<tr data-channel="{channel_id}">(.*?)</tr>', page, re.S)
        assert match, page
        return match.group(1)

    assert "The token expires soon" not in row(renewed)
    assert "Parley renews it before then" in row(renewed)
    assert re.search(r'<td class="attention">\s*Nothing\s*</td>', row(renewed)), row(renewed)
    assert "The token expires soon: reconnect the account before it does." in row(ending)
    assert "Parley renews it before then" not in row(ending)
