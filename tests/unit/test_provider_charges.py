"""What X bills, counted per channel and category: X Activity API deliveries by the normalizer (once
per delivery), X replies by policy's delivery after reply.sent. The labels are the channel id and
a category of X's fixed set, whatever the payload says."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from parley_events import Event, Provider, ReplyApproved, SenderType
from parley_ingest.domain import deliveries
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.service import UNATTRIBUTED, Normalizer
from parley_policy.domain.retry import RetryBudget
from parley_policy.service import Delivery
from parley_providers.x.billing import EVENT_CATEGORIES, REPLY_CATEGORIES
from prometheus_client import REGISTRY

from tests.support.aliases import empty_aliases
from tests.unit.test_normalize_per_item import Channels

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "x"


def charges(service: str, channel_id: str, category: str) -> float:
    labels = {"provider": "x", "channel_id": channel_id, "category": category}
    return REGISTRY.get_sample_value(f"parley_{service}_provider_charges_total", labels) or 0.0


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("waited on something outside memory")


class NoChannels(Channels):
    def lookup(self, provider: Provider, account_id: str) -> None:  # type: ignore[override]
        return None


def normalizer(directory: Any) -> Normalizer:
    async def publish(event: Event, event_id: str) -> None:
        return None

    return Normalizer(directory, publish, 0.0, RecentIds(100), empty_aliases(), clock=lambda: NOW)


def record(payload: dict[str, Any]) -> Any:
    return deliveries.archive_record("x", orjson.dumps(payload), {}, NOW, payload)


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def test_a_billed_delivery_counts_once_for_its_channel_and_a_free_one_in_its_own_category() -> None:
    worker = normalizer(Channels())
    received, sent = fixture("xaa_dm_received.json"), fixture("xaa_dm_sent.json")
    before = charges("normalizer", "chn_1", "event.dm.received")
    free_before = charges("normalizer", "chn_1", "event.dm.sent")
    run(worker.normalize(record(received)))
    run(worker.normalize(record(received)))  # the same delivery again (a redelivered record)
    run(worker.normalize(record(sent)))
    assert charges("normalizer", "chn_1", "event.dm.received") == before + 1
    assert charges("normalizer", "chn_1", "event.dm.sent") == free_before + 1


def test_account_activity_deliveries_are_not_counted_and_unknown_event_types_stay_in_the_fixed_set() -> None:
    worker = normalizer(NoChannels())
    aaa = fixture("dm_inbound.json")
    unknown = fixture("xaa_dm_received.json")
    unknown["data"]["event_type"] = "forged." + "x" * 40
    unknown["data"]["payload"] = {}
    before = {
        (s.labels["channel_id"], s.labels["category"])
        for m in REGISTRY.collect()
        if m.name == "parley_normalizer_provider_charges"
        for s in m.samples
        if s.name.endswith("_total")
    }
    other = charges("normalizer", UNATTRIBUTED, "event.other")
    run(worker.normalize(record(aaa)))
    run(worker.normalize(record(unknown)))
    after = {
        (s.labels["channel_id"], s.labels["category"])
        for m in REGISTRY.collect()
        if m.name == "parley_normalizer_provider_charges"
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert charges("normalizer", UNATTRIBUTED, "event.other") == other + 1
    assert after - before <= {(UNATTRIBUTED, "event.other")}
    assert {category for _, category in after} <= EVENT_CATEGORIES


class Sender:
    async def send(self, reply: ReplyApproved, token: str) -> str:
        return f"sent-{reply.reply_id}"


class Store:
    async def delivered(self, reply_id: str) -> str | None:
        return None

    async def record_delivery(self, reply_id: str, provider_message_id: str) -> None:
        return None


class Credentials:
    async def get(self, channel_id: str) -> Any:
        class Credential:
            access_token = "user-token"
            expires_at = None
            refresh_token = None

        return Credential()


def x_reply(reply_id: str, kind: str, text: str) -> ReplyApproved:
    return ReplyApproved(
        event_id=f"{reply_id}:approved",
        reply_id=reply_id,
        conversation_id="conv-x",
        tenant_id="tenant-a",
        channel_id="ch-x-costs",
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        occurred_at=NOW,
        provider=Provider.X,
        account_id="3000000000000000001",
        recipient_id="3000000000000000777",
        kind=kind,
        text=text,
    )


async def test_each_x_reply_sent_counts_in_its_billing_category_for_its_channel() -> None:
    published: list[Event] = []

    async def publish(event: Event, event_id: str) -> None:
        published.append(event)

    delivery = Delivery(
        Store(),  # type: ignore[arg-type]
        Credentials(),  # type: ignore[arg-type]
        {Provider.X: Sender()},
        publish,
        lambda: NOW,
        RetryBudget(budget_s=1.0, backoff_s=0.1, backoff_max_s=0.1),
    )
    before = {c: charges("policy", "ch-x-costs", c) for c in REPLY_CATEGORIES}
    await delivery.deliver(x_reply("r1", "dm", "thanks"))
    await delivery.deliver(x_reply("r2", "mention", "we are on it"))
    await delivery.deliver(x_reply("r3", "mention", "see https://example.com/track"))
    after = {c: charges("policy", "ch-x-costs", c) - before[c] for c in REPLY_CATEGORIES}
    assert after == {"dm.send": 1, "post.create.summoned": 1, "post.create.url": 1}
    assert len(published) == 3
