"""GraphClient's Facebook side (Login, Pages, the Send API, comments) against the provider sandbox.

Each test gets its own sandbox (fresh state) on a free 127.0.0.1 port and talks to it through
``GraphClient`` on a real ``httpx.AsyncClient``. A success is checked by what the method returns
and what the sandbox recorded; every error class Graph documents and the sandbox can produce is
checked, for every method, by the ``ProviderError`` kind and numbers it raises: a dead token
(code 190 and its subcode), throttling (with the wait Graph asks for), a server fault, no answer,
a closed messaging window and requests that can never succeed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from parley_providers import ErrorKind, registry
from parley_providers.meta.client import GraphClient, PageInfo
from parley_sandbox.state import Upload

from tests.support.sandbox import GRAPH_VERSION, REDIRECT, Sandbox, acme_pages, fails, near, nobody_listening

pytestmark = [pytest.mark.integration, pytest.mark.contract]


# --- Facebook Login


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


# --- Pages


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


async def test_page_subscribed_fields_reads_the_apps_fields_and_sees_them_dropped(sandbox: Sandbox) -> None:
    _, long, pages = await sandbox.connect_meta(pages=acme_pages())
    acme, outlet = pages
    assert await sandbox.graph.page_subscribed_fields(acme.id, acme.access_token) == frozenset()
    await sandbox.graph.subscribe_page(acme.id, acme.access_token, ["messages", "feed", "message_reads"])
    fields = await sandbox.graph.page_subscribed_fields(acme.id, acme.access_token)
    assert fields == {"messages", "feed", "message_reads"}

    # Meta drops fields after long delivery failures (the sandbox's switch for it)
    dropped = await sandbox.admin("POST", f"/meta/pages/{acme.id}/unsubscribe", {"fields": ["feed"]})
    assert dropped["subscribed_fields"] == ["messages", "message_reads"]
    assert await sandbox.graph.page_subscribed_fields(acme.id, acme.access_token) == {
        "messages",
        "message_reads",
    }
    await sandbox.admin("POST", f"/meta/pages/{acme.id}/unsubscribe", {})
    assert await sandbox.graph.page_subscribed_fields(acme.id, acme.access_token) == frozenset()

    error = await fails(sandbox.graph.page_subscribed_fields(outlet.id, acme.access_token))  # another Page's
    assert (error.code, error.subcode, error.kind) == (100, 33, ErrorKind.INVALID_REQUEST)
    error = await fails(sandbox.graph.page_subscribed_fields(outlet.id, long))  # a user token
    assert error.kind is ErrorKind.PERMISSION_MISSING
    _, _, limited = await sandbox.connect_meta(
        user_id="77", granted=["pages_show_list", "pages_messaging"], pages=[{"id": "555000111"}]
    )
    error = await fails(sandbox.graph.page_subscribed_fields("555000111", limited[0].access_token))
    assert (error.code, error.kind) == (200, ErrorKind.PERMISSION_MISSING)  # no pages_manage_metadata


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


# --- Messenger and Instagram: the Send API and comments


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
    assert sent[0].path == f"/{GRAPH_VERSION}/{acme.id}/messages"
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
        "POST", f"/meta/users/{sandbox.user_of(acme.id)}/permissions", {"granted": ["pages_show_list"]}
    )
    error = await fails(sandbox.graph.send_message(acme.id, acme.access_token, payload))
    assert (error.status, error.code, error.kind) == (403, 230, ErrorKind.PERMISSION_MISSING)


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
    assert sandbox.state.sent[-1].path == f"/{GRAPH_VERSION}/{comment}/comments"
    assert sandbox.state.sent[-1].body == {"message": "Thanks for asking!"}
    another = await sandbox.graph.reply_to_comment(comment, acme.access_token, "And more")
    assert another != reply_id

    ig_reply = await sandbox.graph.reply_to_instagram_comment("17858893269000001", acme.access_token, "Hi!")
    assert ig_reply.isdigit()
    assert sandbox.state.sent[-1].path == f"/{GRAPH_VERSION}/17858893269000001/replies"
    error = await fails(
        sandbox.graph.reply_to_instagram_comment("17858893269000002", outlet.access_token, "Hi")
    )
    assert (error.code, error.subcode) == (100, 33)  # that Page has no Instagram account

    error = await fails(sandbox.graph.reply_to_comment(comment, acme.access_token, "  "))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)


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


# --- token lifecycle


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
    response = await sandbox.http.get(
        f"{sandbox.url}/{GRAPH_VERSION}/me/permissions", params={"access_token": long}
    )
    assert response.status_code == 200
    assert {"permission": "pages_messaging", "status": "granted"} in response.json()["data"]


async def test_unknown_versions_and_paths_answer_in_graph_shape(sandbox: Sandbox) -> None:
    _, long, _ = await sandbox.connect_meta(pages=acme_pages())
    unversioned = GraphClient(sandbox.http, sandbox.url, "a", "b", api_version="21.0")
    error = await fails(unversioned.permissions(long))
    assert (error.code, error.kind) == (2500, ErrorKind.INVALID_REQUEST)
    response = await sandbox.http.get(f"{sandbox.url}/{GRAPH_VERSION}/me/friends/of/friends")
    assert response.json()["error"]["code"] == 2500


# --- every method against every error class -----------------------------------------------

# --- Conversation Routing: thread control


async def test_take_and_release_thread_control(sandbox: Sandbox) -> None:
    _, long, pages = await sandbox.connect_meta(pages=acme_pages())
    acme, outlet = pages
    customer = "6912345678901234"
    page = sandbox.state.pages[acme.id]
    page.thread_owners[customer] = "263902037430900"  # Page Inbox answers the thread

    await sandbox.graph.take_thread_control(acme.id, acme.access_token, customer, "agent ana")

    assert page.thread_owners[customer] == sandbox.state.meta_app_id
    [call] = [c for c in sandbox.state.calls if c.path.endswith("/take_thread_control")]
    assert call.path == f"/{GRAPH_VERSION}/{acme.id}/take_thread_control"
    await sandbox.graph.release_thread_control(acme.id, acme.access_token, customer)
    assert customer not in page.thread_owners
    # releasing a thread this app does not answer is refused
    error = await fails(sandbox.graph.release_thread_control(acme.id, acme.access_token, customer))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    error = await fails(sandbox.graph.take_thread_control(acme.id, long, customer))  # a user token
    assert (error.code, error.kind) == (210, ErrorKind.PERMISSION_MISSING)
    error = await fails(sandbox.graph.take_thread_control(outlet.id, acme.access_token, customer))
    assert (error.code, error.subcode, error.kind) == (100, 33, ErrorKind.INVALID_REQUEST)


# --- Instagram mentions (Instagram API with Facebook Login: the linked Page's token)

ACME_IG = "17841400000000001"


async def test_a_caption_mention_gives_the_caption_its_author_and_link(connected: Connected) -> None:
    sandbox, acme = connected.sandbox, connected.acme
    await sandbox.admin(
        "POST",
        "/instagram/mentions",
        {
            "account_id": ACME_IG,
            "media_id": MEDIA_ID,
            "caption": "Loving my @acme boots",
            "username": "marta.s",
        },
    )
    sandbox.state.calls.clear()

    found = await sandbox.graph.mentioned_media(ACME_IG, acme.access_token, MEDIA_ID)

    assert (found.id, found.text, found.username) == (MEDIA_ID, "Loving my @acme boots", "marta.s")
    assert found.permalink == f"https://www.instagram.com/p/{MEDIA_ID}/"
    [call] = sandbox.state.calls
    assert call.path == f"/{GRAPH_VERSION}/{ACME_IG}"  # the IG user node, the version from the setting


async def test_a_comment_mention_gives_the_comments_text_and_author(connected: Connected) -> None:
    sandbox, acme = connected.sandbox, connected.acme
    await sandbox.admin(
        "POST",
        "/instagram/mentions",
        {
            "account_id": ACME_IG,
            "media_id": MEDIA_ID,
            "comment_id": MENTION_COMMENT_ID,
            "text": "@acme do you ship to Porto?",
            "username": "rui.p",
        },
    )

    found = await sandbox.graph.mentioned_comment(ACME_IG, acme.access_token, MENTION_COMMENT_ID)

    assert (found.id, found.text, found.username) == (
        MENTION_COMMENT_ID,
        "@acme do you ship to Porto?",
        "rui.p",
    )
    # the comment's media is not itself a caption mention of the account
    error = await fails(sandbox.graph.mentioned_media(ACME_IG, acme.access_token, MEDIA_ID))
    assert (error.status, error.code, error.subcode, error.kind) == (400, 100, 33, ErrorKind.INVALID_REQUEST)


async def test_a_mention_graph_does_not_know_or_another_pages_profile_is_an_unknown_object(
    connected: Connected,
) -> None:
    sandbox, acme = connected.sandbox, connected.acme

    gone = await fails(sandbox.graph.mentioned_media(ACME_IG, acme.access_token, "18000000000000999"))
    elsewhere = await fails(sandbox.graph.mentioned_media("17841499999999999", acme.access_token, MEDIA_ID))

    assert (gone.code, gone.subcode, gone.kind) == (100, 33, ErrorKind.INVALID_REQUEST)
    assert (elsewhere.code, elsewhere.subcode, elsewhere.kind) == (100, 33, ErrorKind.INVALID_REQUEST)


async def test_a_mention_lookup_without_the_comments_permission_is_a_missing_permission(
    connected: Connected,
) -> None:
    sandbox, acme = connected.sandbox, connected.acme
    await _mentioned(connected)
    sandbox.state.meta_users[USER_ID].granted.remove("instagram_manage_comments")

    error = await fails(sandbox.graph.mentioned_media(ACME_IG, acme.access_token, MEDIA_ID))

    assert (error.status, error.code, error.kind) == (403, 10, ErrorKind.PERMISSION_MISSING)


async def test_a_mention_id_that_is_not_digits_is_refused_before_any_call(connected: Connected) -> None:
    connected.sandbox.state.calls.clear()

    error = await fails(
        connected.sandbox.graph.mentioned_media(ACME_IG, connected.acme.access_token, "1){id}")
    )

    assert error.kind is ErrorKind.INVALID_REQUEST
    assert connected.sandbox.state.calls == []


USER_ID = "10158000000000042"
MEDIA_ID = "18066677788899900"
MENTION_COMMENT_ID = "17988877766655544"
PSID = "6912345678901234"
COMMENT_ID = "104512345678901_889900112233"
IG_COMMENT_ID = "17858893269000001"


@dataclass
class Connected:
    """A user through Login with the two Acme Pages: what each Graph call needs."""

    sandbox: Sandbox
    short: str
    long: str
    acme: PageInfo

    async def code(self) -> str:
        created = await self.sandbox.admin(
            "POST", "/meta/codes", {"user_id": USER_ID, "redirect_uri": REDIRECT}
        )
        return str(created["code"])


@pytest.fixture
async def connected(sandbox: Sandbox) -> Connected:
    short, long, pages = await sandbox.connect_meta(user_id=USER_ID, pages=acme_pages())
    return Connected(sandbox, short, long, pages[0])


@dataclass(frozen=True)
class GraphCall:
    """One public GraphClient method, called the way Parley calls it."""

    name: str
    method: str
    path: str
    """Where the sandbox's fault switch catches it."""
    token: str | None
    """The token it carries: a user's (``user``), a Page's (``page``) or none of either."""
    run: Callable[[GraphClient, Connected], Awaitable[object]]

    def __str__(self) -> str:
        return self.name


async def _exchange_code(graph: GraphClient, c: Connected) -> object:
    return await graph.exchange_code(await c.code(), REDIRECT)


async def _exchange_signup_code(graph: GraphClient, c: Connected) -> object:
    made = await c.sandbox.admin(
        "POST", "/whatsapp/signups", {"waba_id": "102290129379999", "phone_number_id": "106540352279999"}
    )
    return await graph.exchange_signup_code(str(made["code"]))


async def _page_subscribed_fields(graph: GraphClient, c: Connected) -> object:
    c.sandbox.state.pages[c.acme.id].subscribed_fields = ["messages"]  # set up without a call
    return await graph.page_subscribed_fields(c.acme.id, c.acme.access_token)


def _text(recipient: str = PSID) -> dict[str, Any]:
    return {"recipient": {"id": recipient}, "messaging_type": "RESPONSE", "message": {"text": "Hi!"}}


async def _mentioned(c: Connected) -> None:
    await c.sandbox.admin(
        "POST",
        "/instagram/mentions",
        {
            "account_id": ACME_IG,
            "media_id": MEDIA_ID,
            "caption": "@acme",
            "username": "marta.s",
            "comment_id": MENTION_COMMENT_ID,
            "text": "@acme hi",
        },
    )
    c.sandbox.state.mentioned[MEDIA_ID].account_id = ACME_IG  # the caption mentions Acme too


async def _mentioned_media(graph: GraphClient, c: Connected) -> object:
    await _mentioned(c)
    return await graph.mentioned_media(ACME_IG, c.acme.access_token, MEDIA_ID)


async def _mentioned_comment(graph: GraphClient, c: Connected) -> object:
    await _mentioned(c)
    return await graph.mentioned_comment(ACME_IG, c.acme.access_token, MENTION_COMMENT_ID)


async def _release_thread_control(graph: GraphClient, c: Connected) -> object:
    # only the thread's active responder releases it: this app answers the thread already
    c.sandbox.state.pages[c.acme.id].thread_owners[PSID] = c.sandbox.state.meta_app_id
    return await graph.release_thread_control(c.acme.id, c.acme.access_token, PSID)


async def _upload_bytes(graph: GraphClient, c: Connected) -> object:
    session = Upload("upload:1850000000000000001", "p.jpg", 4, "image/jpeg")
    c.sandbox.state.uploads[session.id] = session  # opened without a call
    return await graph.upload_bytes(session.id, c.long, b"jpeg")


CALLS = [
    GraphCall(
        "start_upload",
        "POST",
        "/uploads",
        "user",
        lambda g, c: g.start_upload(c.long, "p.jpg", 4, "image/jpeg"),
    ),
    GraphCall("upload_bytes", "POST", "/upload:", "user", _upload_bytes),
    GraphCall("exchange_code", "GET", "/oauth/access_token", None, _exchange_code),
    GraphCall(
        "long_lived_token", "GET", "/oauth/access_token", "user", lambda g, c: g.long_lived_token(c.short)
    ),
    GraphCall("permissions", "GET", "/me/permissions", "user", lambda g, c: g.permissions(c.long)),
    GraphCall("pages", "GET", "/me/accounts", "user", lambda g, c: g.pages(c.long)),
    GraphCall("debug_token", "GET", "/debug_token", None, lambda g, c: g.debug_token(c.long)),
    GraphCall("exchange_signup_code", "GET", "/oauth/access_token", None, _exchange_signup_code),
    GraphCall("token_grants", "GET", "/debug_token", None, lambda g, c: g.token_grants(c.long)),
    GraphCall(
        "subscribe_page",
        "POST",
        "/subscribed_apps",
        "page",
        lambda g, c: g.subscribe_page(c.acme.id, c.acme.access_token, ["messages"]),
    ),
    GraphCall(
        "page_subscribed_fields",
        "GET",
        "/subscribed_apps",
        "page",
        _page_subscribed_fields,
    ),
    GraphCall(
        "unsubscribe_page",
        "DELETE",
        "/subscribed_apps",
        "page",
        lambda g, c: g.unsubscribe_page(c.acme.id, c.acme.access_token),
    ),
    GraphCall(
        "send_message",
        "POST",
        "/messages",
        "page",
        lambda g, c: g.send_message(c.acme.id, c.acme.access_token, _text()),
    ),
    GraphCall(
        "send_private_reply",
        "POST",
        "/messages",
        "page",
        lambda g, c: g.send_private_reply(c.acme.id, c.acme.access_token, COMMENT_ID, "We DM'd you"),
    ),
    GraphCall(
        "reply_to_comment",
        "POST",
        "/comments",
        "page",
        lambda g, c: g.reply_to_comment(COMMENT_ID, c.acme.access_token, "Thanks!"),
    ),
    GraphCall(
        "reply_to_instagram_comment",
        "POST",
        "/replies",
        "page",
        lambda g, c: g.reply_to_instagram_comment(IG_COMMENT_ID, c.acme.access_token, "Thanks!"),
    ),
    GraphCall(
        "take_thread_control",
        "POST",
        "/take_thread_control",
        "page",
        lambda g, c: g.take_thread_control(c.acme.id, c.acme.access_token, PSID, "agent ana took it"),
    ),
    GraphCall("release_thread_control", "POST", "/release_thread_control", "page", _release_thread_control),
    GraphCall("mentioned_media", "GET", f"/{ACME_IG}", "page", _mentioned_media),
    GraphCall("mentioned_comment", "GET", f"/{ACME_IG}", "page", _mentioned_comment),
]
WITH_TOKEN = [call for call in CALLS if call.token is not None]
WITH_USER_TOKEN = [call for call in CALLS if call.token == "user"]


def test_every_public_graph_method_is_in_a_contract_table() -> None:
    """A new method of the client gets its row here (Facebook) or in whatsapp/test_client.py."""
    public = {
        name
        for name, member in vars(GraphClient).items()
        if not name.startswith("_") and not isinstance(member, property)  # api_version: a value, no call
    }
    whatsapp = {name for name in public if name.startswith("whatsapp_")}
    assert {call.name for call in CALLS} == public - whatsapp
    assert whatsapp  # the WhatsApp Cloud API calls: tests/providers/whatsapp/test_client.py


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_every_call_succeeds_and_the_sandbox_records_it(call: GraphCall, connected: Connected) -> None:
    sandbox = connected.sandbox
    sandbox.state.calls.clear()

    result = await call.run(sandbox.graph, connected)

    assert result is None or result  # a value where the method answers one
    [recorded] = sandbox.state.calls
    assert (recorded.method, recorded.status) == (call.method, 200)
    assert recorded.path.startswith(f"/{GRAPH_VERSION}/") and call.path in recorded.path


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_throttling_is_rate_limited_with_the_wait_graph_asks_for(
    call: GraphCall, connected: Connected
) -> None:
    sandbox = connected.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=429, retry_after_s=120)

    error = await fails(call.run(sandbox.graph, connected))

    assert (error.provider, error.status, error.code, error.kind) == ("meta", 429, 4, ErrorKind.RATE_LIMITED)
    assert error.retry_after_s == 120.0  # estimated_time_to_regain_access: 2 minutes
    await call.run(sandbox.graph, connected)  # the throttle was for that one call


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_graph_code_of_the_app_rate_limit_family_is_rate_limited(
    call: GraphCall, connected: Connected
) -> None:
    sandbox = connected.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=400, code=80001, retry_after_s=60)

    error = await fails(call.run(sandbox.graph, connected))

    assert (error.status, error.code, error.kind, error.retry_after_s) == (
        400,
        80001,
        ErrorKind.RATE_LIMITED,
        60.0,
    )


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_server_fault_or_a_proxys_error_page_is_retryable(
    call: GraphCall, connected: Connected
) -> None:
    sandbox = connected.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=500)
    await sandbox.fault(path_contains=call.path, method=call.method, status=502, plain=True)

    graph_shaped = await fails(call.run(sandbox.graph, connected))
    plain = await fails(call.run(sandbox.graph, connected))

    assert (graph_shaped.status, graph_shaped.code, graph_shaped.kind) == (500, 2, ErrorKind.RETRYABLE)
    assert graph_shaped.trace_id  # fbtrace_id, for Meta's support
    assert (plain.status, plain.code, plain.kind) == (502, None, ErrorKind.RETRYABLE)


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_request_graph_refuses_as_it_is_is_not_retried(call: GraphCall, connected: Connected) -> None:
    sandbox = connected.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=400, code=100)

    error = await fails(call.run(sandbox.graph, connected))

    assert (error.status, error.code, error.kind) == (400, 100, ErrorKind.INVALID_REQUEST)


@pytest.mark.parametrize("call", WITH_TOKEN, ids=str)
async def test_a_token_of_a_user_who_removed_the_app_needs_a_reconnect(
    call: GraphCall, connected: Connected
) -> None:
    sandbox = connected.sandbox
    await sandbox.admin("POST", f"/meta/users/{USER_ID}/deauthorize")

    error = await fails(call.run(sandbox.graph, connected))

    assert (error.status, error.code, error.subcode, error.kind) == (400, 190, 458, ErrorKind.REAUTH_REQUIRED)
    assert registry.reauth_reason("messenger", error.code, error.subcode) == "app_removed"
    assert connected.long not in str(error) and connected.acme.access_token not in str(error)


@pytest.mark.parametrize("call", WITH_USER_TOKEN, ids=str)
async def test_an_expired_user_token_needs_a_reconnect(call: GraphCall, connected: Connected) -> None:
    connected.sandbox.state.advance(61 * 86400)  # past the long-lived token's 60 days

    error = await fails(call.run(connected.sandbox.graph, connected))

    assert (error.code, error.subcode, error.kind) == (190, 463, ErrorKind.REAUTH_REQUIRED)
    assert registry.reauth_reason("messenger", error.code, error.subcode) == "token_expired"


@pytest.mark.parametrize("call", [c for c in CALLS if c.token == "page"], ids=str)
async def test_a_page_token_whose_user_lost_the_page_is_a_missing_permission(
    call: GraphCall, connected: Connected
) -> None:
    sandbox = connected.sandbox
    await sandbox.admin("POST", f"/meta/users/{USER_ID}/remove-page-access/{connected.acme.id}")

    error = await fails(call.run(sandbox.graph, connected))

    assert (error.status, error.code, error.kind) == (403, 10, ErrorKind.PERMISSION_MISSING)
    assert registry.reauth_reason("messenger", error.code, error.subcode) == "permission_revoked"


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_no_answer_at_all_is_retryable(call: GraphCall, connected: Connected) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        nobody = GraphClient(http, nobody_listening(), "app", "secret", GRAPH_VERSION)

        error = await fails(call.run(nobody, connected))

    assert (error.provider, error.status, error.code, error.kind) == ("meta", 0, None, ErrorKind.RETRYABLE)
