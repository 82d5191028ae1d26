"""The router helpers every service's subscribers.py uses, and the publisher that keeps to what a
router declares."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from parley_events import (
    ChannelReauthRequired,
    MessageReceived,
    MessageStatusChanged,
    ReplySent,
    TemplateStatusChanged,
)
from parley_shared.kafka import (
    EventPublisher,
    UndeclaredEvent,
    UndecodableRecord,
    declared_events,
    decode_json,
    is_permanent,
    of_type,
    publishes,
    service_router,
    subscribed_topics,
)

from tests.unit.factories import message

pytestmark = pytest.mark.unit


class RecordingBroker:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, value: bytes, **kwargs: Any) -> None:
        self.published.append({"value": value, **kwargs})


def test_a_router_declares_the_event_types_it_publishes_in_its_namespace() -> None:
    router = service_router("staging")
    publishes(router, MessageReceived, MessageStatusChanged, title="normalized", description="d")
    publishes(router, ChannelReauthRequired, title="prompts", description="d")

    assert declared_events(router) == {
        MessageReceived.event_type: MessageReceived,
        MessageStatusChanged.event_type: MessageStatusChanged,
        ChannelReauthRequired.event_type: ChannelReauthRequired,
    }
    assert {p.topic for p in router.publishers} == {
        "staging.parley.messages.inbound.v1",
        "staging.parley.channel-events.v1",
    }


def test_one_declaration_is_one_topic() -> None:
    with pytest.raises(ValueError, match="one topic at a time"):
        publishes(service_router(""), MessageReceived, ReplySent, title="mixed", description="d")


def test_subscribers_read_their_topics_in_the_namespace() -> None:
    router = service_router("ns")

    @router.subscriber("parley.replies.v1", group_id="g")
    async def handle(reply: ReplySent) -> None: ...

    assert subscribed_topics(router) == {"ns.parley.replies.v1"}
    assert subscribed_topics(service_router("")) == set()


async def test_the_publisher_publishes_what_its_router_declares_and_refuses_the_rest() -> None:
    broker = RecordingBroker()
    publisher = EventPublisher(broker, source="/parley/test", namespace="ns")  # type: ignore[arg-type]
    router = service_router("ns")
    publishes(router, MessageReceived, title="normalized", description="d")
    event = message(1)

    with pytest.raises(UndeclaredEvent, match=r"parley\.message\.received\.v1"):
        await publisher.publish(event, event_id=event.event_id)  # nothing declared yet
    publisher.declare(router)
    await publisher.publish(event, event_id=event.event_id)
    with pytest.raises(UndeclaredEvent, match="does not declare"):
        await publisher.publish(
            ReplySent(
                reply_id="r",
                conversation_id="c",
                tenant_id="t",
                channel_id="ch",
                sender_type="human",
                provider_message_id="m",
                sent_at=event.provider_timestamp,
            ),
            event_id="r:sent",
        )

    [sent] = broker.published
    assert sent["topic"] == "ns.parley.messages.inbound.v1"
    assert sent["headers"]["ce_type"] == MessageReceived.event_type


def record(headers: dict[str, str], body: bytes = b"{}") -> Any:
    return SimpleNamespace(headers=headers, body=body)


async def test_a_type_filter_takes_records_by_their_ce_type_header() -> None:
    receipts_or_reviews = of_type(MessageStatusChanged, TemplateStatusChanged)

    assert await receipts_or_reviews(record({"ce_type": TemplateStatusChanged.event_type}))
    assert await receipts_or_reviews(record({"ce_type": MessageStatusChanged.event_type}))
    assert not await receipts_or_reviews(record({"ce_type": MessageReceived.event_type}))
    assert not await receipts_or_reviews(record({}))


async def test_a_value_that_is_not_json_is_permanent_bad_data() -> None:
    assert await decode_json(record({}, b'{"a": [1]}')) == {"a": [1]}
    with pytest.raises(UndecodableRecord) as refused:
        await decode_json(record({}, b"\x00not json"))
    assert is_permanent(refused.value)
