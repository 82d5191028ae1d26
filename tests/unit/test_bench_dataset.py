"""The benchmarks' data set and hand-written loop, without a store (bench/dataset.py, raw_consumers.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
from parley_events import Author, Content, Direction, MessageReceived, Provider, Queue

from bench import dataset
from bench.raw_consumers import apply


def test_the_data_set_has_a_quarter_of_each_inbox_shape_and_every_conversation_its_events() -> None:
    built = list(dataset.conversations(400, 10))

    assert {c.sequence for c in built} == {10}
    assert Counter((c.queue, c.owner_id is not None) for c in built) == {
        (Queue.NEW, False): 100,
        (Queue.NEW, True): 100,
        (Queue.PENDING, True): 100,
        (Queue.RESOLVED, False): 100,
    }
    assert len({c.owner_id for c in built if c.owner_id}) == dataset.AGENTS
    assert len({c.channel_id for c in built}) == dataset.CHANNELS


def test_copy_lines_escape_what_copy_text_format_reads_as_separators() -> None:
    line = dataset.copy_line(["a\tb", None, 7, b'{"t":"x\\"y\\n"}', datetime(2026, 1, 1, tzinfo=UTC)])

    assert line == b'a\\tb\t\\N\t7\t{"t":"x\\\\"y\\\\n"}\t2026-01-01T00:00:00+00:00\n'


def _message(n: int, direction: Direction) -> MessageReceived:
    channel = dataset.channel_id(n)
    return MessageReceived(
        event_id=f"msg_u{n}",
        tenant_id=dataset.TENANT,
        channel_id=channel,
        provider=Provider.MESSENGER,
        account_id=f"page-{channel}",
        conversation_id=f"conv-data-{n}",
        conversation_key=f"dm:customer-{n}",
        direction=direction,
        author=Author(id=f"customer-{n}"),
        content=Content(text="still waiting"),
        provider_message_id=f"m_u{n}",
        provider_timestamp=datetime(2026, 6, 1, tzinfo=UTC),
        delivery_id=f"delivery-u{n}",
    )


def test_the_hand_written_loop_causes_the_events_routings_domain_causes() -> None:
    for n in range(8):  # every shape, an inbound and an outbound message each
        for direction in (Direction.INBOUND, Direction.OUTBOUND):
            conversation = dataset.conversation(n, 10)
            conversation.version = 1
            doc = orjson.loads(orjson.dumps(conversation.to_document()))
            message = _message(n, direction)

            by_hand = apply(doc, orjson.loads(message.model_dump_json()))
            by_domain = conversation.receive(message)

            assert [(e["type"], e["data"]["sequence"], e["data"]["event_id"]) for e in by_hand] == [
                (e.event_type, e.sequence, e.event_id) for e in by_domain
            ]
            assert (doc["queue"], doc["sequence"]) == (conversation.queue.value, conversation.sequence)
            assert apply(doc, orjson.loads(message.model_dump_json())) == []  # a redelivery: nothing
