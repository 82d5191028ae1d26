"""The provider clients against the provider sandbox, served for real by uvicorn over HTTP.

Each test gets its own sandbox (fresh state) on a free 127.0.0.1 port and talks to it through
``GraphClient``/``XClient`` on a real ``httpx.AsyncClient``: no ASGI transport. Set-up and
inspection use the ``/_sandbox`` admin API and the ``SandboxState`` object.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from parley_events import Provider, ReplyApproved, SenderType
from parley_providers import ErrorKind, ProviderError
from parley_providers.meta.client import GraphClient, PageInfo, graph_client
from parley_providers.meta.outbound import MetaSender
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION as GRAPH
from parley_providers.x.client import XClient, XUser
from parley_sandbox import SandboxState, build_parser, serve_sandbox, state_from_args
from pydantic import SecretStr

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

REDIRECT = "https://app.parley.test/oauth/meta/callback"
X_REDIRECT = "https://app.parley.test/oauth/x/callback"
WA_TOKEN = "wa-system-user-token-0001"


@dataclass
class Sandbox:
    state: SandboxState
    url: str
    http: httpx.AsyncClient
    graph: GraphClient
    x: XClient

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.request(method, f"{self.url}/_sandbox{path}", json=body)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def admin_status(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        response = await self.http.request(method, f"{self.url}/_sandbox{path}", json=body)
        return response.status_code

    async def meta_user(self, **spec: Any) -> str:
        spec.setdefault("redirect_uri", REDIRECT)
        return str((await self.admin("POST", "/meta/users", spec))["code"])

    async def connect_meta(self, **spec: Any) -> tuple[str, str, list[PageInfo]]:
        """A user through Login: (short-lived token, long-lived token, pages from the long one)."""
        code = await self.meta_user(**spec)
        short = await self.graph.exchange_code(code, REDIRECT)
        long = await self.graph.long_lived_token(short.access_token)
        return short.access_token, long.access_token, await self.graph.pages(long.access_token)

    async def whatsapp_number(self, **spec: Any) -> str:
        body = {
            "phone_number_id": "106540352242922",
            "display_phone_number": "+1 555 010 0001",
            "waba_id": "102290129340398",
            "token": WA_TOKEN,
            **spec,
        }
        return str((await self.admin("POST", "/whatsapp/numbers", body))["phone_number_id"])


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    state = SandboxState()
    async with serve_sandbox(state) as url, httpx.AsyncClient(timeout=10) as http:
        assert url.startswith("http://127.0.0.1:")
        yield Sandbox(
            state=state,
            url=url,
            http=http,
            graph=GraphClient(http, url, state.meta_app_id, state.meta_app_secret),
            x=XClient(http, url, state.x_client_id, state.x_client_secret),
        )


def acme_pages() -> list[dict[str, Any]]:
    return [
        {
            "id": "104512345678901",
            "name": "Acme",
            "instagram": {"id": "17841400000000001", "username": "acme"},
        },
        {
            "id": "104512345678902",
            "name": "Acme Outlet",
            "tasks": ["ANALYZE", "MESSAGING"],
            "instagram": None,
        },
    ]


async def fails(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await awaitable
    return info.value


def near(actual: datetime | None, expected: timedelta, slack_s: float = 30) -> bool:
    assert actual is not None
    return abs((actual - datetime.now(UTC) - expected).total_seconds()) < slack_s


# --------------------------------------------------------------------------- Facebook Login


async def test_login_code_exchange_long_lived_token_permissions_and_pages(sandbox: Sandbox) -> None:
    code = await sandbox.meta_user(
        user_id="10158000000000001",
        name="Ada Admin",
        granted=["public_profile", "pages_show_list", "pages_messaging", "pages_manage_metadata"],
        declined=["instagram_manage_comments"],
        pages=acme_pages(),
    )
    short = await sandbox.graph.exchange_code(code, REDIRECT)
    assert short.access_token.startswith("EAA")
    assert short.refresh_token is None
    assert short.expires_at is not None
    assert timedelta(hours=1) <= short.expires_at - datetime.now(UTC) <= timedelta(hours=2)
    stored = sandbox.state.tokens[short.access_token]
    assert (stored.kind, stored.long_lived, stored.user_id) == ("user", False, "10158000000000001")

    reused = await fails(sandbox.graph.exchange_code(code, REDIRECT))
    assert (reused.status, reused.code, reused.subcode) == (400, 100, 36009)
    assert reused.kind is ErrorKind.INVALID_REQUEST
    assert reused.provider == "meta"
    assert reused.trace_id

    long = await sandbox.graph.long_lived_token(short.access_token)
    assert long.access_token != short.access_token
    assert near(long.expires_at, timedelta(days=60))
    assert sandbox.state.tokens[long.access_token].long_lived

    permissions = await sandbox.graph.permissions(long.access_token)
    assert permissions == {
        "public_profile": "granted",
        "pages_show_list": "granted",
        "pages_messaging": "granted",
        "pages_manage_metadata": "granted",
        "instagram_manage_comments": "declined",
    }

    pages = await sandbox.graph.pages(long.access_token)
    assert [(p.id, p.name) for p in pages] == [
        ("104512345678901", "Acme"),
        ("104512345678902", "Acme Outlet"),
    ]
    acme, outlet = pages
    assert acme.instagram_business_account_id == "17841400000000001"
    assert acme.instagram_username == "acme"
    assert "MESSAGING" in acme.tasks and "MANAGE" in acme.tasks
    assert outlet.tasks == ("ANALYZE", "MESSAGING")
    assert outlet.instagram_business_account_id is None and outlet.instagram_username is None
    assert acme.access_token != outlet.access_token
    assert acme.access_token not in repr(acme)
    page_token = sandbox.state.tokens[acme.access_token]
    assert (page_token.kind, page_token.page_id, page_token.expires_at) == ("page", acme.id, None)
    again = await sandbox.graph.pages(long.access_token)
    assert [p.access_token for p in again] == [p.access_token for p in pages]


async def test_debug_token_reports_validity_expiry_and_scopes(sandbox: Sandbox) -> None:
    short, long, pages = await sandbox.connect_meta(pages=acme_pages())
    valid, expires_at, scopes = await sandbox.graph.debug_token(long)
    assert valid is True
    assert near(expires_at, timedelta(days=60))
    assert "pages_messaging" in scopes and "pages_show_list" in scopes
    assert await sandbox.graph.debug_token(pages[0].access_token) == (True, None, scopes)
    assert await sandbox.graph.debug_token("EAAnot-a-token") == (False, None, ())

    sandbox.state.advance(3 * 3600)  # the short-lived token is now expired
    valid, expires_at, _ = await sandbox.graph.debug_token(short)
    assert valid is False
    assert expires_at is not None and expires_at < datetime.now(UTC) + timedelta(hours=3)

    wrong_app = GraphClient(sandbox.http, sandbox.url, sandbox.state.meta_app_id, "not-the-secret")
    error = await fails(wrong_app.debug_token(long))
    assert (error.code, error.kind) == (190, ErrorKind.REAUTH_REQUIRED)


async def test_codes_are_single_use_short_lived_and_bound_to_the_redirect_uri(sandbox: Sandbox) -> None:
    await sandbox.meta_user(user_id="501", pages=acme_pages())
    other = await sandbox.admin("POST", "/meta/codes", {"user_id": "501", "redirect_uri": REDIRECT})
    error = await fails(sandbox.graph.exchange_code(other["code"], "https://evil.test/cb"))
    assert (error.code, error.subcode, error.kind) == (100, 36008, ErrorKind.INVALID_REQUEST)

    late = await sandbox.admin("POST", "/meta/codes", {"user_id": "501"})
    await sandbox.admin("POST", "/clock", {"advance_s": 601})
    error = await fails(sandbox.graph.exchange_code(late["code"], REDIRECT))
    assert (error.code, error.subcode) == (100, 36007)

    error = await fails(sandbox.graph.exchange_code("AQnot-a-code", REDIRECT))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)

    wrong = GraphClient(sandbox.http, sandbox.url, sandbox.state.meta_app_id, "wrong-secret")
    fresh = await sandbox.admin("POST", "/meta/codes", {"user_id": "501"})
    error = await fails(wrong.exchange_code(fresh["code"], REDIRECT))
    assert (error.code, error.kind) == (101, ErrorKind.INVALID_REQUEST)
    assert "wrong-secret" not in str(error)
    assert sandbox.state.codes[fresh["code"]].used is False  # a refused exchange does not burn the code

    assert await sandbox.admin_status("POST", "/meta/codes", {"user_id": "nobody"}) == 404


async def test_pages_are_collected_across_result_pages(sandbox: Sandbox) -> None:
    specs = [{"id": f"9000{i:04d}", "name": f"Store {i}"} for i in range(130)]
    _, _, pages = await sandbox.connect_meta(pages=specs)
    assert [p.id for p in pages] == [s["id"] for s in specs]
    listing_calls = [c for c in sandbox.state.calls if c.path.endswith("/me/accounts")]
    assert len(listing_calls) == 2
    assert len({p.access_token for p in pages}) == 130


async def test_pages_need_pages_show_list(sandbox: Sandbox) -> None:
    code = await sandbox.meta_user(granted=["public_profile"], pages=acme_pages())
    token = await sandbox.graph.exchange_code(code, REDIRECT)
    error = await fails(sandbox.graph.pages(token.access_token))
    assert (error.code, error.kind) == (200, ErrorKind.PERMISSION_MISSING)


# --------------------------------------------------------------------------- Pages


async def test_subscribe_page_sets_the_webhook_fields(sandbox: Sandbox) -> None:
    _, long, pages = await sandbox.connect_meta(pages=acme_pages())
    acme, outlet = pages
    await sandbox.graph.subscribe_page(
        acme.id, acme.access_token, ["messages", "messaging_postbacks", "feed"]
    )
    assert sandbox.state.pages[acme.id].subscribed_fields == ["messages", "messaging_postbacks", "feed"]
    view = await sandbox.admin("GET", f"/meta/pages/{acme.id}")
    assert view["subscribed_fields"] == ["messages", "messaging_postbacks", "feed"]

    error = await fails(sandbox.graph.subscribe_page(acme.id, acme.access_token, ["messages", "telepathy"]))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    assert "subscribed_fields[1]" in error.message

    error = await fails(sandbox.graph.subscribe_page(acme.id, long, ["messages"]))  # a user token
    assert (error.code, error.kind) == (210, ErrorKind.PERMISSION_MISSING)

    error = await fails(sandbox.graph.subscribe_page(outlet.id, acme.access_token, ["messages"]))
    assert (error.code, error.subcode, error.kind) == (100, 33, ErrorKind.INVALID_REQUEST)

    _, _, limited = await sandbox.connect_meta(
        user_id="77", granted=["pages_show_list", "pages_messaging"], pages=[{"id": "555000111"}]
    )
    error = await fails(sandbox.graph.subscribe_page("555000111", limited[0].access_token, ["messages"]))
    assert (error.code, error.kind) == (200, ErrorKind.PERMISSION_MISSING)
    assert sandbox.state.pages["555000111"].subscribed_fields == []


async def test_unsubscribe_page_removes_the_apps_subscription(sandbox: Sandbox) -> None:
    _, long, pages = await sandbox.connect_meta(pages=acme_pages())
    acme, outlet = pages
    await sandbox.graph.subscribe_page(acme.id, acme.access_token, ["messages", "feed"])
    await sandbox.graph.subscribe_page(outlet.id, outlet.access_token, ["messages"])

    await sandbox.graph.unsubscribe_page(acme.id, acme.access_token)
    assert sandbox.state.pages[acme.id].subscribed_fields == []
    assert (await sandbox.admin("GET", f"/meta/pages/{acme.id}"))["subscribed_fields"] == []
    assert sandbox.state.pages[outlet.id].subscribed_fields == ["messages"]  # other Pages untouched
    await sandbox.graph.unsubscribe_page(acme.id, acme.access_token)  # again: still success

    error = await fails(sandbox.graph.unsubscribe_page(outlet.id, long))  # a user token
    assert (error.code, error.kind) == (210, ErrorKind.PERMISSION_MISSING)
    error = await fails(sandbox.graph.unsubscribe_page(outlet.id, acme.access_token))  # another Page's token
    assert (error.code, error.subcode, error.kind) == (100, 33, ErrorKind.INVALID_REQUEST)
    assert sandbox.state.pages[outlet.id].subscribed_fields == ["messages"]

    await sandbox.admin(
        "POST", "/faults", {"path_contains": "/subscribed_apps", "method": "DELETE", "status": 500}
    )
    error = await fails(sandbox.graph.unsubscribe_page(outlet.id, outlet.access_token))
    assert error.kind is ErrorKind.RETRYABLE
    assert sandbox.state.pages[outlet.id].subscribed_fields == ["messages"]


# --------------------------------------------------------------------------- Messenger & Instagram


async def test_send_message_records_each_request_without_credentials(sandbox: Sandbox) -> None:
    _, _, pages = await sandbox.connect_meta(pages=acme_pages())
    acme = pages[0]
    payload = {
        "recipient": {"id": "6912345678901234"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hi!"},
    }
    first = await sandbox.graph.send_message(acme.id, acme.access_token, payload)
    second = await sandbox.graph.send_message(acme.id, acme.access_token, payload)
    assert first.startswith("m_") and second.startswith("m_") and first != second

    sent = sandbox.state.sent
    assert [s.result_id for s in sent] == [first, second]
    assert all(s.status == 200 and s.provider == "meta" for s in sent)
    assert sent[0].path == f"/{GRAPH}/{acme.id}/messages"
    assert sent[0].body == payload
    assert "authorization" not in {h.lower() for h in sent[0].headers}
    assert sent[0].headers["content-type"] == "application/json"
    assert acme.access_token not in repr(sent)

    listed = await sandbox.admin("GET", "/sent")
    assert [item["result_id"] for item in listed["data"]] == [first, second]
    assert listed["data"][0]["body"] == payload
    assert await sandbox.admin("DELETE", "/sent") == {"deleted": 2}
    assert sandbox.state.sent == []

    typing = {"recipient": {"id": "6912345678901234"}, "sender_action": "typing_on"}
    assert await sandbox.graph.send_message(acme.id, acme.access_token, typing) == ""

    too_long = {"recipient": {"id": "6912345678901234"}, "message": {"text": "x" * 2001}}
    error = await fails(sandbox.graph.send_message(acme.id, acme.access_token, too_long))
    assert (error.status, error.code, error.kind) == (400, 100, ErrorKind.INVALID_REQUEST)
    assert "2000" in error.message
    assert (sandbox.state.sent[-1].status, sandbox.state.sent[-1].result_id) == (400, None)
    at_limit = {"recipient": {"id": "6912345678901234"}, "message": {"text": "x" * 2000}}
    assert (await sandbox.graph.send_message(acme.id, acme.access_token, at_limit)).startswith("m_")

    error = await fails(sandbox.graph.send_message(acme.id, acme.access_token, {"message": {"text": "?"}}))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)

    await sandbox.admin(
        "POST", "/meta/users/" + acme_user(sandbox) + "/permissions", {"granted": ["pages_show_list"]}
    )
    error = await fails(sandbox.graph.send_message(acme.id, acme.access_token, payload))
    assert (error.status, error.code, error.kind) == (403, 230, ErrorKind.PERMISSION_MISSING)


def acme_user(sandbox: Sandbox) -> str:
    return next(u.id for u in sandbox.state.meta_users.values() if "104512345678901" in u.page_ids)


async def test_private_replies_and_public_comment_replies(sandbox: Sandbox) -> None:
    _, _, pages = await sandbox.connect_meta(pages=acme_pages())
    acme, outlet = pages
    comment = "104512345678901_889900112233"
    message_id = await sandbox.graph.send_private_reply(acme.id, acme.access_token, comment, "We DM'd you")
    assert message_id.startswith("m_")
    assert sandbox.state.sent[-1].body == {
        "recipient": {"comment_id": comment},
        "message": {"text": "We DM'd you"},
    }
    error = await fails(sandbox.graph.send_private_reply(acme.id, acme.access_token, comment, "again"))
    assert (error.code, error.kind) == (10900, ErrorKind.INVALID_REQUEST)

    reply_id = await sandbox.graph.reply_to_comment(comment, acme.access_token, "Thanks for asking!")
    assert reply_id.startswith("104512345678901_") and reply_id != comment
    assert sandbox.state.sent[-1].path == f"/{GRAPH}/{comment}/comments"
    assert sandbox.state.sent[-1].body == {"message": "Thanks for asking!"}
    another = await sandbox.graph.reply_to_comment(comment, acme.access_token, "And more")
    assert another != reply_id

    ig_reply = await sandbox.graph.reply_to_instagram_comment("17858893269000001", acme.access_token, "Hi!")
    assert ig_reply.isdigit()
    assert sandbox.state.sent[-1].path == f"/{GRAPH}/17858893269000001/replies"
    error = await fails(
        sandbox.graph.reply_to_instagram_comment("17858893269000002", outlet.access_token, "Hi")
    )
    assert (error.code, error.subcode) == (100, 33)  # that Page has no Instagram account

    error = await fails(sandbox.graph.reply_to_comment(comment, acme.access_token, "  "))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)


# --------------------------------------------------------------------------- token lifecycle


async def test_expiry_revocation_and_lost_page_access(sandbox: Sandbox) -> None:
    short, long, pages = await sandbox.connect_meta(user_id="3001", pages=acme_pages())
    acme, outlet = pages
    payload = {"recipient": {"id": "6900000000000001"}, "message": {"text": "still here"}}

    await sandbox.admin("POST", "/clock", {"advance_s": 2 * 3600 + 1})
    error = await fails(sandbox.graph.permissions(short))
    assert (error.code, error.subcode, error.kind) == (190, 463, ErrorKind.REAUTH_REQUIRED)
    assert short not in str(error)
    assert await sandbox.graph.permissions(long)  # long-lived: fine
    assert (await sandbox.graph.send_message(acme.id, acme.access_token, payload)).startswith("m_")

    await sandbox.admin("POST", f"/meta/users/3001/remove-page-access/{outlet.id}")
    error = await fails(sandbox.graph.send_message(outlet.id, outlet.access_token, payload))
    assert (error.code, error.kind) == (10, ErrorKind.PERMISSION_MISSING)
    assert [p.id for p in await sandbox.graph.pages(long)] == [acme.id]

    await sandbox.admin("POST", f"/meta/tokens/{long}/revoke")
    error = await fails(sandbox.graph.permissions(long))
    assert (error.code, error.subcode, error.kind) == (190, 460, ErrorKind.REAUTH_REQUIRED)
    error = await fails(sandbox.graph.send_message(acme.id, acme.access_token, payload))  # derived token
    assert (error.code, error.subcode, error.kind) == (190, 460, ErrorKind.REAUTH_REQUIRED)
    assert await sandbox.admin_status("POST", "/meta/tokens/EAAunknown/revoke") == 404


async def test_long_lived_tokens_expire_after_sixty_days_and_deauthorization(sandbox: Sandbox) -> None:
    _, long, pages = await sandbox.connect_meta(user_id="3002", pages=acme_pages())
    sandbox.state.advance(59 * 86400)
    assert await sandbox.graph.permissions(long)
    sandbox.state.advance(2 * 86400)
    error = await fails(sandbox.graph.pages(long))
    assert (error.code, error.subcode, error.kind) == (190, 463, ErrorKind.REAUTH_REQUIRED)
    # a Page token from a long-lived user token does not expire with it
    await sandbox.graph.subscribe_page(pages[0].id, pages[0].access_token, ["messages"])

    result = await sandbox.admin("POST", "/meta/users/3002/deauthorize")
    assert result["revoked"] >= 2
    error = await fails(sandbox.graph.subscribe_page(pages[0].id, pages[0].access_token, ["messages"]))
    assert (error.code, error.subcode, error.kind) == (190, 458, ErrorKind.REAUTH_REQUIRED)


async def test_missing_and_unknown_tokens_are_190(sandbox: Sandbox) -> None:
    error = await fails(sandbox.graph.permissions(""))
    assert (error.status, error.code, error.kind) == (400, 190, ErrorKind.REAUTH_REQUIRED)
    error = await fails(sandbox.graph.permissions("EAAmadeUpToken"))
    assert (error.code, error.subcode, error.kind) == (190, None, ErrorKind.REAUTH_REQUIRED)
    assert "EAAmadeUpToken" not in str(error)
    # Graph also takes the token as the access_token query parameter
    _, long, _ = await sandbox.connect_meta(pages=acme_pages())
    response = await sandbox.http.get(f"{sandbox.url}/{GRAPH}/me/permissions", params={"access_token": long})
    assert response.status_code == 200
    assert {"permission": "pages_messaging", "status": "granted"} in response.json()["data"]


async def test_every_graph_call_names_the_version_the_settings_give(sandbox: Sandbox) -> None:
    settings = SimpleNamespace(
        graph_base_url=sandbox.url,
        graph_api_version="v27.0",
        meta_app_id=sandbox.state.meta_app_id,
        meta_app_secret=SecretStr(sandbox.state.meta_app_secret),
    )
    graph = graph_client(sandbox.http, settings)
    code = await sandbox.meta_user(pages=acme_pages())
    short = await graph.exchange_code(code, REDIRECT)
    long = await graph.long_lived_token(short.access_token)
    acme = (await graph.pages(long.access_token))[0]
    await graph.permissions(long.access_token)
    await graph.debug_token(long.access_token)
    await graph.subscribe_page(acme.id, acme.access_token, ["messages"])
    payload = {
        "recipient": {"id": "6900000000000001"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hi"},
    }
    await graph.send_message(acme.id, acme.access_token, payload)
    await graph.reply_to_comment(f"{acme.id}_1", acme.access_token, "Thanks")

    assert len(sandbox.state.calls) == 8
    assert {call.version for call in sandbox.state.calls} == {"v27.0"}
    assert [s.version for s in sandbox.state.sent] == ["v27.0", "v27.0"]
    listed = await sandbox.admin("GET", "/calls")
    assert {row["version"] for row in listed["data"]} == {"v27.0"}

    sandbox.state.calls.clear()
    await sandbox.graph.permissions(long.access_token)  # no version configured: the default
    assert [call.version for call in sandbox.state.calls] == [GRAPH]


async def test_unknown_versions_and_paths_answer_in_graph_shape(sandbox: Sandbox) -> None:
    _, long, _ = await sandbox.connect_meta(pages=acme_pages())
    unversioned = GraphClient(sandbox.http, sandbox.url, "a", "b", api_version="21.0")
    error = await fails(unversioned.permissions(long))
    assert (error.code, error.kind) == (2500, ErrorKind.INVALID_REQUEST)
    response = await sandbox.http.get(f"{sandbox.url}/{GRAPH}/me/friends/of/friends")
    assert response.json()["error"]["code"] == 2500


# --------------------------------------------------------------------------- WhatsApp


async def test_whatsapp_number_verification_registration_and_send(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number()
    graph = sandbox.graph
    text = {"to": "+1 555 123 4567", "type": "text", "text": {"body": "Hello from Parley"}}

    error = await fails(graph.whatsapp_send(number, WA_TOKEN, text))
    assert (error.provider, error.code, error.kind) == ("whatsapp", 133010, ErrorKind.INVALID_REQUEST)

    error = await fails(graph.whatsapp_request_code(number, WA_TOKEN, "EMAIL"))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    assert await sandbox.admin_status("GET", f"/whatsapp/numbers/{number}/last-code") == 404

    await graph.whatsapp_request_code(number, WA_TOKEN, "sms")
    code = (await sandbox.admin("GET", f"/whatsapp/numbers/{number}/last-code"))["code"]
    assert len(code) == 6 and code.isdigit()
    assert sandbox.state.whatsapp_numbers[number].last_code == code

    error = await fails(graph.whatsapp_register(number, WA_TOKEN, "123456"))
    assert (error.code, error.kind) == (133006, ErrorKind.INVALID_REQUEST)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    error = await fails(graph.whatsapp_verify_code(number, WA_TOKEN, wrong))
    assert (error.code, error.kind) == (136025, ErrorKind.INVALID_REQUEST)
    assert sandbox.state.whatsapp_numbers[number].verified is False

    await graph.whatsapp_verify_code(number, WA_TOKEN, code)
    assert sandbox.state.whatsapp_numbers[number].verified is True
    error = await fails(graph.whatsapp_verify_code(number, WA_TOKEN, code))  # single use
    assert error.code == 136025

    error = await fails(graph.whatsapp_register(number, WA_TOKEN, "12ab"))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    await graph.whatsapp_register(number, WA_TOKEN, "246810")
    view = await sandbox.admin("GET", f"/whatsapp/numbers/{number}")
    assert (view["verified"], view["registered"], view["pin"]) == (True, True, "246810")
    assert "token" not in view
    error = await fails(graph.whatsapp_register(number, WA_TOKEN, "111111"))
    assert (error.code, error.kind) == (133005, ErrorKind.INVALID_REQUEST)

    sandbox.state.sent.clear()
    wamid = await graph.whatsapp_send(number, WA_TOKEN, text)
    other = await graph.whatsapp_send(number, WA_TOKEN, text)
    assert wamid.startswith("wamid.") and other.startswith("wamid.") and wamid != other
    record = sandbox.state.sent[0]
    assert (record.provider, record.path, record.result_id) == (
        "whatsapp",
        f"/{GRAPH}/{number}/messages",
        wamid,
    )
    assert record.body == {"messaging_product": "whatsapp", **text}
    assert WA_TOKEN not in repr(record)

    error = await fails(graph.whatsapp_send(number, WA_TOKEN, {**text, "text": {"body": "y" * 4097}}))
    assert (error.code, error.kind) == (131009, ErrorKind.INVALID_REQUEST)
    assert "4096" in error.message  # error_data.details is part of the message
    error = await fails(
        graph.whatsapp_send(
            number, WA_TOKEN, {"to": "15551234567", "type": "template", "template": {"name": "x"}}
        )
    )
    assert error.code == 131008
    assert sandbox.state.sent[-1].status == 400


async def test_whatsapp_tokens_are_checked(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number(verified=True, registered=True)
    await sandbox.whatsapp_number(phone_number_id="2222", waba_id="other-waba", token="other-token")
    text = {"to": "15551234567", "text": {"body": "hi"}}
    error = await fails(sandbox.graph.whatsapp_send(number, "not-a-token", text))
    assert (error.provider, error.code, error.kind) == ("whatsapp", 190, ErrorKind.REAUTH_REQUIRED)
    error = await fails(sandbox.graph.whatsapp_send(number, "other-token", text))
    assert (error.code, error.kind) == (200, ErrorKind.PERMISSION_MISSING)
    error = await fails(sandbox.graph.whatsapp_request_code("999999", WA_TOKEN, "SMS"))
    assert (error.code, error.subcode) == (100, 33)
    await sandbox.admin("POST", f"/meta/tokens/{WA_TOKEN}/revoke", {"subcode": 467})
    error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
    assert (error.code, error.subcode, error.kind) == (190, 467, ErrorKind.REAUTH_REQUIRED)


async def test_a_wabas_phone_numbers_are_listed_for_a_token_that_manages_it(sandbox: Sandbox) -> None:
    """GET /{waba-id}/phone_numbers (security #13 finding 7): every page, only for the WABA's token."""
    waba = "102290129340398"
    numbers = [f"10654035224{n:04d}" for n in range(130)]
    for number_id in numbers:
        await sandbox.whatsapp_number(phone_number_id=number_id, verified_name="Acme")
    await sandbox.whatsapp_number(phone_number_id="2222", waba_id="other-waba", token="other-token")
    listed = await sandbox.graph.whatsapp_phone_numbers(waba, WA_TOKEN)
    assert [n.id for n in listed] == numbers  # 130 numbers: two result pages
    assert (listed[0].display_phone_number, listed[0].verified_name) == ("+1 555 010 0001", "Acme")
    assert [n.id for n in await sandbox.graph.whatsapp_phone_numbers("other-waba", "other-token")] == ["2222"]
    error = await fails(sandbox.graph.whatsapp_phone_numbers(waba, "other-token"))
    assert (error.provider, error.code, error.kind) == ("whatsapp", 200, ErrorKind.PERMISSION_MISSING)
    error = await fails(sandbox.graph.whatsapp_phone_numbers("no-such-waba", WA_TOKEN))
    assert (error.code, error.subcode) == (100, 33)
    error = await fails(sandbox.graph.whatsapp_phone_numbers(waba, "not-a-token"))
    assert (error.code, error.kind) == (190, ErrorKind.REAUTH_REQUIRED)


# --------------------------------------------------------------------------- customer-service windows


async def test_whatsapp_window_needs_a_recent_inbound_message_or_a_template(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number(verified=True, registered=True, enforce_window=True)
    text = {"to": "15557654321", "type": "text", "text": {"body": "Following up"}}
    template = {
        "to": "15557654321",
        "type": "template",
        "template": {"name": "follow_up", "language": {"code": "en_US"}},
    }
    error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
    assert (error.code, error.kind) == (131047, ErrorKind.WINDOW_CLOSED)
    assert (await sandbox.graph.whatsapp_send(number, WA_TOKEN, template)).startswith("wamid.")

    await sandbox.admin(
        "POST", "/windows", {"account_id": number, "customer_id": "15557654321", "ago_s": 3600}
    )
    assert (await sandbox.graph.whatsapp_send(number, WA_TOKEN, text)).startswith("wamid.")
    sandbox.state.advance(23 * 3600 + 1)
    error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
    assert error.kind is ErrorKind.WINDOW_CLOSED


async def test_messenger_window_and_the_human_agent_tag(sandbox: Sandbox) -> None:
    pages_spec = [{"id": "104512345678909", "name": "Strict", "enforce_window": True}]
    _, _, pages = await sandbox.connect_meta(pages=pages_spec)
    page = pages[0]
    psid = "6900000000000009"
    response = {"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": "Hello"}}
    human = {**response, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}

    error = await fails(sandbox.graph.send_message(page.id, page.access_token, response))
    assert (error.code, error.subcode, error.kind) == (10, 2018278, ErrorKind.WINDOW_CLOSED)
    sandbox.state.open_window(page.id, psid)
    assert (await sandbox.graph.send_message(page.id, page.access_token, response)).startswith("m_")

    sandbox.state.advance(3 * 86400)
    error = await fails(sandbox.graph.send_message(page.id, page.access_token, response))
    assert error.kind is ErrorKind.WINDOW_CLOSED
    assert (await sandbox.graph.send_message(page.id, page.access_token, human)).startswith("m_")
    bad_tag = {**human, "tag": "PROMOTION"}
    error = await fails(sandbox.graph.send_message(page.id, page.access_token, bad_tag))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    for retired in ("ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"):
        error = await fails(sandbox.graph.send_message(page.id, page.access_token, {**human, "tag": retired}))
        assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    sandbox.state.advance(5 * 86400)
    error = await fails(sandbox.graph.send_message(page.id, page.access_token, human))
    assert error.kind is ErrorKind.WINDOW_CLOSED


async def test_a_page_restricted_from_sending_answers_10_1893063_until_meta_lifts_it(
    sandbox: Sandbox,
) -> None:
    pages_spec = [{"id": "104512345678908", "name": "Held", "sending_restricted": True}]
    _, _, pages = await sandbox.connect_meta(pages=pages_spec)
    page = pages[0]
    response = {
        "recipient": {"id": "6900000000000008"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hi"},
    }

    error = await fails(sandbox.graph.send_message(page.id, page.access_token, response))

    assert (error.status, error.code, error.subcode) == (400, 10, 1893063)
    assert error.kind is ErrorKind.SENDING_RESTRICTED
    assert (await sandbox.admin("GET", f"/meta/pages/{page.id}"))["sending_restricted"] is True
    sandbox.state.pages[page.id].sending_restricted = False
    assert (await sandbox.graph.send_message(page.id, page.access_token, response)).startswith("m_")


def approved(page_id: str, psid: str, messaging_type: str, tag: str | None) -> ReplyApproved:
    return ReplyApproved(
        event_id="r:approved",
        reply_id="r",
        tenant_id="t",
        channel_id="ch",
        conversation_id="c",
        sender_type=SenderType.HUMAN,
        occurred_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        provider=Provider.MESSENGER,
        account_id=page_id,
        recipient_id=psid,
        kind="direct",
        text="A person here",
        messaging_type=messaging_type,
        tag=tag,
    )


async def test_the_sender_sends_the_decisions_messaging_type_and_tag_and_nothing_else(
    sandbox: Sandbox,
) -> None:
    pages_spec = [{"id": "104512345678909", "name": "Strict", "enforce_window": True}]
    _, _, pages = await sandbox.connect_meta(pages=pages_spec)
    page, psid = pages[0], "6900000000000009"
    sender = MetaSender(sandbox.graph)
    sandbox.state.open_window(page.id, psid, ago_s=3600)

    await sender.send(approved(page.id, psid, "RESPONSE", None), page.access_token)
    sandbox.state.advance(2 * 86400)
    await sender.send(approved(page.id, psid, "MESSAGE_TAG", "HUMAN_AGENT"), page.access_token)

    inside, after = sandbox.state.sent
    assert (inside.status, after.status) == (200, 200)
    assert inside.body["messaging_type"] == "RESPONSE" and "tag" not in inside.body
    assert (after.body["messaging_type"], after.body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


# --------------------------------------------------------------------------- fault switches


async def test_graph_fault_switches_answer_in_graph_shape_and_classify(sandbox: Sandbox) -> None:
    number = await sandbox.whatsapp_number(verified=True, registered=True)
    text = {"to": "15551234567", "text": {"body": "hi"}}

    fault = await sandbox.admin(
        "POST", "/faults", {"path_contains": "/messages", "status": 400, "code": 130429, "times": 2}
    )
    assert fault["times"] == 2
    assert (await sandbox.admin("GET", "/faults"))["data"][0]["code"] == 130429
    for _ in range(2):
        error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
        assert (error.status, error.code, error.kind) == (400, 130429, ErrorKind.RATE_LIMITED)
    assert sandbox.state.faults == []
    assert (await sandbox.graph.whatsapp_send(number, WA_TOKEN, text)).startswith("wamid.")
    assert [s.status for s in sandbox.state.sent] == [400, 400, 200]

    cases: list[tuple[dict[str, Any], tuple[int, int | None, int | None, ErrorKind]]] = [
        ({"status": 500, "code": 1}, (500, 1, None, ErrorKind.RETRYABLE)),
        ({"status": 500, "code": 131000}, (500, 131000, None, ErrorKind.RETRYABLE)),
        ({"status": 400, "code": 131047}, (400, 131047, None, ErrorKind.WINDOW_CLOSED)),
        ({"status": 400, "code": 131056}, (400, 131056, None, ErrorKind.RATE_LIMITED)),
        ({"status": 400, "code": 190, "subcode": 463}, (400, 190, 463, ErrorKind.REAUTH_REQUIRED)),
        ({"status": 403, "code": 200}, (403, 200, None, ErrorKind.PERMISSION_MISSING)),
        ({"status": 429}, (429, 4, None, ErrorKind.RATE_LIMITED)),
        ({"status": 503, "plain": True}, (503, None, None, ErrorKind.RETRYABLE)),
        ({"status": 400, "code": 100}, (400, 100, None, ErrorKind.INVALID_REQUEST)),
    ]
    for spec, expected in cases:
        await sandbox.admin("POST", "/faults", {"path_contains": f"/{number}/messages", **spec})
        error = await fails(sandbox.graph.whatsapp_send(number, WA_TOKEN, text))
        assert (error.status, error.code, error.subcode, error.kind) == expected, spec

    _, long, pages = await sandbox.connect_meta(pages=acme_pages())
    await sandbox.admin(
        "POST",
        "/faults",
        {
            "path_contains": "/me/accounts",
            "status": 400,
            "code": 80001,
            "retry_after_s": 120,
            "method": "GET",
        },
    )
    error = await fails(sandbox.graph.pages(long))
    assert (error.code, error.kind, error.retry_after_s) == (80001, ErrorKind.RATE_LIMITED, 120.0)
    assert len(await sandbox.graph.pages(long)) == 2

    await sandbox.admin("POST", "/faults", {"path_contains": "/subscribed_apps", "status": 500, "times": 5})
    await sandbox.admin("POST", "/faults", {"path_contains": "/messages", "method": "DELETE", "status": 500})
    assert await sandbox.admin("DELETE", "/faults") == {"deleted": 2}
    await sandbox.graph.subscribe_page(pages[0].id, pages[0].access_token, ["messages"])

    assert await sandbox.admin_status("POST", "/faults", {"status": 302}) == 400
    assert await sandbox.admin_status("POST", "/faults", {"status": 500, "times": 0}) == 400


async def test_x_fault_switches_answer_in_x_shape_and_classify(sandbox: Sandbox) -> None:
    token = await x_connect(sandbox)
    await sandbox.admin("POST", "/faults", {"path_contains": "/2/tweets", "status": 429, "retry_after_s": 30})
    error = await fails(sandbox.x.post_reply(token.access_token, "hello", "1460323737035677698"))
    assert (error.provider, error.status, error.kind) == ("x", 429, ErrorKind.RATE_LIMITED)
    assert error.retry_after_s is not None and 25 <= error.retry_after_s <= 31
    assert error.error_type == "about:blank"

    for spec, kind in [
        ({"status": 503}, ErrorKind.RETRYABLE),
        ({"status": 401}, ErrorKind.REAUTH_REQUIRED),
        ({"status": 403}, ErrorKind.INVALID_REQUEST),
        ({"status": 400, "code": 88}, ErrorKind.RATE_LIMITED),
    ]:
        await sandbox.admin("POST", "/faults", {"path_contains": "/dm_conversations/", **spec})
        error = await fails(sandbox.x.send_dm(token.access_token, "783214", "hi"))
        assert (error.status, error.kind) == (spec["status"], kind)
    assert (await sandbox.x.send_dm(token.access_token, "783214", "hi")).isdigit()


# --------------------------------------------------------------------------- X


def pkce() -> tuple[str, str]:
    verifier = "parley-test-verifier-" + "k" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def x_connect(sandbox: Sandbox, **spec: Any) -> Any:
    verifier, challenge = pkce()
    body = {"id": "2244994945", "username": "acme_help", "name": "Acme Help", **spec}
    body.update({"redirect_uri": X_REDIRECT, "code_challenge": challenge, "code_challenge_method": "S256"})
    created = await sandbox.admin("POST", "/x/users", body)
    return await sandbox.x.exchange_code(created["code"], X_REDIRECT, verifier)


async def test_x_authorization_code_with_pkce_and_refresh_rotation(sandbox: Sandbox) -> None:
    verifier, challenge = pkce()
    created = await sandbox.admin(
        "POST",
        "/x/users",
        {
            "id": "2244994945",
            "username": "acme_help",
            "name": "Acme Help",
            "redirect_uri": X_REDIRECT,
            "code_challenge": challenge,
        },
    )
    error = await fails(sandbox.x.exchange_code(created["code"], X_REDIRECT, "some-other-verifier"))
    assert (error.provider, error.status, error.kind) == ("x", 400, ErrorKind.INVALID_REQUEST)
    assert error.error_type == "invalid_request"

    token = await sandbox.x.exchange_code(created["code"], X_REDIRECT, verifier)
    assert token.refresh_token is not None
    assert set(token.scopes) >= {"tweet.read", "tweet.write", "users.read", "dm.write", "offline.access"}
    assert near(token.expires_at, timedelta(hours=2))
    assert token.access_token not in repr(token)

    error = await fails(sandbox.x.exchange_code(created["code"], X_REDIRECT, verifier))
    assert error.kind is ErrorKind.INVALID_REQUEST

    assert await sandbox.x.me(token.access_token) == XUser(
        id="2244994945", username="acme_help", name="Acme Help"
    )

    renewed = await sandbox.x.refresh(token.refresh_token)
    assert renewed.access_token != token.access_token
    assert renewed.refresh_token not in (None, token.refresh_token)
    assert (await sandbox.x.me(renewed.access_token)).id == "2244994945"
    error = await fails(sandbox.x.refresh(token.refresh_token))  # rotated away
    assert (error.status, error.kind) == (400, ErrorKind.REAUTH_REQUIRED)

    wrong = XClient(sandbox.http, sandbox.url, sandbox.state.x_client_id, "wrong-secret")
    assert renewed.refresh_token is not None
    error = await fails(wrong.refresh(renewed.refresh_token))
    assert (error.status, error.kind, error.error_type) == (
        401,
        ErrorKind.INVALID_REQUEST,
        "unauthorized_client",
    )
    assert (await sandbox.x.refresh(renewed.refresh_token)).access_token  # not burnt by the refusal

    no_offline = await sandbox.admin(
        "POST", "/x/users", {"id": "99", "username": "short_lived", "scopes": ["users.read", "tweet.read"]}
    )
    plain = await sandbox.x.exchange_code(no_offline["code"], X_REDIRECT, verifier)
    assert plain.refresh_token is None and plain.scopes == ("users.read", "tweet.read")


async def test_x_tokens_expire_and_can_be_revoked(sandbox: Sandbox) -> None:
    token = await x_connect(sandbox)
    sandbox.state.advance(7201)
    error = await fails(sandbox.x.me(token.access_token))
    assert (error.status, error.kind) == (401, ErrorKind.REAUTH_REQUIRED)
    assert token.access_token not in str(error)
    renewed = await sandbox.x.refresh(token.refresh_token)
    assert (await sandbox.x.me(renewed.access_token)).username == "acme_help"
    await sandbox.admin("POST", f"/x/tokens/{renewed.access_token}/revoke")
    error = await fails(sandbox.x.me(renewed.access_token))
    assert error.kind is ErrorKind.REAUTH_REQUIRED
    error = await fails(sandbox.x.me(""))
    assert error.kind is ErrorKind.REAUTH_REQUIRED


async def test_x_account_activity_subscription(sandbox: Sandbox) -> None:
    token = await x_connect(sandbox)
    error = await fails(sandbox.x.subscribe_account_activity(token.access_token, "1234567890"))
    assert (error.status, error.kind) == (404, ErrorKind.INVALID_REQUEST)
    await sandbox.admin("POST", "/x/webhooks", {"webhook_id": "1234567890"})
    await sandbox.x.subscribe_account_activity(token.access_token, "1234567890")
    await sandbox.x.subscribe_account_activity(token.access_token, "1234567890")  # idempotent
    assert sandbox.state.x_webhooks["1234567890"] == ["2244994945"]
    assert (await sandbox.admin("GET", "/x/webhooks/1234567890"))["subscriptions"] == ["2244994945"]


async def test_x_direct_messages_and_replies(sandbox: Sandbox) -> None:
    token = (await x_connect(sandbox)).access_token
    await sandbox.admin("POST", "/x/users", {"id": "5550001", "username": "closed_dms", "accepts_dms": False})

    first = await sandbox.x.send_dm(token, "783214", "Hi, how can we help?")
    second = await sandbox.x.send_dm(token, "783214", "Hi, how can we help?")
    assert first.isdigit() and second.isdigit() and first != second
    record = sandbox.state.sent[0]
    assert (record.provider, record.path, record.status) == (
        "x",
        "/2/dm_conversations/with/783214/messages",
        201,
    )
    assert record.body == {"text": "Hi, how can we help?"}
    assert "authorization" not in {h.lower() for h in record.headers}

    error = await fails(sandbox.x.send_dm(token, "5550001", "hello"))
    assert (error.status, error.kind) == (403, ErrorKind.INVALID_REQUEST)
    error = await fails(sandbox.x.send_dm(token, "2244994945", "talking to myself"))
    assert (error.status, error.kind) == (400, ErrorKind.INVALID_REQUEST)
    error = await fails(sandbox.x.send_dm(token, "783214", "z" * 10001))
    assert error.kind is ErrorKind.INVALID_REQUEST

    post_id = await sandbox.x.post_reply(token, "@someone we're on it", "1460323737035677698")
    assert post_id.isdigit()
    assert sandbox.state.sent[-1].body == {
        "text": "@someone we're on it",
        "reply": {"in_reply_to_tweet_id": "1460323737035677698"},
    }
    assert sandbox.state.x_posts[-1] == {
        "id": post_id,
        "user_id": "2244994945",
        "text": "@someone we're on it",
    }
    error = await fails(sandbox.x.post_reply(token, "@someone we're on it", "1460323737035677698"))
    assert (error.status, error.kind) == (403, ErrorKind.INVALID_REQUEST)
    error = await fails(sandbox.x.post_reply(token, "w" * 281, "1460323737035677698"))
    assert (error.status, error.kind) == (400, ErrorKind.INVALID_REQUEST)
    assert "280" in error.message
    error = await fails(sandbox.x.post_reply(token, "ok", "not-an-id"))
    assert error.status == 400


async def test_x_missing_scopes_are_permission_errors(sandbox: Sandbox) -> None:
    token = await x_connect(sandbox, scopes=["users.read", "tweet.read", "tweet.write"])
    error = await fails(sandbox.x.send_dm(token.access_token, "783214", "hi"))
    assert (error.status, error.kind) == (403, ErrorKind.PERMISSION_MISSING)
    assert "dm.write" in error.message
    error = await fails(sandbox.x.subscribe_account_activity(token.access_token, "1"))
    assert error.kind is ErrorKind.PERMISSION_MISSING


# --------------------------------------------------------------------------- plumbing


async def test_transport_failures_are_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(timeout=2) as http:
        graph = GraphClient(http, f"http://127.0.0.1:{port}", "app", "secret")
        error = await fails(graph.permissions("EAAsomething"))
        assert (error.status, error.code, error.kind) == (0, None, ErrorKind.RETRYABLE)
        x = XClient(http, f"http://127.0.0.1:{port}", "id", "secret")
        error = await fails(x.me("token"))
        assert (error.provider, error.kind) == ("x", ErrorKind.RETRYABLE)


async def test_reset_forgets_all_but_credentials_and_admin_validates(sandbox: Sandbox) -> None:
    await sandbox.connect_meta(pages=acme_pages())
    await sandbox.whatsapp_number()
    token = await x_connect(sandbox)
    await sandbox.admin("POST", "/x/webhooks", {"webhook_id": "4242"})
    await sandbox.x.subscribe_account_activity(token.access_token, "4242")
    await sandbox.admin("POST", "/faults", {"path_contains": "/x", "status": 500})
    await sandbox.admin("POST", "/clock", {"advance_s": 100})
    assert (await sandbox.admin("GET", "/clock"))["offset_s"] == 100
    assert await sandbox.admin("POST", "/reset") == {"reset": True}
    state = sandbox.state
    assert (state.meta_users, state.tokens, state.whatsapp_numbers, state.faults, state.sent) == (
        {},
        {},
        {},
        [],
        [],
    )
    assert state.clock_offset_s == 0 and state.meta_app_id == "dev-meta-app"
    assert state.x_webhooks == {"4242": []}  # app configuration stays, subscriptions go
    assert (await sandbox.admin("GET", "/health"))["status"] == "ok"

    assert await sandbox.admin_status("POST", "/meta/users", {"pages": [{"name": "no id"}]}) == 400
    assert await sandbox.admin_status("POST", "/meta/users", {"granted": "pages_messaging"}) == 400
    assert await sandbox.admin_status("POST", "/whatsapp/numbers", {"phone_number_id": "1"}) == 400
    assert await sandbox.admin_status("POST", "/x/users", {"id": "abc", "username": "u"}) == 400
    assert await sandbox.admin_status("POST", "/meta/users/nobody/remove-page-access/1") == 404
    response = await sandbox.http.post(f"{sandbox.url}/_sandbox/meta/users", content=b"not json")
    assert response.status_code == 400


async def test_parley_sandbox_command_serves_with_its_arguments() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "parley_sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--meta-app-id",
        "cli-app",
        "--meta-app-secret",
        "cli-secret",
        "--x-webhook-id",
        "1500000000000000001",
        "--log-level",
        "warning",
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await http.get(f"{url}/_sandbox/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.returncode is not None:
                    assert process.stderr is not None
                    pytest.fail("parley-sandbox exited: " + (await process.stderr.read()).decode())
                assert time.monotonic() < deadline, "the sandbox did not start in time"
                await asyncio.sleep(0.1)
            created = (await http.post(f"{url}/_sandbox/meta/users", json={"pages": acme_pages()})).json()
            graph = GraphClient(http, url, "cli-app", "cli-secret")
            token = await graph.exchange_code(created["code"], REDIRECT)
            assert len(await graph.pages(token.access_token)) == 2
            webhook = await http.get(f"{url}/_sandbox/x/webhooks/1500000000000000001")
            assert webhook.json() == {"webhook_id": "1500000000000000001", "subscriptions": []}
            # --x-webhook-id replaces the development default
            assert (await http.get(f"{url}/_sandbox/x/webhooks/dev-x-webhook")).status_code == 404
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


def test_the_default_configuration_matches_the_development_stack() -> None:
    devenv = (ROOT / "scripts" / "devenv.py").read_text()
    state = state_from_args(build_parser().parse_args([]))
    for value in (state.meta_app_id, state.meta_app_secret, state.x_client_id, state.x_client_secret):
        assert f'"{value}"' in devenv
    assert list(state.x_webhooks) == ["dev-x-webhook"]
    assert '"dev-x-webhook"' in devenv
