"""The normalizer reads a handover with Parley's own app ids (PARLEY_META_APP_ID,
PARLEY_INSTAGRAM_APP_ID): Meta tells every subscribed app of a take, Parley's own take included,
and that notification must not say another app took the thread."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from parley_events import ChannelSnapshot, ChannelStatus, Event, HandoverReceived, Provider
from parley_ingest.domain import deliveries
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.service import Normalizer
from parley_ingest.settings import NormalizerSettings

from tests.support import fixtures
from tests.support.aliases import empty_aliases

pytestmark = pytest.mark.unit

NOW = datetime(2024, 6, 10, 7, 0, tzinfo=UTC)
PARLEY_APP = "540118273645091"  # the fixtures' Parley app


class Channels:
    """Every account is claimed, by one tenant."""

    def lookup(self, provider: Provider, account_id: str) -> ChannelSnapshot:
        return ChannelSnapshot(
            channel_id="chn_1",
            tenant_id="ten_1",
            provider=provider,
            account_id=account_id,
            status=ChannelStatus.ACTIVE,
            revision=1,
        )

    async def catch_up(self, timeout: float) -> None:
        return None


def handover(fixture: str, own_app_ids: frozenset[str]) -> HandoverReceived:
    published: list[Event] = []

    async def publish(event: Event, event_id: str) -> None:
        published.append(event)

    worker = Normalizer(
        Channels(),  # type: ignore[arg-type]
        publish,
        0.0,
        RecentIds(100),
        empty_aliases(),
        clock=lambda: NOW,
        own_app_ids=own_app_ids,
    )
    payload = fixtures.load("meta", fixture)
    record = deliveries.archive_record("meta", orjson.dumps(payload), {}, NOW, payload)
    coroutine: Coroutine[Any, Any, Any] = worker.normalize(record)
    with pytest.raises(StopIteration):
        coroutine.send(None)  # all in memory: it finishes without waiting
    [event] = published
    assert isinstance(event, HandoverReceived)
    return event


@pytest.mark.parametrize(
    ("fixture", "parley_active"),
    [
        ("messenger_take_thread_control_by_parley", True),  # Parley's own take
        ("messenger_take_thread_control", False),  # taken from Parley by the Page Inbox
        ("messenger_pass_thread_control", True),  # passed to Parley
        ("messenger_pass_thread_control_to_another_app", False),  # between two other apps
        ("messenger_request_thread_control", None),  # nothing changes yet
    ],
)
def test_parleys_app_id_decides_who_answers_the_thread(fixture: str, parley_active: bool | None) -> None:
    event = handover(fixture, frozenset({PARLEY_APP}))
    assert event.parley_active is parley_active


def test_without_parleys_app_ids_a_take_reads_as_taken_from_parley() -> None:
    # the setting unset: each kind is read from the receiving app's side, as before
    assert handover("messenger_take_thread_control_by_parley", frozenset()).parley_active is False


def test_the_settings_name_both_of_parleys_apps() -> None:
    settings = NormalizerSettings(meta_app_id=PARLEY_APP, instagram_app_id=" 1784 ")  # type: ignore[call-arg]
    assert settings.own_app_ids() == frozenset({PARLEY_APP, "1784"})
    assert NormalizerSettings().own_app_ids() == frozenset()  # type: ignore[call-arg]
