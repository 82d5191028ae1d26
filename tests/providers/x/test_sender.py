"""XSender, as the registry builds it from policy's settings, against the provider sandbox.

A direct message and a reply to a mention are each sent once: the sender answers X's id of what it
sent and the sandbox recorded the X API v2 call. Then each error class X documents and the
sandbox can produce, for both kinds of reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

import pytest
from parley_events import Provider, ReplyApproved
from parley_providers import ErrorKind
from parley_providers.base import Sender

from tests.support.sandbox import X_USER_ID, Sandbox, approved, fails

pytestmark = [pytest.mark.integration, pytest.mark.contract]

CUSTOMER = "783214"
MENTION = "1460323737035677698"
KINDS = ["direct", "mention"]
_texts = count(1)


def reply(kind: str, text: str | None = None) -> ReplyApproved:
    # X refuses a handle's duplicate posts: every reply here says something new unless told
    text = text if text is not None else f"@ana_example we're on it ({next(_texts)})"
    recipient = MENTION if kind == "mention" else CUSTOMER
    return approved(Provider.X, X_USER_ID, recipient, kind, text=text)


@dataclass
class Handle:
    sandbox: Sandbox
    token: str

    @property
    def sender(self) -> Sender:
        return self.sandbox.senders[Provider.X]


@pytest.fixture
async def handle(sandbox: Sandbox) -> Handle:
    return Handle(sandbox, (await sandbox.x_connect()).access_token)


def test_the_registry_builds_the_x_sender(sandbox: Sandbox) -> None:
    assert type(sandbox.senders[Provider.X]).__name__ == "XSender"


async def test_a_direct_message_goes_to_the_one_to_one_conversation(handle: Handle) -> None:
    message = reply("direct", "How can we help?")

    event_id = await handle.sender.send(message, handle.token)

    [record] = handle.sandbox.state.sent
    assert (record.provider, record.method, record.path, record.status) == (
        "x",
        "POST",
        f"/2/dm_conversations/with/{CUSTOMER}/messages",
        201,
    )
    assert record.body == {"text": "How can we help?"}
    assert event_id.isdigit() and record.result_id == event_id
    assert "authorization" not in {name.lower() for name in record.headers}


async def test_a_reply_to_a_mention_is_a_post_in_reply_to_it(handle: Handle) -> None:
    message = reply("mention", "@ana_example we're on it")

    post_id = await handle.sender.send(message, handle.token)

    [record] = handle.sandbox.state.sent
    assert (record.path, record.status) == ("/2/tweets", 201)
    assert record.body == {"text": "@ana_example we're on it", "reply": {"in_reply_to_tweet_id": MENTION}}
    assert post_id.isdigit() and record.result_id == post_id
    assert handle.sandbox.state.x_posts == [
        {"id": post_id, "user_id": X_USER_ID, "text": "@ana_example we're on it"}
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_expired_token_needs_a_reconnect(kind: str, handle: Handle) -> None:
    handle.sandbox.state.advance(7201)

    error = await fails(handle.sender.send(reply(kind), handle.token))

    assert (error.provider, error.status, error.kind) == ("x", 401, ErrorKind.REAUTH_REQUIRED)
    assert handle.token not in str(error)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_token_without_the_write_scope_is_a_missing_permission(kind: str, sandbox: Sandbox) -> None:
    token = await sandbox.x_connect(scopes=["users.read", "tweet.read", "dm.read"])

    error = await fails(sandbox.senders[Provider.X].send(reply(kind), token.access_token))

    assert (error.status, error.kind) == (403, ErrorKind.PERMISSION_MISSING)


@pytest.mark.parametrize("kind", KINDS)
async def test_throttling_is_rate_limited_until_the_reset_x_names(kind: str, handle: Handle) -> None:
    await handle.sandbox.fault(path_contains="/2/", method="POST", status=429, retry_after_s=60)

    error = await fails(handle.sender.send(reply(kind), handle.token))

    assert (error.status, error.kind) == (429, ErrorKind.RATE_LIMITED)
    assert error.retry_after_s is not None and 55 <= error.retry_after_s <= 61


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_fault_is_retryable(kind: str, handle: Handle) -> None:
    await handle.sandbox.fault(path_contains="/2/", method="POST", status=503)

    error = await fails(handle.sender.send(reply(kind), handle.token))

    assert (error.status, error.kind) == (503, ErrorKind.RETRYABLE)


async def test_a_dm_to_someone_who_does_not_take_them_is_refused(handle: Handle) -> None:
    await handle.sandbox.admin(
        "POST", "/x/users", {"id": "5550001", "username": "closed", "accepts_dms": False}
    )
    message = approved(Provider.X, X_USER_ID, "5550001", "direct", text="hello")

    error = await fails(handle.sender.send(message, handle.token))

    assert (error.status, error.kind) == (403, ErrorKind.INVALID_REQUEST)


async def test_a_duplicate_post_and_a_post_over_280_characters_are_refused(handle: Handle) -> None:
    await handle.sender.send(reply("mention", "@ana_example thanks"), handle.token)

    duplicate = await fails(handle.sender.send(reply("mention", "@ana_example thanks"), handle.token))
    too_long = await fails(handle.sender.send(reply("mention", "w" * 281), handle.token))

    assert (duplicate.status, duplicate.kind) == (403, ErrorKind.INVALID_REQUEST)
    assert (too_long.status, too_long.kind) == (400, ErrorKind.INVALID_REQUEST)
    assert "280" in too_long.message
