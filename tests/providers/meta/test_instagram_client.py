"""InstagramClient (Business Login for Instagram, graph.instagram.com) against the provider sandbox.

The login's code exchange, the long-lived token, its refresh (too young, due, expired, revoked) and
the profile, each by what it returns and the ``ProviderError`` it raises; then every public method
under throttling, a server fault and no answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from parley_providers import ErrorKind
from parley_providers.meta.errors import PASSWORD_CHANGED, TOKEN_EXPIRED
from parley_providers.meta.instagram import (
    DEFAULT_INSTAGRAM_LOGIN_FIELDS,
    DEFAULT_INSTAGRAM_LOGIN_SCOPES,
    MIN_REFRESH_AGE,
    InstagramClient,
    instagram_client,
)
from pydantic import SecretStr

from tests.support.sandbox import GRAPH_VERSION, REDIRECT, Sandbox, fails, near, nobody_listening

pytestmark = [pytest.mark.integration, pytest.mark.contract]

IG_USER = "17841400000000001"


def settings(url: str, sandbox: Sandbox, **overrides: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "instagram_oauth_base_url": f"{url}/instagram-api",
        "instagram_graph_base_url": f"{url}/instagram",
        "graph_api_version": GRAPH_VERSION,
        "instagram_app_id": sandbox.state.instagram_app_id,
        "instagram_app_secret": SecretStr(sandbox.state.instagram_app_secret),
    }
    return SimpleNamespace(**{**values, **overrides})


def client(sandbox: Sandbox, url: str | None = None, **overrides: Any) -> InstagramClient:
    built = instagram_client(sandbox.http, settings(url or sandbox.url, sandbox, **overrides))
    assert built is not None
    return built


async def login_code(sandbox: Sandbox, **spec: Any) -> str:
    body = {"id": IG_USER, "username": "acme.shop", "redirect_uri": REDIRECT, **spec}
    return str((await sandbox.admin("POST", "/instagram/accounts", body))["code"])


async def long_lived(sandbox: Sandbox) -> str:
    ig = client(sandbox)
    authorization = await ig.exchange_code(await login_code(sandbox), REDIRECT)
    return (await ig.long_lived_token(authorization.token.access_token)).access_token


def test_no_client_without_an_instagram_app(sandbox: Sandbox) -> None:
    assert instagram_client(sandbox.http, settings(sandbox.url, sandbox, instagram_app_id=None)) is None
    assert instagram_client(sandbox.http, settings(sandbox.url, sandbox, instagram_app_secret=None)) is None


async def test_the_code_gives_a_short_lived_token_the_account_and_its_permissions(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    code = await login_code(sandbox)
    authorization = await ig.exchange_code(code, REDIRECT)
    assert authorization.user_id == IG_USER
    assert authorization.token.scopes == tuple(sorted(DEFAULT_INSTAGRAM_LOGIN_SCOPES))
    stored = sandbox.state.tokens[authorization.token.access_token]
    assert (stored.kind, stored.long_lived) == ("instagram", False)
    assert stored.expires_at is not None and stored.expires_at - stored.issued_at == 3600
    [exchange] = sandbox.state.calls
    assert (exchange.method, exchange.path) == ("POST", "/instagram-api/oauth/access_token")

    reused = await fails(ig.exchange_code(code, REDIRECT))
    assert (reused.provider, reused.status, reused.kind) == ("instagram", 400, ErrorKind.INVALID_REQUEST)
    assert "authorization code" in reused.message
    other = await fails(ig.exchange_code(await login_code(sandbox), "https://elsewhere.test/cb"))
    assert other.kind is ErrorKind.INVALID_REQUEST
    wrong_app = client(sandbox, instagram_app_secret=SecretStr("not-the-secret"))
    refused = await fails(wrong_app.exchange_code(await login_code(sandbox), REDIRECT))
    assert refused.kind is ErrorKind.INVALID_REQUEST


async def test_the_long_lived_token_lasts_60_days_and_only_a_short_lived_one_is_exchanged(
    sandbox: Sandbox,
) -> None:
    ig = client(sandbox)
    authorization = await ig.exchange_code(await login_code(sandbox), REDIRECT)
    token = await ig.long_lived_token(authorization.token.access_token)
    assert near(token.expires_at, timedelta(days=60))
    assert sandbox.state.tokens[token.access_token].long_lived
    error = await fails(ig.long_lived_token(token.access_token))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)


async def test_refresh_is_refused_under_24_hours_then_gives_another_60_days(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    token = await long_lived(sandbox)
    young = await fails(ig.refresh_token(token))
    assert (young.code, young.kind) == (100, ErrorKind.INVALID_REQUEST)  # never read as a dead token
    sandbox.state.advance(MIN_REFRESH_AGE.total_seconds() - 60)
    assert (await fails(ig.refresh_token(token))).kind is ErrorKind.INVALID_REQUEST
    sandbox.state.advance(60)
    refreshed = await ig.refresh_token(token)
    assert refreshed.access_token != token
    assert near(refreshed.expires_at, timedelta(days=60))  # from the answer's expires_in
    stored = sandbox.state.tokens[refreshed.access_token]
    assert stored.expires_at is not None and stored.expires_at - stored.issued_at == 60 * 86400
    [call] = [c for c in sandbox.state.calls if c.path == "/instagram/refresh_access_token"][-1:]
    assert call.status == 200


async def test_an_expired_or_revoked_token_cannot_be_refreshed(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    token = await long_lived(sandbox)
    sandbox.state.advance(61 * 86400)
    expired = await fails(ig.refresh_token(token))
    assert (expired.code, expired.subcode, expired.kind) == (190, TOKEN_EXPIRED, ErrorKind.REAUTH_REQUIRED)

    token = await long_lived(sandbox)
    sandbox.state.advance(2 * 86400)
    await sandbox.admin("POST", f"/meta/tokens/{token}/revoke", {"subcode": PASSWORD_CHANGED})
    revoked = await fails(ig.refresh_token(token))
    assert (revoked.code, revoked.subcode, revoked.kind) == (190, PASSWORD_CHANGED, ErrorKind.REAUTH_REQUIRED)


async def test_the_profile_names_the_professional_account(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    token = await long_lived(sandbox)
    sandbox.state.calls.clear()
    profile = await ig.profile(token)
    assert (profile.user_id, profile.username) == (IG_USER, "acme.shop")
    [call] = sandbox.state.calls
    assert (call.path, call.version) == (f"/instagram/{GRAPH_VERSION}/me", GRAPH_VERSION)
    error = await fails(ig.profile("not-a-token"))
    assert (error.code, error.kind) == (190, ErrorKind.REAUTH_REQUIRED)


async def test_subscribe_sets_the_accounts_webhook_fields(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    token = await long_lived(sandbox)
    await ig.subscribe(token, list(DEFAULT_INSTAGRAM_LOGIN_FIELDS))
    assert sandbox.state.instagram_accounts[IG_USER].subscribed_fields == list(DEFAULT_INSTAGRAM_LOGIN_FIELDS)
    error = await fails(ig.subscribe(token, ["messages", "telepathy"]))
    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    assert sandbox.state.instagram_accounts[IG_USER].subscribed_fields == list(DEFAULT_INSTAGRAM_LOGIN_FIELDS)


async def test_subscribed_fields_reads_the_apps_fields_and_sees_them_dropped(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    token = await long_lived(sandbox)
    assert await ig.subscribed_fields(token) == frozenset()  # logged in, not subscribed yet
    await ig.subscribe(token, list(DEFAULT_INSTAGRAM_LOGIN_FIELDS))
    assert await ig.subscribed_fields(token) == frozenset(DEFAULT_INSTAGRAM_LOGIN_FIELDS)
    # Meta drops some of the account's fields after failed deliveries
    await sandbox.admin("POST", f"/instagram/accounts/{IG_USER}/unsubscribe", {"fields": ["comments"]})
    assert await ig.subscribed_fields(token) == frozenset(DEFAULT_INSTAGRAM_LOGIN_FIELDS) - {"comments"}
    [read, *_] = [c for c in sandbox.state.calls if c.method == "GET" and c.path.endswith("/subscribed_apps")]
    assert read.path == f"/instagram/{GRAPH_VERSION}/me/subscribed_apps"
    # another app's entry is not this app's subscription
    other = client(sandbox, instagram_app_id="another-instagram-app")
    assert await other.subscribed_fields(token) == frozenset()
    error = await fails(ig.subscribed_fields("not-a-token"))
    assert (error.code, error.kind) == (190, ErrorKind.REAUTH_REQUIRED)


async def test_sends_need_the_window_or_a_comment_and_the_accounts_permissions(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    token = await long_lived(sandbox)
    payload = {"recipient": {"id": "ig-customer-1"}, "message": {"text": "Hi"}}
    closed = await fails(ig.send_message(token, payload))
    assert (closed.code, closed.subcode, closed.kind) == (10, 2018278, ErrorKind.WINDOW_CLOSED)
    sandbox.state.open_window(IG_USER, "ig-customer-1")
    assert (await ig.send_message(token, payload)).startswith("aWdfZAG1f")
    too_long = await fails(ig.send_message(token, {**payload, "message": {"text": "é" * 501}}))  # 1002 bytes
    assert too_long.kind is ErrorKind.INVALID_REQUEST
    assert await ig.send_private_reply(token, "17858893269000042", "We DM'd you")
    again = await fails(ig.send_private_reply(token, "17858893269000042", "Again"))
    assert again.code == 10900
    assert await ig.reply_to_comment("17858893269000042", token, "Thanks!")

    basic = await sandbox.admin(
        "POST",
        "/instagram/accounts",
        {"id": "17841400000000002", "granted": ["instagram_business_basic"], "redirect_uri": REDIRECT},
    )
    short = await ig.exchange_code(basic["code"], REDIRECT)
    limited = (await ig.long_lived_token(short.token.access_token)).access_token
    denied = await fails(ig.reply_to_comment("17858893269000042", limited, "Thanks!"))
    assert (denied.code, denied.kind) == (10, ErrorKind.PERMISSION_MISSING)


async def test_mentions_are_read_on_graph_instagram_com_with_the_accounts_own_token(sandbox: Sandbox) -> None:
    ig = client(sandbox)
    token = await long_lived(sandbox)
    await _mention(sandbox)

    media = await ig.mentioned_media(IG_USER, token, "18066677788899900")
    comment = await ig.mentioned_comment(IG_USER, token, "17988877766655544")

    assert (media.text, media.username) == ("@acme.shop", "ana")
    assert (comment.text, comment.username) == ("@acme.shop hello", "rui")
    lookups = [c for c in sandbox.state.calls if c.method == "GET" and c.path.endswith(IG_USER)]
    assert [c.path for c in lookups] == [f"/instagram/{GRAPH_VERSION}/{IG_USER}"] * 2
    gone = await fails(ig.mentioned_comment(IG_USER, token, "17988877766600000"))
    assert (gone.provider, gone.code, gone.subcode, gone.kind) == (
        "instagram",
        100,
        33,
        ErrorKind.INVALID_REQUEST,
    )
    other = await fails(ig.mentioned_media("17841499999999999", token, "18066677788899900"))
    assert (other.code, other.subcode) == (100, 33)


# --- every public method under the failures any call may meet


@dataclass(frozen=True)
class InstagramCall:
    name: str
    method: str
    path: str
    run: Callable[[InstagramClient, Sandbox], Awaitable[object]]

    def __str__(self) -> str:
        return self.name


async def _exchange_code(ig: InstagramClient, sandbox: Sandbox) -> object:
    return await ig.exchange_code(await login_code(sandbox), REDIRECT)


async def _long_lived(ig: InstagramClient, sandbox: Sandbox) -> object:
    short = await ig.exchange_code(await login_code(sandbox), REDIRECT)
    return await ig.long_lived_token(short.token.access_token)


async def _refresh(ig: InstagramClient, sandbox: Sandbox) -> object:
    token = await long_lived(sandbox)
    sandbox.state.advance(MIN_REFRESH_AGE.total_seconds())
    return await ig.refresh_token(token)


async def _profile(ig: InstagramClient, sandbox: Sandbox) -> object:
    return await ig.profile(await long_lived(sandbox))


async def _subscribe(ig: InstagramClient, sandbox: Sandbox) -> object:
    return await ig.subscribe(await long_lived(sandbox), ["messages"])


async def _subscribed_fields(ig: InstagramClient, sandbox: Sandbox) -> object:
    return await ig.subscribed_fields(await long_lived(sandbox))


async def _send_message(ig: InstagramClient, sandbox: Sandbox) -> object:
    token = await long_lived(sandbox)
    sandbox.state.open_window(IG_USER, "ig-customer-1")
    return await ig.send_message(token, {"recipient": {"id": "ig-customer-1"}, "message": {"text": "Hi"}})


async def _send_private_reply(ig: InstagramClient, sandbox: Sandbox) -> object:
    return await ig.send_private_reply(await long_lived(sandbox), "17858893269000042", "We DM'd you")


async def _reply_to_comment(ig: InstagramClient, sandbox: Sandbox) -> object:
    return await ig.reply_to_comment("17858893269000042", await long_lived(sandbox), "Thanks!")


async def _mention(sandbox: Sandbox) -> None:
    await sandbox.admin(
        "POST",
        "/instagram/mentions",
        {"account_id": IG_USER, "media_id": "18066677788899900", "caption": "@acme.shop", "username": "ana"},
    )
    await sandbox.admin(
        "POST",
        "/instagram/mentions",
        {
            "account_id": IG_USER,
            "media_id": "18066677788899901",
            "comment_id": "17988877766655544",
            "text": "@acme.shop hello",
            "username": "rui",
        },
    )


async def _mentioned_media(ig: InstagramClient, sandbox: Sandbox) -> object:
    token = await long_lived(sandbox)
    await _mention(sandbox)
    return await ig.mentioned_media(IG_USER, token, "18066677788899900")


async def _mentioned_comment(ig: InstagramClient, sandbox: Sandbox) -> object:
    token = await long_lived(sandbox)
    await _mention(sandbox)
    return await ig.mentioned_comment(IG_USER, token, "17988877766655544")


CALLS = [
    InstagramCall("exchange_code", "POST", "/instagram-api/oauth/access_token", _exchange_code),
    InstagramCall("long_lived_token", "GET", "/instagram/access_token", _long_lived),
    InstagramCall("refresh_token", "GET", "/instagram/refresh_access_token", _refresh),
    InstagramCall("profile", "GET", "/me", _profile),
    InstagramCall("subscribe", "POST", "/me/subscribed_apps", _subscribe),
    InstagramCall("subscribed_fields", "GET", "/me/subscribed_apps", _subscribed_fields),
    InstagramCall("send_message", "POST", "/me/messages", _send_message),
    InstagramCall("send_private_reply", "POST", "/me/messages", _send_private_reply),
    InstagramCall("reply_to_comment", "POST", "/replies", _reply_to_comment),
    InstagramCall("mentioned_media", "GET", f"/instagram/{GRAPH_VERSION}/{IG_USER}", _mentioned_media),
    InstagramCall("mentioned_comment", "GET", f"/instagram/{GRAPH_VERSION}/{IG_USER}", _mentioned_comment),
]


def test_every_public_method_is_in_the_table() -> None:
    public = {name for name in vars(InstagramClient) if not name.startswith("_")}
    assert {call.name for call in CALLS} == public


@pytest.mark.parametrize("call", CALLS, ids=str)
@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"status": 429}, ErrorKind.RATE_LIMITED),
        ({"status": 500}, ErrorKind.RETRYABLE),
        ({"status": 503, "plain": True}, ErrorKind.RETRYABLE),
    ],
    ids=["throttled", "server-fault", "plain-503"],
)
async def test_provider_failures_are_classified(
    call: InstagramCall, fault: dict[str, Any], kind: ErrorKind, sandbox: Sandbox
) -> None:
    await sandbox.fault(path_contains=call.path, method=call.method, **fault)
    error = await fails(call.run(client(sandbox), sandbox))
    assert (error.provider, error.kind) == ("instagram", kind)


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_no_answer_is_retryable(call: InstagramCall, sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        dead = instagram_client(http, settings(nobody_listening(), sandbox))
        assert dead is not None
        error = await fails(call.run(dead, sandbox))
    assert (error.status, error.kind) == (0, ErrorKind.RETRYABLE)
