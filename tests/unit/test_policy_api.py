"""Policy's HTTP boundary, in-process, with a stand-in service: what is refused before any work.

No ``from __future__ import annotations``: FastAPI reads the routes' signatures.
"""

from datetime import timedelta
from typing import Any, cast

import httpx
import pytest
from parley_events import ChannelRole, Event, ReplyApproved
from parley_policy.domain.length import MAX_TEXT_CHARACTERS
from parley_policy.entrypoints.api import create_api
from parley_policy.service import (
    ConversationUnknown,
    PolicyService,
    ThreadControlForbidden,
    ThreadControlUnsupported,
)
from parley_providers import ErrorKind, ProviderError
from parley_shared.auth import ApiSettings, TokenVerifier, issue_dev_token

from tests.support.fakes.policy import FakePolicyStore
from tests.unit.factories import T0, channel, message

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-of-at-least-32-bytes"


class RecordingService:
    """Answers "no such conversation" to everything, and remembers that it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def check(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("check")
        raise ConversationUnknown("c")

    async def request_reply(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("request_reply")
        raise ConversationUnknown("c")


async def post(service: RecordingService, path: str, body: dict[str, Any]) -> httpx.Response:
    api = create_api(cast(PolicyService, service), TokenVerifier(ApiSettings(jwt_hs256_secret=SECRET)))
    token = issue_dev_token(SECRET, "usr-1", "tenant-a", [])
    headers = {"authorization": f"Bearer {token}", "Idempotency-Key": "k1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api") as client:
        return await client.post(path, json=body, headers=headers)


@pytest.mark.parametrize("path", ["/conversations/c1/replies", "/conversations/c1/replies:check"])
async def test_text_past_the_cap_is_invalid_input_and_never_reaches_the_service(path: str) -> None:
    service = RecordingService()
    response = await post(service, path, {"kind": "mention", "comment_id": "1", "text": "a." * 8193})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert [f["field"] for f in error["fields"]] == ["body.text"]
    assert service.calls == []


@pytest.mark.parametrize("path", ["/conversations/c1/replies", "/conversations/c1/replies:check"])
async def test_text_at_the_cap_reaches_the_service(path: str) -> None:
    service = RecordingService()
    response = await post(service, path, {"text": "a" * MAX_TEXT_CHARACTERS})
    assert response.status_code == 404, response.text
    assert len(service.calls) == 1


# --- message tags through the API, with the real service over the in-memory store ------------------


class TagHarness:
    """PolicyService over FakePolicyStore behind the real API: one Messenger conversation whose
    customer wrote at T0, on a channel that allows the human-agent tag."""

    def __init__(self) -> None:
        self.now = T0
        self.published: list[Event] = []
        snapshot = channel().model_copy(update={"human_agent_tag": True})
        self.service = PolicyService(
            FakePolicyStore(),
            lambda cid: snapshot if cid == snapshot.channel_id else None,
            lambda tenant, user, cid: ChannelRole.CONTRIBUTOR,
            lambda cid: {},
            self.publish,
            lambda: self.now,
            80,
        )

    async def publish(self, event: Event, event_id: str) -> None:
        self.published.append(event)

    async def reply(self, body: dict[str, Any], *, after: timedelta, key: str) -> httpx.Response:
        self.now = T0 + after
        api = create_api(self.service, TokenVerifier(ApiSettings(jwt_hs256_secret=SECRET)))
        token = issue_dev_token(SECRET, "usr-1", "ten_acme", [])
        headers = {"authorization": f"Bearer {token}", "Idempotency-Key": key}
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post("/conversations/conv_1/replies", json=body, headers=headers)


@pytest.mark.parametrize("tag", ["ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"])
async def test_a_retired_tag_is_a_422_tag_retired_naming_the_day(tag: str) -> None:
    h = TagHarness()
    await h.service.on_inbound(message(0))

    response = await h.reply({"text": "Your order shipped", "tag": tag}, after=timedelta(days=2), key=tag)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "TAG_RETIRED"
    assert "2026-04-27" in body["message"] and tag in body["message"]
    assert [r["code"] for r in body["reasons"]] == ["TAG_RETIRED", "WINDOW_CLOSED"]
    assert body["decision_id"]
    assert not [e for e in h.published if isinstance(e, ReplyApproved)]


@pytest.mark.parametrize(
    ("after", "messaging_type", "tag"),
    [
        (timedelta(hours=23, minutes=59), "RESPONSE", None),
        (timedelta(hours=24), "RESPONSE", None),
        (timedelta(hours=24, seconds=1), "MESSAGE_TAG", "HUMAN_AGENT"),
        (timedelta(days=7), "MESSAGE_TAG", "HUMAN_AGENT"),
    ],
    ids=["23h59", "24h", "24h+1s", "7d"],
)
async def test_the_human_agent_tag_is_sent_only_after_the_24_hour_window(
    after: timedelta, messaging_type: str, tag: str | None
) -> None:
    h = TagHarness()
    await h.service.on_inbound(message(0))

    response = await h.reply({"text": "A person here", "tag": "HUMAN_AGENT"}, after=after, key="k")

    assert response.status_code == 202, response.text
    assert (response.json()["messaging_type"], response.json()["tag"]) == (messaging_type, tag)
    [approved] = [e for e in h.published if isinstance(e, ReplyApproved)]
    assert (approved.messaging_type, approved.tag) == (messaging_type, tag)


async def test_the_human_agent_tag_after_seven_days_is_a_422_window_closed() -> None:
    h = TagHarness()
    await h.service.on_inbound(message(0))
    response = await h.reply(
        {"text": "A person here", "tag": "HUMAN_AGENT"}, after=timedelta(days=7, seconds=1), key="k"
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "WINDOW_CLOSED"


# --- thread control through the API ------------------------------------------------------------


class ThreadService:
    """Stands in for the service's thread control: an outcome or an exception per call."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.asked: list[tuple[str, bool]] = []

    async def thread_control(
        self, tenant_id: str, user_id: str, is_admin: bool, conversation_id: str, take: bool
    ) -> bool:
        self.asked.append((conversation_id, take))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return take


@pytest.mark.parametrize(("action", "take"), [("take", True), ("release", False)])
async def test_take_and_release_answer_who_answers_the_thread(action: str, take: bool) -> None:
    service = ThreadService(None)

    response = await post(cast(Any, service), f"/conversations/c1/thread-control:{action}", {})

    assert response.status_code == 200, response.text
    assert response.json() == {"conversation_id": "c1", "parley_active": take}
    assert service.asked == [("c1", take)]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ThreadControlForbidden("c1"), 403, "ROLE_FORBIDDEN"),
        (ConversationUnknown("c1"), 404, "CONVERSATION_NOT_FOUND"),
        (ThreadControlUnsupported("c1"), 422, "THREAD_CONTROL_UNSUPPORTED"),
        (
            ProviderError("meta", 400, 100, None, "secret-ish text", ErrorKind.INVALID_REQUEST),
            502,
            "PROVIDER_REFUSED",
        ),
    ],
    ids=["viewer", "unknown", "unsupported", "provider"],
)
async def test_a_refused_thread_control_call_is_answered_by_its_kind(
    error: Exception, status: int, code: str
) -> None:
    response = await post(cast(Any, ThreadService(error)), "/conversations/c1/thread-control:take", {})

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert "secret-ish" not in response.text
