"""MetaSender, as the registry builds it from policy's settings, against the provider sandbox.

Every kind of Messenger and Instagram reply policy approves (a direct message, a private reply to
a comment, a public comment reply on Facebook or Instagram) is sent once: the sender answers the
provider's id of what it sent, and the sandbox recorded the call Meta's documentation describes.
Then each error class Meta documents and the sandbox can produce, for every kind of reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from parley_events import Provider, ReplyApproved
from parley_providers import ErrorKind, registry
from parley_providers.base import Sender, ThreadControl, ThreadRef
from parley_providers.meta.instagram import InstagramClient

from tests.support.sandbox import GRAPH_VERSION, REDIRECT, Sandbox, acme_pages, approved, fails

pytestmark = [pytest.mark.integration, pytest.mark.contract]

USER_ID = "10158000000000077"
PAGE_ID = "104512345678901"
IG_ACCOUNT_ID = "17841400000000001"  # Acme's Instagram account, linked to the Page
PSID = "6912345678901234"
IGSID = "935187264019283"
COMMENT_ID = "104512345678901_889900112233"
IG_COMMENT_ID = "17858893269000001"


@dataclass(frozen=True)
class Case:
    """A reply of one kind and the call Meta documents for it."""

    name: str
    reply: ReplyApproved
    path: str
    body: dict[str, Any]

    def __str__(self) -> str:
        return self.name


TEXT = "Thanks for writing!"


def case(name: str, provider: Provider, account: str, to: str, kind: str, path: str, **body: Any) -> Case:
    reply = approved(provider, account, to, kind, text=TEXT, messaging_type="RESPONSE")
    return Case(name, reply, f"/{GRAPH_VERSION}/{path}", body)


CASES = [
    case(
        "messenger_direct",
        Provider.MESSENGER,
        PAGE_ID,
        PSID,
        "direct",
        f"{PAGE_ID}/messages",
        recipient={"id": PSID},
        messaging_type="RESPONSE",
        message={"text": TEXT},
    ),
    # Instagram messages go through the linked Page's Send API (Messenger Platform for Instagram,
    # "Send a Message": /me/messages with the Page token), never the Instagram account's node
    case(
        "instagram_direct",
        Provider.INSTAGRAM,
        IG_ACCOUNT_ID,
        IGSID,
        "direct",
        "me/messages",
        recipient={"id": IGSID},
        messaging_type="RESPONSE",
        message={"text": TEXT},
    ),
    case(
        "messenger_private_reply",
        Provider.MESSENGER,
        PAGE_ID,
        COMMENT_ID,
        "private_reply",
        f"{PAGE_ID}/messages",
        recipient={"comment_id": COMMENT_ID},
        message={"text": TEXT},
    ),
    case(
        "instagram_private_reply",
        Provider.INSTAGRAM,
        IG_ACCOUNT_ID,
        IG_COMMENT_ID,
        "private_reply",
        "me/messages",
        recipient={"comment_id": IG_COMMENT_ID},
        message={"text": TEXT},
    ),
    case(
        "facebook_comment",
        Provider.MESSENGER,
        PAGE_ID,
        COMMENT_ID,
        "comment",
        f"{COMMENT_ID}/comments",
        message=TEXT,
    ),
    case(
        "instagram_comment",
        Provider.INSTAGRAM,
        IG_ACCOUNT_ID,
        IG_COMMENT_ID,
        "comment",
        f"{IG_COMMENT_ID}/replies",
        message=TEXT,
    ),
]


@dataclass
class Page:
    sandbox: Sandbox
    token: str
    """The Page token onboarding stores for the channel."""

    def sender(self, reply: ReplyApproved) -> Sender:
        return self.sandbox.senders[reply.provider]


@pytest.fixture
async def page(sandbox: Sandbox) -> Page:
    _, _, pages = await sandbox.connect_meta(user_id=USER_ID, pages=acme_pages())
    assert pages[0].id == PAGE_ID and pages[0].instagram_business_account_id == IG_ACCOUNT_ID
    return Page(sandbox, pages[0].access_token)


def test_the_registry_builds_one_meta_sender_for_messenger_and_instagram(sandbox: Sandbox) -> None:
    messenger, instagram = sandbox.senders[Provider.MESSENGER], sandbox.senders[Provider.INSTAGRAM]
    assert messenger is instagram
    assert type(messenger).__name__ == "MetaSender"


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_each_kind_of_reply_is_sent_as_meta_documents_it(case: Case, page: Page) -> None:
    sent_id = await page.sender(case.reply).send(case.reply, page.token)

    [record] = page.sandbox.state.sent
    assert (record.provider, record.method, record.path, record.status) == ("meta", "POST", case.path, 200)
    assert record.body == case.body
    assert record.result_id == sent_id and sent_id
    assert page.token not in repr(record)


async def test_a_human_agent_reply_carries_its_tag_past_the_24_hour_window(page: Page) -> None:
    page.sandbox.state.pages[PAGE_ID].enforce_window = True
    page.sandbox.state.open_window(PAGE_ID, PSID, ago_s=3 * 86400)
    reply = approved(
        Provider.MESSENGER,
        PAGE_ID,
        PSID,
        "direct",
        text="A person here: your refund went out today.",
        messaging_type="MESSAGE_TAG",
        tag="HUMAN_AGENT",
    )

    sent_id = await page.sender(reply).send(reply, page.token)

    [record] = page.sandbox.state.sent
    assert record.body == {
        "recipient": {"id": PSID},
        "messaging_type": "MESSAGE_TAG",
        "message": {"text": "A person here: your refund went out today."},
        "tag": "HUMAN_AGENT",
    }
    assert (record.status, record.result_id) == (200, sent_id)


@pytest.mark.parametrize("case", [c for c in CASES if c.reply.kind == "direct"], ids=str)
async def test_a_direct_reply_outside_the_window_is_window_closed(case: Case, page: Page) -> None:
    page.sandbox.state.pages[PAGE_ID].enforce_window = True
    page.sandbox.state.open_window(PAGE_ID, case.reply.recipient_id, ago_s=25 * 3600)

    error = await fails(page.sender(case.reply).send(case.reply, page.token))

    assert (error.status, error.code, error.subcode, error.kind) == (
        400,
        10,
        2018278,
        ErrorKind.WINDOW_CLOSED,
    )


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_token_of_a_user_who_removed_the_app_needs_a_reconnect(case: Case, page: Page) -> None:
    await page.sandbox.admin("POST", f"/meta/users/{USER_ID}/deauthorize")

    error = await fails(page.sender(case.reply).send(case.reply, page.token))

    assert (error.code, error.subcode, error.kind) == (190, 458, ErrorKind.REAUTH_REQUIRED)
    assert registry.reauth_reason(case.reply.provider, error.code, error.subcode) == "app_removed"


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_permission_taken_back_is_a_missing_permission(case: Case, page: Page) -> None:
    await page.sandbox.admin("POST", f"/meta/users/{USER_ID}/permissions", {"granted": ["pages_show_list"]})

    error = await fails(page.sender(case.reply).send(case.reply, page.token))

    assert error.status == 403 and error.kind is ErrorKind.PERMISSION_MISSING
    assert error.code in (200, 230)  # the missing permission's code (230: pages_messaging)
    assert registry.reauth_reason(case.reply.provider, error.code, error.subcode) == "permission_revoked"


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_throttling_is_rate_limited_with_the_wait_meta_asks_for(case: Case, page: Page) -> None:
    await page.sandbox.fault(path_contains=case.path, status=429, retry_after_s=180)

    error = await fails(page.sender(case.reply).send(case.reply, page.token))

    assert (error.status, error.kind, error.retry_after_s) == (429, ErrorKind.RATE_LIMITED, 180.0)


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_server_fault_is_retryable(case: Case, page: Page) -> None:
    await page.sandbox.fault(path_contains=case.path, status=500)

    error = await fails(page.sender(case.reply).send(case.reply, page.token))

    assert (error.status, error.kind) == (500, ErrorKind.RETRYABLE)


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_reply_meta_refuses_as_it_is_is_not_retried(case: Case, page: Page) -> None:
    empty = case.reply.model_copy(update={"text": ""})

    error = await fails(page.sender(empty).send(empty, page.token))

    assert (error.status, error.code, error.kind) == (400, 100, ErrorKind.INVALID_REQUEST)
    assert [record.status for record in page.sandbox.state.sent] == [400]


async def test_a_messenger_text_over_2000_characters_is_refused(page: Page) -> None:
    reply = approved(Provider.MESSENGER, PAGE_ID, PSID, "direct", text="x" * 2001)

    error = await fails(page.sender(reply).send(reply, page.token))

    assert (error.code, error.kind) == (100, ErrorKind.INVALID_REQUEST)
    assert "2000" in error.message


async def test_a_second_private_reply_to_one_comment_is_refused(page: Page) -> None:
    reply = next(c.reply for c in CASES if c.reply.kind == "private_reply")
    await page.sender(reply).send(reply, page.token)

    error = await fails(page.sender(reply).send(reply, page.token))

    assert (error.code, error.kind) == (10900, ErrorKind.INVALID_REQUEST)


# --- Instagram accounts connected with Instagram Login: graph.instagram.com, the account's token

IG_LOGIN_ACCOUNT = "17841400000000099"


async def instagram_login_token(sandbox: Sandbox, **spec: Any) -> str:
    """An Instagram professional account logged in with Instagram Login; its 60-day token."""
    body = {"id": IG_LOGIN_ACCOUNT, "username": "acme.shop", "redirect_uri": REDIRECT, **spec}
    code = (await sandbox.admin("POST", "/instagram/accounts", body))["code"]
    url = sandbox.url
    ig = InstagramClient(
        sandbox.http,
        oauth_base_url=f"{url}/instagram-api",
        graph_base_url=f"{url}/instagram",
        app_id=sandbox.state.instagram_app_id,
        app_secret=sandbox.state.instagram_app_secret,
        api_version=GRAPH_VERSION,
    )
    short = await ig.exchange_code(code, REDIRECT)
    return (await ig.long_lived_token(short.token.access_token)).access_token


def login_reply(kind: str, to: str, **fields: Any) -> ReplyApproved:
    fields.setdefault("messaging_type", "RESPONSE")
    return approved(
        Provider.INSTAGRAM, IG_LOGIN_ACCOUNT, to, kind, text=TEXT, connect_path="instagram_login", **fields
    )


@pytest.mark.parametrize(
    ("kind", "to", "path", "body"),
    [
        ("direct", IGSID, "me/messages", {"recipient": {"id": IGSID}, "message": {"text": TEXT}}),
        (
            "private_reply",
            IG_COMMENT_ID,
            "me/messages",
            {"recipient": {"comment_id": IG_COMMENT_ID}, "message": {"text": TEXT}},
        ),
        ("comment", IG_COMMENT_ID, f"{IG_COMMENT_ID}/replies", {"message": TEXT}),
    ],
    ids=["direct", "private_reply", "comment"],
)
async def test_an_instagram_login_reply_goes_to_graph_instagram_com_with_the_accounts_token(
    sandbox: Sandbox, kind: str, to: str, path: str, body: dict[str, Any]
) -> None:
    token = await instagram_login_token(sandbox)
    sandbox.state.open_window(IG_LOGIN_ACCOUNT, IGSID)
    sandbox.state.sent.clear()
    reply = login_reply(kind, to)
    sent_id = await sandbox.senders[Provider.INSTAGRAM].send(reply, token)
    [record] = sandbox.state.sent
    assert (record.method, record.path, record.status) == ("POST", f"/instagram/{GRAPH_VERSION}/{path}", 200)
    assert record.body == body
    assert record.result_id == sent_id and sent_id
    assert token not in repr(record)


async def test_an_instagram_login_reply_keeps_the_window_and_the_human_agent_tag(sandbox: Sandbox) -> None:
    token = await instagram_login_token(sandbox)
    sender = sandbox.senders[Provider.INSTAGRAM]
    sandbox.state.open_window(IG_LOGIN_ACCOUNT, IGSID, ago_s=3 * 86400)
    closed = await fails(sender.send(login_reply("direct", IGSID), token))
    assert (closed.provider, closed.kind) == ("instagram", ErrorKind.WINDOW_CLOSED)
    tagged = login_reply("direct", IGSID, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
    assert await sender.send(tagged, token)
    assert sandbox.state.sent[-1].body["tag"] == "HUMAN_AGENT"
    # a Page-path reply of the same provider still goes through the Page's Send API
    assert all(r.path.startswith("/instagram/") for r in sandbox.state.sent)


# --- Conversation Routing: the sender takes and releases threads ------------------------------


@pytest.mark.parametrize(
    ("provider", "account_id", "customer", "node"),
    [(Provider.MESSENGER, PAGE_ID, PSID, PAGE_ID), (Provider.INSTAGRAM, IG_ACCOUNT_ID, IGSID, "me")],
    ids=["messenger", "instagram"],
)
async def test_the_sender_takes_and_releases_a_thread_through_the_page(
    page: Page, provider: Provider, account_id: str, customer: str, node: str
) -> None:
    sender = page.sandbox.senders[provider]
    assert isinstance(sender, ThreadControl)
    thread = ThreadRef(provider, account_id, customer, metadata="agent ana")
    state = page.sandbox.state.pages[PAGE_ID]
    state.thread_owners[customer] = "263902037430900"  # another app answers
    page.sandbox.state.calls.clear()

    await sender.take_thread_control(thread, page.token)
    assert state.thread_owners[customer] == page.sandbox.state.meta_app_id
    await sender.release_thread_control(thread, page.token)

    assert customer not in state.thread_owners
    assert [c.path for c in page.sandbox.state.calls] == [
        f"/{GRAPH_VERSION}/{node}/take_thread_control",
        f"/{GRAPH_VERSION}/{node}/release_thread_control",
    ]
    error = await fails(sender.release_thread_control(thread, page.token))
    assert error.kind is ErrorKind.INVALID_REQUEST
