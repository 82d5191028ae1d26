"""Contract: XClient's X Activity API calls and x/subscriptions.py against the provider sandbox
(served by uvicorn over HTTP), and the sandbox's webhook deliveries and CRC re-check against a
webhook receiver that checks signatures with Parley's own X webhook code.

What the sandbox imitates, from X's documentation: docs.x.com/x-api/activity/quickstart (the
subscription calls and answers), the OpenAPI description of /2/activity/subscriptions (request
fields, tokens per operation, scopes per event type), docs.x.com/x-api/activity/event-payloads
(the delivery envelope) and docs.x.com/x-api/webhooks/introduction (signatures, the CRC).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.x.client import XClient
from parley_providers.x.inbound import parse_x
from parley_providers.x.subscriptions import EVENT_TYPES, TAG, ensure, remove, repair
from parley_providers.x.webhook import SIGNATURE_HEADER, crc_response, verify_x
from parley_sandbox import SandboxState, serve_sandbox
from parley_sandbox.state import XActivitySubscription
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers" / "x"
HANDLE = "3000000000000000001"
CUSTOMER = "3000000000000000777"
SECOND_HANDLE = "3000000000000000002"
WEBHOOK = "1900000000000000001"
REDIRECT = "https://app.parley.test/oauth/x/callback"


@dataclass
class Receiver:
    """A webhook endpoint: answers CRC checks with a secret, keeps the POSTs whose signature holds."""

    secret: str
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    unsigned: int = 0

    async def endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            await asyncio.sleep(self.delay_s)
            return JSONResponse(
                {"response_token": crc_response(request.query_params["crc_token"], self.secret)}
            )
        body = await request.body()
        if not verify_x(body, request.headers.get(SIGNATURE_HEADER), [self.secret]):
            self.unsigned += 1
            return Response(status_code=401)
        self.received.append(json.loads(body))
        return Response(status_code=200)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    """The receiver on a free 127.0.0.1 port, served by uvicorn in this event loop; its URL."""
    app = Starlette(routes=[Route("/webhooks/x", receiver.endpoint, methods=["GET", "POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # surfaces the start-up error
                raise RuntimeError("the webhook receiver stopped during start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/x"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class XSandbox:
    state: SandboxState
    url: str
    http: httpx.AsyncClient
    x: XClient

    @property
    def app_token(self) -> str:
        return self.state.x_bearer_token

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.request(method, f"{self.url}/_sandbox{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def user_token(self, user_id: str = HANDLE, username: str = "ExampleShopHelp", **spec: Any) -> str:
        verifier = "parley-contract-verifier-" + "v" * 43
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        created = await self.admin(
            "POST",
            "/x/users",
            {
                "id": user_id,
                "username": username,
                "redirect_uri": REDIRECT,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                **spec,
            },
        )
        return (await self.x.exchange_code(created["code"], REDIRECT, verifier)).access_token


@pytest.fixture
async def sandbox() -> AsyncIterator[XSandbox]:
    state = SandboxState()
    state.x_webhooks[WEBHOOK] = []
    async with serve_sandbox(state) as url, httpx.AsyncClient(timeout=10) as http:
        yield XSandbox(state, url, http, XClient(http, url, state.x_client_id, state.x_client_secret))


async def fails(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await awaitable
    return info.value


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


# --- the subscription calls -----------------------------------------------------------------


async def test_a_subscription_created_with_the_users_token_is_listed_with_the_app_token(
    sandbox: XSandbox,
) -> None:
    token = await sandbox.user_token()

    created = await sandbox.x.create_activity_subscription(token, "dm.received", HANDLE, WEBHOOK, "parley")

    assert created.subscription_id.isdigit()
    assert (created.event_type, created.user_id, created.webhook_id, created.tag) == (
        "dm.received",
        HANDLE,
        WEBHOOK,
        "parley",
    )
    assert created.direction is None
    assert await sandbox.x.activity_subscriptions(sandbox.app_token) == [created]


async def test_the_listing_follows_every_page(sandbox: XSandbox) -> None:
    for n in range(1_005):
        sub = XActivitySubscription(
            str(10_000 + n), "post.create", {"user_id": str(n + 1)}, "2026-11-30T00:00:00.000Z"
        )
        sandbox.state.x_activity[sub.subscription_id] = sub

    listed = await sandbox.x.activity_subscriptions(sandbox.app_token)

    assert [s.subscription_id for s in listed] == [str(10_000 + n) for n in range(1_005)]
    pages = [c for c in sandbox.state.calls if c.path == "/2/activity/subscriptions"]
    assert len(pages) == 2


async def test_a_deleted_subscription_is_gone(sandbox: XSandbox) -> None:
    token = await sandbox.user_token()
    created = await sandbox.x.create_activity_subscription(token, "dm.sent", HANDLE, WEBHOOK)

    assert await sandbox.x.delete_activity_subscription(sandbox.app_token, created.subscription_id) is True
    assert await sandbox.x.activity_subscriptions(sandbox.app_token) == []
    error = await fails(sandbox.x.delete_activity_subscription(sandbox.app_token, created.subscription_id))
    assert (error.status, error.kind) == (404, ErrorKind.INVALID_REQUEST)


async def test_the_same_subscription_twice_is_a_duplicate(sandbox: XSandbox) -> None:
    token = await sandbox.user_token()
    await sandbox.x.create_activity_subscription(token, "post.mention.create", HANDLE, WEBHOOK)

    error = await fails(sandbox.x.create_activity_subscription(token, "post.mention.create", HANDLE, WEBHOOK))

    assert (error.status, error.kind) == (409, ErrorKind.INVALID_REQUEST)
    assert "DuplicateSubscriptionFailed" in error.message
    assert len(sandbox.state.x_activity) == 1


@pytest.mark.parametrize(
    ("event_type", "user_id", "webhook_id", "status", "kind"),
    [
        ("dm.received", "not-a-user-id", WEBHOOK, 400, ErrorKind.INVALID_REQUEST),  # invalid filter
        ("dm.received", SECOND_HANDLE, WEBHOOK, 403, ErrorKind.INVALID_REQUEST),  # someone else's DMs
        ("dm.everything", HANDLE, WEBHOOK, 400, ErrorKind.INVALID_REQUEST),  # no such event type
        ("dm.received", HANDLE, "1900000000000000999", 400, ErrorKind.INVALID_REQUEST),  # no such webhook
        ("dm.received", HANDLE, "dev-x-webhook", 400, ErrorKind.INVALID_REQUEST),  # not a webhook id
    ],
    ids=["invalid filter", "another user", "unknown event type", "unknown webhook", "malformed webhook id"],
)
async def test_refused_subscriptions(
    sandbox: XSandbox, event_type: str, user_id: str, webhook_id: str, status: int, kind: ErrorKind
) -> None:
    token = await sandbox.user_token()

    error = await fails(sandbox.x.create_activity_subscription(token, event_type, user_id, webhook_id))

    assert (error.status, error.kind) == (status, kind)
    assert sandbox.state.x_activity == {}


async def test_a_token_without_the_events_scope_is_refused(sandbox: XSandbox) -> None:
    token = await sandbox.user_token(scopes=["tweet.read", "users.read", "offline.access"])

    error = await fails(sandbox.x.create_activity_subscription(token, "dm.received", HANDLE, WEBHOOK))
    assert (error.status, error.kind) == (403, ErrorKind.PERMISSION_MISSING)
    # tweet.read is what post events need
    await sandbox.x.create_activity_subscription(token, "post.mention.create", HANDLE, WEBHOOK)


async def test_unauthorized_calls(sandbox: XSandbox) -> None:
    token = await sandbox.user_token()

    no_token = await fails(
        sandbox.x.create_activity_subscription("not-a-token", "dm.received", HANDLE, WEBHOOK)
    )
    assert (no_token.status, no_token.kind) == (401, ErrorKind.REAUTH_REQUIRED)
    # a private event needs the user's own token, not the app's
    app_only = await fails(
        sandbox.x.create_activity_subscription(sandbox.app_token, "dm.received", HANDLE, WEBHOOK)
    )
    assert (app_only.status, app_only.kind) == (403, ErrorKind.PERMISSION_MISSING)
    # listing takes the app's token, or a user's with like.read, which Parley's login does not ask
    listing = await fails(sandbox.x.activity_subscriptions(token))
    assert (listing.status, listing.kind) == (403, ErrorKind.PERMISSION_MISSING)
    assert "like.read" in listing.message
    # deleting takes the app's token only
    created = await sandbox.x.create_activity_subscription(token, "dm.received", HANDLE, WEBHOOK)
    deleting = await fails(sandbox.x.delete_activity_subscription(token, created.subscription_id))
    assert (deleting.status, deleting.kind) == (403, ErrorKind.PERMISSION_MISSING)
    assert list(sandbox.state.x_activity) == [created.subscription_id]


async def test_a_user_token_with_like_read_and_tweet_read_may_list(sandbox: XSandbox) -> None:
    token = await sandbox.user_token(scopes=["tweet.read", "like.read", "dm.read", "users.read"])
    created = await sandbox.x.create_activity_subscription(token, "dm.sent", HANDLE, WEBHOOK)

    assert await sandbox.x.activity_subscriptions(token) == [created]


async def test_a_public_event_may_be_subscribed_with_the_app_token(sandbox: XSandbox) -> None:
    created = await sandbox.x.create_activity_subscription(sandbox.app_token, "post.create", HANDLE, WEBHOOK)

    assert created.event_type == "post.create"


async def test_a_fault_reaches_the_client_in_xs_shape(sandbox: XSandbox) -> None:
    await sandbox.admin("POST", "/faults", {"path_contains": "/2/activity/subscriptions", "status": 503})

    error = await fails(sandbox.x.activity_subscriptions(sandbox.app_token))

    assert (error.status, error.kind) == (503, ErrorKind.RETRYABLE)


# --- ensure, remove, repair against the sandbox ---------------------------------------------


async def test_connect_disconnect_and_repair_a_handle(sandbox: XSandbox) -> None:
    token = await sandbox.user_token()

    first = await ensure(
        sandbox.x, user_token=token, app_token=sandbox.app_token, user_id=HANDLE, webhook_id=WEBHOOK
    )
    again = await ensure(
        sandbox.x, user_token=token, app_token=sandbox.app_token, user_id=HANDLE, webhook_id=WEBHOOK
    )

    assert (first.created, first.present, first.failed) == (EVENT_TYPES, (), ())
    assert (again.created, again.present) == ((), EVENT_TYPES)
    listed = await sandbox.x.activity_subscriptions(sandbox.app_token)
    assert sorted(s.event_type for s in listed) == sorted(EVENT_TYPES)
    assert {(s.user_id, s.webhook_id, s.tag) for s in listed} == {(HANDLE, WEBHOOK, TAG)}

    # someone deletes two of them (X's console, another tool): the periodic check puts them back
    for lost in [s for s in listed if s.event_type in ("post.reply.create", "chat.received")]:
        await sandbox.x.delete_activity_subscription(sandbox.app_token, lost.subscription_id)
    repaired = await repair(
        sandbox.x, app_token=sandbox.app_token, user_tokens={HANDLE: token}, webhook_id=WEBHOOK
    )
    assert repaired.recreated == {HANDLE: ("post.reply.create", "chat.received")}
    assert repaired.orphans == ()
    assert len(await sandbox.x.activity_subscriptions(sandbox.app_token)) == len(EVENT_TYPES)

    removed = await remove(sandbox.x, app_token=sandbox.app_token, user_id=HANDLE, webhook_id=WEBHOOK)
    assert sorted(removed.removed) == sorted(EVENT_TYPES)
    assert await sandbox.x.activity_subscriptions(sandbox.app_token) == []


async def test_a_handle_whose_token_lacks_dm_read_gets_its_post_subscriptions_and_a_report(
    sandbox: XSandbox,
) -> None:
    token = await sandbox.user_token(scopes=["tweet.read", "tweet.write", "users.read", "offline.access"])

    report = await ensure(
        sandbox.x, user_token=token, app_token=sandbox.app_token, user_id=HANDLE, webhook_id=WEBHOOK
    )

    assert {f.subject for f in report.failed} == {"dm.received", "dm.sent", "chat.received", "chat.sent"}
    assert {f.kind for f in report.failed} == {"permission_missing"}
    assert set(report.created) == {e for e in EVENT_TYPES if e.startswith("post.")}


# --- deliveries and the CRC re-check --------------------------------------------------------


async def test_a_dm_reaches_the_webhook_in_xaa_form_signed_and_parses_as_the_aaa_form_does(
    sandbox: XSandbox,
) -> None:
    token = await sandbox.user_token()
    await sandbox.admin("POST", "/x/users", {"id": CUSTOMER, "username": "ana_example"})
    receiver = Receiver(sandbox.state.x_consumer_secret)
    async with serving(receiver) as url:
        await sandbox.admin("POST", "/x/webhooks", {"webhook_id": WEBHOOK, "url": url})
        await ensure(
            sandbox.x, user_token=token, app_token=sandbox.app_token, user_id=HANDLE, webhook_id=WEBHOOK
        )
        await sandbox.x.subscribe_account_activity(token, WEBHOOK)  # the same handle on AAA too

        sent = await sandbox.admin(
            "POST", "/x/dms", {"sender_id": CUSTOMER, "recipient_id": HANDLE, "text": "hello"}
        )

    assert receiver.unsigned == 0
    assert [d["api"] for d in sent["data"]] == ["aaa", "xaa"]
    assert all(d["status"] == 200 for d in sent["data"])
    aaa, xaa = receiver.received
    assert aaa["for_user_id"] == HANDLE
    assert xaa["data"]["event_type"] == "dm.received"
    assert xaa["data"]["filter"] == {"user_id": HANDLE}
    assert xaa["data"]["tag"] == TAG
    assert xaa["data"]["payload"]["users"][CUSTOMER]["data"]["username"] == "ana_example"
    [from_aaa] = parse_x(aaa).messages
    [from_xaa] = parse_x(xaa).messages
    assert from_xaa == from_aaa
    assert from_xaa.provider_message_id == sent["id"] != xaa["data"]["event_uuid"]


async def test_any_event_is_delivered_to_the_subscriptions_it_matches_only(sandbox: XSandbox) -> None:
    token = await sandbox.user_token()
    receiver = Receiver(sandbox.state.x_consumer_secret)
    mention = load("xaa_mention")["data"]
    async with serving(receiver) as url:
        await sandbox.admin("POST", "/x/webhooks", {"webhook_id": WEBHOOK, "url": url})
        await sandbox.x.create_activity_subscription(token, "post.mention.create", HANDLE, WEBHOOK, TAG)
        delivered = await sandbox.admin(
            "POST",
            "/x/activity/deliver",
            {
                "event_type": "post.mention.create",
                "user_id": HANDLE,
                "payload": mention["payload"],
                "includes": mention["includes"],
            },
        )
        elsewhere = await sandbox.admin(
            "POST",
            "/x/activity/deliver",
            {"event_type": "post.mention.create", "user_id": SECOND_HANDLE, "payload": {}},
        )

    assert [d["status"] for d in delivered["data"]] == [200]
    assert elsewhere["data"] == []
    [body] = receiver.received
    [message] = parse_x(body).messages
    assert (message.account_id, message.conversation_key) == (HANDLE, "thread:1800000000000000301")


async def test_the_crc_recheck_records_a_valid_answer_and_how_long_it_took(sandbox: XSandbox) -> None:
    receiver = Receiver(sandbox.state.x_consumer_secret)
    async with serving(receiver) as url:
        await sandbox.admin("POST", "/x/webhooks", {"webhook_id": WEBHOOK, "url": url})
        check = await sandbox.admin("POST", f"/x/webhooks/{WEBHOOK}/crc")

    assert (check["status"], check["valid"], check["reason"]) == (200, True, "ok")
    assert 0 < check["elapsed_s"] < sandbox.state.x_crc_timeout_s
    listed = await sandbox.admin("GET", f"/x/webhooks/{WEBHOOK}/crc")
    assert listed["valid"] is True
    assert listed["data"] == [check]


async def test_a_wrong_crc_answer_invalidates_the_webhook_and_stops_its_deliveries(sandbox: XSandbox) -> None:
    token = await sandbox.user_token()
    receiver = Receiver("not-the-consumer-secret")
    async with serving(receiver) as url:
        await sandbox.admin("POST", "/x/webhooks", {"webhook_id": WEBHOOK, "url": url})
        await sandbox.x.create_activity_subscription(token, "dm.received", HANDLE, WEBHOOK)
        check = await sandbox.admin("POST", f"/x/webhooks/{WEBHOOK}/crc")
        sent = await sandbox.admin(
            "POST", "/x/dms", {"sender_id": CUSTOMER, "recipient_id": HANDLE, "text": "hi"}
        )

    assert (check["valid"], check["reason"]) == (False, "wrong response_token")
    assert sent["data"] == []
    assert receiver.received == []


async def test_a_crc_answer_later_than_the_limit_fails_the_check(sandbox: XSandbox) -> None:
    sandbox.state.x_crc_timeout_s = 0.2
    receiver = Receiver(sandbox.state.x_consumer_secret, delay_s=1.0)
    async with serving(receiver) as url:
        await sandbox.admin("POST", "/x/webhooks", {"webhook_id": WEBHOOK, "url": url})
        check = await sandbox.admin("POST", f"/x/webhooks/{WEBHOOK}/crc")

    assert (check["valid"], check["status"], check["reason"]) == (False, None, "no answer within 0.2 s")
