"""Ingest under overload: a fixed number of publishes wait for the broker, the rest get 503 at once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import datetime
from typing import Any

import httpx
import pytest
from parley_events import Event
from parley_ingest.domain.admission import Admission
from parley_ingest.entrypoints.webhooks import webhook_routes
from parley_ingest.settings import IngestSettings
from starlette.applications import Starlette

from tests.support.payloads import body_of, messenger_text

pytestmark = pytest.mark.unit

SECRET = "app-secret"


class HeldBroker:
    """Publishes that wait until the test lets them through (a broker that is slow to acknowledge)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.all_waiting = asyncio.Event()
        self.expected = 3
        self.waiting = 0
        self.archived: list[str] = []

    async def publish(self, event: Event, *, event_id: str, time: datetime | None = None) -> None:
        self.waiting += 1
        if self.waiting >= self.expected:
            self.all_waiting.set()
        await self.release.wait()
        self.archived.append(event_id)


def test_an_admission_has_its_places_and_gives_them_back() -> None:
    admission = Admission(2)
    assert [admission.enter(), admission.enter(), admission.enter()] == [True, True, False]
    admission.leave()
    assert admission.enter()
    with pytest.raises(ValueError, match="at least one place"):
        Admission(0)
    empty = Admission(1)
    with pytest.raises(RuntimeError, match="not entered"):
        empty.leave()


def signed(text: str) -> tuple[bytes, dict[str, str]]:
    body = body_of(messenger_text("page-1", "customer-1", text=text))
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-hub-signature-256": signature}


async def test_deliveries_beyond_the_places_are_answered_503_at_once_and_the_others_complete() -> None:
    settings = IngestSettings(
        meta_app_secrets=SECRET, meta_verify_token="v", max_publishes_in_flight=3, overload_retry_after_s=2
    )
    broker = HeldBroker()
    app = Starlette(routes=webhook_routes(settings, broker))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:

        async def post(text: str) -> httpx.Response:
            body, headers = signed(text)
            return await client.post("/webhooks/meta", content=body, headers=headers)

        held = [asyncio.create_task(post(f"held {i}")) for i in range(3)]
        await asyncio.wait_for(broker.all_waiting.wait(), timeout=30)
        # every place is taken: the fourth is refused without waiting for the broker
        # (a bound on the wait only so a regression fails instead of hanging the suite)
        refused = await asyncio.wait_for(post("one too many"), timeout=30)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        assert refused.json()["code"] == "overloaded"
        # a forged delivery is refused for its signature, not counted against the places
        forged = await client.post(
            "/webhooks/meta",
            content=b"{}",
            headers={"content-type": "application/json", "x-hub-signature-256": "sha256=00"},
        )
        assert forged.status_code == 401
        # a verified delivery is refused before it is parsed (refusing must be cheap): this one
        # would otherwise be a 400 for not being a JSON object
        not_an_object = b"[1, 2, 3]"
        signature = "sha256=" + hmac.new(SECRET.encode(), not_an_object, hashlib.sha256).hexdigest()
        unparsed = await client.post(
            "/webhooks/meta",
            content=not_an_object,
            headers={"content-type": "application/json", "x-hub-signature-256": signature},
        )
        assert unparsed.status_code == 503
        broker.release.set()
        answers = await asyncio.gather(*held)
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert len(broker.archived) == 3
        # the places are given back: the retried delivery is accepted
        retried = await post("one too many")
        assert retried.status_code == 200
        assert len(broker.archived) == 4


async def test_a_failed_publish_gives_its_place_back() -> None:
    settings = IngestSettings(meta_app_secrets=SECRET, meta_verify_token="v", max_publishes_in_flight=1)

    class DownBroker:
        async def publish(self, event: Event, *, event_id: str, time: Any = None) -> None:
            raise TimeoutError("no acknowledgement")

    app = Starlette(routes=webhook_routes(settings, DownBroker()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        for text in ("first", "second"):
            body, headers = signed(text)
            answer = await client.post("/webhooks/meta", content=body, headers=headers)
            # broker_unavailable each time (no Retry-After), never "overloaded": the place came back
            assert answer.status_code == 503
            assert "retry-after" not in answer.headers
