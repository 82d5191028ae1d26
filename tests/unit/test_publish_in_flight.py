"""Publishing without waiting for each acknowledgement: what ``EventPublisher.confirm`` and a
``SendWindow`` report when the broker answers late, fails, or answers some sends and not others."""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka.errors
import pytest
from faststream.kafka import KafkaBroker
from parley_shared import metrics
from parley_shared.kafka import EventPublisher, SendWindow, Sent

from tests.support.fakes.bus import FakePublisher
from tests.unit.factories import message


def publisher() -> EventPublisher:
    return EventPublisher(KafkaBroker(), source="/parley/test", ack_timeout_s=0.05)


def sent(answer: Any = None, *, error: BaseException | None = None, pending: bool = False) -> Sent:
    ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if error is not None:
        ack.set_exception(error)
    elif not pending:
        ack.set_result(answer)
    return Sent(ack=ack, producer=None, event_type="com.parley.test.v1")


def published() -> float:
    return metrics.EVENTS_PUBLISHED.labels(event_type="com.parley.test.v1")._value.get()


async def test_confirm_counts_every_acknowledged_send() -> None:
    before = published()

    await publisher().confirm([sent(), sent(), sent()])

    assert published() - before == 3


async def test_confirm_raises_the_failure_of_any_send_and_counts_only_the_acknowledged() -> None:
    before = published()
    refused = aiokafka.errors.NotLeaderForPartitionError()

    with pytest.raises(aiokafka.errors.NotLeaderForPartitionError):
        await publisher().confirm([sent(), sent(error=refused), sent()])

    assert published() - before == 2


async def test_confirm_gives_up_on_sends_unanswered_within_the_ack_timeout() -> None:
    late = sent(pending=True)

    with pytest.raises(aiokafka.errors.KafkaTimeoutError, match="1 of 2 publishes not acknowledged"):
        await publisher().confirm([sent(), late])

    assert not late.ack.cancelled()  # left to the producer, which may still deliver it


async def test_a_send_abandoned_by_its_producer_is_a_connection_error_not_a_cancellation() -> None:
    abandoned = sent(pending=True)
    abandoned.ack.cancel()

    with pytest.raises(aiokafka.errors.KafkaConnectionError):
        await publisher().confirm([abandoned])


async def test_outcomes_answer_for_each_send_in_order() -> None:
    before = published()
    refused = aiokafka.errors.NotLeaderForPartitionError()

    answers = await publisher().outcomes(
        [sent(), sent(error=refused), sent(pending=True), sent(pending=True), sent()]
    )

    assert answers[0] is None and answers[4] is None
    assert answers[1] is refused
    assert all(isinstance(a, aiokafka.errors.KafkaTimeoutError) for a in answers[2:4])
    assert published() - before == 2
    assert await publisher().outcomes([]) == []


async def test_a_window_confirms_what_was_sent_since_it_last_confirmed() -> None:
    fake = FakePublisher()
    window = SendWindow(fake)

    await window.publish(message(1), "e-a")
    await window.publish(message(2), "e-b")
    await window.confirm()
    await window.confirm()  # nothing more was sent
    await window.publish(message(3), "e-c")
    fake.refuse_confirms = 1
    with pytest.raises(aiokafka.errors.KafkaTimeoutError):
        await window.confirm()

    assert fake.ids == ["e-a", "e-b", "e-c"]
    assert fake.confirmed == 3
    assert window.pending == []
