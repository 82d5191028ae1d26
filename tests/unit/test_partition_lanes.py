"""A batch handled in partition lanes: each partition in order, the partitions side by side."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from parley_shared.kafka import partition_lanes, rewind

pytestmark = pytest.mark.unit

P0 = TopicPartition("t", 0)
P1 = TopicPartition("t", 1)


def rec(partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic="t", partition=partition, offset=offset)


def always(_: TopicPartition) -> bool:
    return True


async def test_each_partition_is_handled_in_order_and_the_partitions_overlap() -> None:
    seen: list[tuple[int, int]] = []
    other_lane_started = asyncio.Event()

    async def handle(record: Any) -> None:
        if record.partition == 1:
            other_lane_started.set()
        elif record.offset == 10:
            # partition 0's first record finishes only once partition 1's lane has started:
            # lanes taken one after another would wait here for ever
            await asyncio.wait_for(other_lane_started.wait(), 2)
        seen.append((record.partition, record.offset))

    records = [rec(0, 10), rec(1, 5), rec(0, 11), rec(1, 6), rec(0, 12)]
    stopped = await partition_lanes(records, handle, go_on=always)

    assert stopped == {}
    assert [o for p, o in seen if p == 0] == [10, 11, 12]
    assert [o for p, o in seen if p == 1] == [5, 6]


async def test_a_failing_record_stops_its_lane_there_and_the_other_lanes_finish() -> None:
    seen: list[tuple[int, int]] = []

    async def handle(record: Any) -> None:
        if (record.partition, record.offset) == (0, 11):
            raise RuntimeError("the DLQ could not be reached")
        seen.append((record.partition, record.offset))

    records = [rec(0, 10), rec(0, 11), rec(0, 12), rec(1, 5), rec(1, 6)]
    stopped = await partition_lanes(records, handle, go_on=always)

    assert stopped == {P0: 11}  # resumes at the failed record, never past it
    assert (0, 12) not in seen
    assert [s for s in seen if s[0] == 1] == [(1, 5), (1, 6)]


async def test_a_lane_starts_no_record_once_told_to_stop() -> None:
    handled: list[int] = []
    allowed = {P0: 2, P1: 0}  # partition 0 may start two records, partition 1 none

    def go_on(tp: TopicPartition) -> bool:
        return allowed[tp] > 0

    async def handle(record: Any) -> None:
        allowed[TopicPartition(record.topic, record.partition)] -= 1
        handled.append(record.offset)

    stopped = await partition_lanes([rec(0, 1), rec(0, 2), rec(0, 3), rec(1, 7)], handle, go_on=go_on)

    assert handled == [1, 2]
    assert stopped == {P0: 3, P1: 7}


async def test_a_handler_that_stops_itself_with_a_cancellation_stops_only_its_lane() -> None:
    async def handle(record: Any) -> None:
        if record.partition == 0:
            raise asyncio.CancelledError("the service is stopping")  # as Delivery does

    stopped = await partition_lanes([rec(0, 4), rec(0, 5), rec(1, 9)], handle, go_on=always)

    assert stopped == {P0: 4}


async def test_cancelling_the_batch_cancels_its_lanes() -> None:
    started = asyncio.Event()

    async def handle(record: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(partition_lanes([rec(0, 1), rec(1, 1)], handle, go_on=always))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_rewind_seeks_the_assigned_partitions_and_leaves_a_revoked_one() -> None:
    seeks: list[tuple[TopicPartition, int]] = []

    def seek(tp: TopicPartition, offset: int) -> None:
        if tp == P1:
            raise IllegalStateError("No current assignment for partition")
        seeks.append((tp, offset))

    message = SimpleNamespace(consumer=SimpleNamespace(seek=seek))
    rewind(message, {P0: 11, P1: 3})  # type: ignore[arg-type]

    assert seeks == [(P0, 11)]
