"""Policy's HTTP boundary, in-process, with a stand-in service: what is refused before any work.

No ``from __future__ import annotations``: FastAPI reads the routes' signatures.
"""

from typing import Any, cast

import httpx
import pytest
from parley_policy.domain.length import MAX_TEXT_CHARACTERS
from parley_policy.entrypoints.api import create_api
from parley_policy.service import ConversationUnknown, PolicyService
from parley_shared.auth import ApiSettings, TokenVerifier, issue_dev_token

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
