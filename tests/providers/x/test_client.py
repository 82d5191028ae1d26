"""XClient (X API v2, OAuth 2.0 with PKCE) against the provider sandbox.

A success is checked by what the method returns and what the sandbox recorded; every error class
X documents and the sandbox can produce is checked for every method: an expired or revoked token
(401), a refused refresh token, a missing scope (the client-forbidden problem), throttling (429
with x-rate-limit-reset), server faults, no answer and requests that can never succeed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from parley_providers import ErrorKind, registry
from parley_providers.oauth import UserToken
from parley_providers.x.client import XClient, XUser

from tests.support.sandbox import (
    PKCE_VERIFIER,
    X_REDIRECT,
    X_USER_ID,
    Sandbox,
    fails,
    near,
    nobody_listening,
    pkce_challenge,
)

pytestmark = [pytest.mark.integration, pytest.mark.contract]


async def test_x_authorization_code_with_pkce_and_refresh_rotation(sandbox: Sandbox) -> None:
    verifier, challenge = PKCE_VERIFIER, pkce_challenge()
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
    token = await sandbox.x_connect()
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
    token = await sandbox.x_connect()
    error = await fails(sandbox.x.subscribe_account_activity(token.access_token, "1234567890"))
    assert (error.status, error.kind) == (404, ErrorKind.INVALID_REQUEST)
    await sandbox.admin("POST", "/x/webhooks", {"webhook_id": "1234567890"})
    await sandbox.x.subscribe_account_activity(token.access_token, "1234567890")
    await sandbox.x.subscribe_account_activity(token.access_token, "1234567890")  # idempotent
    assert sandbox.state.x_webhooks["1234567890"] == ["2244994945"]
    assert (await sandbox.admin("GET", "/x/webhooks/1234567890"))["subscriptions"] == ["2244994945"]


async def test_x_account_activity_unsubscription_takes_the_apps_bearer_token_only(sandbox: Sandbox) -> None:
    token = await sandbox.x_connect()
    await sandbox.admin("POST", "/x/webhooks", {"webhook_id": "1234567890"})
    await sandbox.x.subscribe_account_activity(token.access_token, "1234567890")
    bearer = sandbox.state.x_bearer_token
    error = await fails(
        sandbox.x.unsubscribe_account_activity(token.access_token, "1234567890", "2244994945")
    )
    assert error.status == 403  # a user token is refused
    await sandbox.x.unsubscribe_account_activity(bearer, "1234567890", "2244994945")
    assert sandbox.state.x_webhooks["1234567890"] == []
    error = await fails(sandbox.x.unsubscribe_account_activity(bearer, "1234567890", "2244994945"))
    assert error.status == 404  # not subscribed (any more)


async def test_x_direct_messages_and_replies(sandbox: Sandbox) -> None:
    token = (await sandbox.x_connect()).access_token
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
    token = await sandbox.x_connect(scopes=["users.read", "tweet.read", "tweet.write"])
    error = await fails(sandbox.x.send_dm(token.access_token, "783214", "hi"))
    assert (error.status, error.kind) == (403, ErrorKind.PERMISSION_MISSING)
    assert "dm.write" in error.message
    error = await fails(sandbox.x.subscribe_account_activity(token.access_token, "1"))
    assert error.kind is ErrorKind.PERMISSION_MISSING


async def test_x_fault_switches_answer_in_x_shape_and_classify(sandbox: Sandbox) -> None:
    token = await sandbox.x_connect()
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


# --- every method against every error class -----------------------------------------------

WEBHOOK_ID = "1500000000000000001"
CUSTOMER = "783214"
MENTION = "1460323737035677698"


@dataclass
class Handle:
    """An authorized X handle, a registered Account Activity webhook, and what calls need."""

    sandbox: Sandbox
    token: UserToken
    refresh_token: str
    posts: int = 0

    async def code(self) -> str:
        body = {"user_id": X_USER_ID, "redirect_uri": X_REDIRECT, "code_challenge": pkce_challenge()}
        return str((await self.sandbox.admin("POST", "/x/codes", body))["code"])

    def text(self) -> str:
        """A post's text: X refuses a handle's duplicate posts."""
        self.posts += 1
        return f"@someone we're on it ({self.posts})"


@pytest.fixture
async def handle(sandbox: Sandbox) -> Handle:
    token = await sandbox.x_connect()
    assert token.refresh_token is not None
    await sandbox.admin("POST", "/x/webhooks", {"webhook_id": WEBHOOK_ID})
    return Handle(sandbox, token, token.refresh_token)


async def _exchange_code(x: XClient, h: Handle) -> object:
    return await x.exchange_code(await h.code(), X_REDIRECT, PKCE_VERIFIER)


async def _unsubscribe(x: XClient, h: Handle) -> object:
    subscribed = h.sandbox.state.x_webhooks[WEBHOOK_ID]
    if X_USER_ID not in subscribed:
        subscribed.append(X_USER_ID)  # subscribed as subscribe_account_activity would
    return await x.unsubscribe_account_activity(h.sandbox.state.x_bearer_token, WEBHOOK_ID, X_USER_ID)


async def _refresh(x: XClient, h: Handle) -> object:
    renewed = await x.refresh(h.refresh_token)
    assert renewed.refresh_token is not None
    h.refresh_token = renewed.refresh_token  # X rotates refresh tokens on every use
    return renewed


@dataclass(frozen=True)
class XCall:
    """One public XClient method, called the way Parley calls it."""

    name: str
    method: str
    path: str
    user_token: bool
    """It carries the handle's access token (the OAuth calls carry a code or a refresh token)."""
    run: Callable[[XClient, Handle], Awaitable[object]]
    created: bool = False
    """X answers 201 Created (a DM, a post) instead of 200."""

    def __str__(self) -> str:
        return self.name


CALLS = [
    XCall("exchange_code", "POST", "/2/oauth2/token", False, _exchange_code),
    XCall("refresh", "POST", "/2/oauth2/token", False, _refresh),
    XCall("me", "GET", "/2/users/me", True, lambda x, h: x.me(h.token.access_token)),
    XCall(
        "subscribe_account_activity",
        "POST",
        "/subscriptions/all",
        True,
        lambda x, h: x.subscribe_account_activity(h.token.access_token, WEBHOOK_ID),
    ),
    XCall("unsubscribe_account_activity", "DELETE", "/subscriptions/", False, _unsubscribe),
    XCall(
        "send_dm",
        "POST",
        "/2/dm_conversations/with/",
        True,
        lambda x, h: x.send_dm(h.token.access_token, CUSTOMER, "How can we help?"),
        created=True,
    ),
    XCall(
        "post_reply",
        "POST",
        "/2/tweets",
        True,
        lambda x, h: x.post_reply(h.token.access_token, h.text(), MENTION),
        created=True,
    ),
]
WITH_TOKEN = [call for call in CALLS if call.user_token]


ACTIVITY_API = {"create_activity_subscription", "activity_subscriptions", "delete_activity_subscription"}
"""The X Activity API's subscription calls: their contract tests are in test_activity_api.py."""


def test_every_public_x_method_is_in_the_contract_table() -> None:
    public = {name for name in vars(XClient) if not name.startswith("_")}
    assert public >= ACTIVITY_API
    assert {call.name for call in CALLS} == public - ACTIVITY_API


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_every_call_succeeds_and_the_sandbox_records_it(call: XCall, handle: Handle) -> None:
    sandbox = handle.sandbox
    sandbox.state.calls.clear()

    result = await call.run(sandbox.x, handle)

    assert result is None or result
    [recorded] = sandbox.state.calls
    assert (recorded.method, recorded.status) == (call.method, 201 if call.created else 200)
    assert call.path in recorded.path


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_throttling_is_rate_limited_until_the_reset_x_names(call: XCall, handle: Handle) -> None:
    sandbox = handle.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=429, retry_after_s=30)

    error = await fails(call.run(sandbox.x, handle))

    assert (error.provider, error.status, error.kind) == ("x", 429, ErrorKind.RATE_LIMITED)
    assert error.retry_after_s is not None and 25 <= error.retry_after_s <= 31  # x-rate-limit-reset
    await call.run(sandbox.x, handle)  # the throttle was for that one call


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_server_fault_or_a_proxys_error_page_is_retryable(call: XCall, handle: Handle) -> None:
    sandbox = handle.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=503)
    await sandbox.fault(path_contains=call.path, method=call.method, status=502, plain=True)

    problem = await fails(call.run(sandbox.x, handle))
    plain = await fails(call.run(sandbox.x, handle))

    assert (problem.status, problem.kind) == (503, ErrorKind.RETRYABLE)
    assert (plain.status, plain.kind) == (502, ErrorKind.RETRYABLE)


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_request_x_refuses_as_it_is_is_not_retried(call: XCall, handle: Handle) -> None:
    sandbox = handle.sandbox
    await sandbox.fault(path_contains=call.path, method=call.method, status=400)

    error = await fails(call.run(sandbox.x, handle))

    # a refresh token the token endpoint refuses is one the user must replace by authorizing again
    expected = ErrorKind.REAUTH_REQUIRED if call.name == "refresh" else ErrorKind.INVALID_REQUEST
    assert (error.status, error.kind) == (400, expected)


@pytest.mark.parametrize("call", WITH_TOKEN, ids=str)
async def test_an_expired_access_token_needs_a_reconnect(call: XCall, handle: Handle) -> None:
    handle.sandbox.state.advance(7201)  # X's access tokens live two hours

    error = await fails(call.run(handle.sandbox.x, handle))

    assert (error.status, error.kind) == (401, ErrorKind.REAUTH_REQUIRED)
    assert handle.token.access_token not in str(error)


@pytest.mark.parametrize("call", WITH_TOKEN, ids=str)
async def test_a_revoked_access_token_needs_a_reconnect(call: XCall, handle: Handle) -> None:
    await handle.sandbox.admin("POST", f"/x/tokens/{handle.token.access_token}/revoke")

    error = await fails(call.run(handle.sandbox.x, handle))

    assert (error.status, error.kind) == (401, ErrorKind.REAUTH_REQUIRED)


@pytest.mark.parametrize("call", WITH_TOKEN, ids=str)
async def test_a_token_without_the_scope_the_call_needs_is_a_missing_permission(
    call: XCall, handle: Handle
) -> None:
    sandbox = handle.sandbox
    sandbox.state.tokens[handle.token.access_token].scopes = ["offline.access"]

    error = await fails(call.run(sandbox.x, handle))

    assert (error.status, error.kind) == (403, ErrorKind.PERMISSION_MISSING)
    assert error.error_type is not None and error.error_type.endswith("/client-forbidden")


async def test_a_refused_refresh_token_needs_a_reconnect(handle: Handle) -> None:
    await handle.sandbox.admin("POST", f"/x/tokens/{handle.refresh_token}/revoke")

    error = await fails(handle.sandbox.x.refresh(handle.refresh_token))

    assert (error.status, error.kind) == (400, ErrorKind.REAUTH_REQUIRED)
    assert registry.reauth_reason("x", error.code, error.subcode) == "provider_rejected_token"


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_no_answer_at_all_is_retryable(call: XCall, handle: Handle) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        nobody = XClient(http, nobody_listening(), "id", "secret")

        error = await fails(call.run(nobody, handle))

    assert (error.provider, error.status, error.kind) == ("x", 0, ErrorKind.RETRYABLE)
