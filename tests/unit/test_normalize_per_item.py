"""Bad input never costs good data; payload values never become metric labels (security #13).

Finding 15: every message, status, comment and event of a delivery is parsed on its own. A bad
one (a WhatsApp message with ``from_user_id`` but no ``from``, a time read in the wrong unit, ...)
is refused with its position and reason; everything beside it is normalized as usual.

Finding 10: the skipped kinds the normalizers name (the ``kind`` label of
``parley_normalizer_skipped_events_total``) come from a fixed set, whatever the payload says, and
a delivery's results are gathered in linear time.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from parley_events import ChannelSnapshot, ChannelStatus, Event, Provider
from parley_ingest.domain import deliveries
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.domain.normalize import SKIP_KINDS, ItemFailure, ParseResult, parse_delivery
from parley_ingest.entrypoints.subscribers import MAX_ITEM_DEAD_LETTERS, dead_letter_items, item_error
from parley_ingest.service import Normalizer
from prometheus_client import REGISTRY

from tests.support.aliases import empty_aliases

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SECONDS = str(int((NOW - timedelta(minutes=5)).timestamp()))  # WhatsApp: seconds, as a string
MS = int((NOW - timedelta(minutes=5)).timestamp() * 1000)  # Messenger, Instagram, X DMs
PHONE_ID = "900000000000101"
PAGE = "104512345678901"
BUSINESS_X = "3000000000000000001"


def wa_text(message_id: str, sender: str = "15550123456", **extra: Any) -> dict[str, Any]:
    message = {"from": sender, "id": message_id, "timestamp": SECONDS, "type": "text"}
    return {**message, "text": {"body": f"text of {message_id}"}, **extra}


def wa_status(message_id: str, timestamp: str = SECONDS) -> dict[str, Any]:
    return {"id": message_id, "status": "delivered", "timestamp": timestamp, "recipient_id": "15550123456"}


def wa_delivery(*changes: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "900000000000001", "changes": list(changes)}],
    }


def wa_change(messages: list[Any], statuses: list[Any] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_ID}}
    value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def no_sender(message_id: str) -> dict[str, Any]:
    """A message naming nobody: neither the phone number (``from``) nor the BSUID (``from_user_id``)."""
    message = wa_text(message_id)
    del message["from"]
    return message


def dm(mid: str, timestamp: Any = MS, **extra: Any) -> dict[str, Any]:
    return {
        "sender": {"id": "7654321098765432"},
        "recipient": {"id": PAGE},
        "timestamp": timestamp,
        "message": {"mid": mid, "text": f"text of {mid}"},
        **extra,
    }


def reasons(result: ParseResult) -> dict[str, str]:
    return {failure.position: failure.reason for failure in result.failures}


# --- WhatsApp ---------------------------------------------------------------------------


def test_a_whatsapp_message_naming_no_sender_costs_only_itself() -> None:
    delivery = wa_delivery(wa_change([wa_text("wamid.1"), no_sender("wamid.2"), wa_text("wamid.3")]))

    result = parse_delivery("meta", delivery, NOW)

    assert [m.provider_message_id for m in result.messages] == ["wamid.1", "wamid.3"]
    assert reasons(result) == {"entry[0].changes[0].value.messages[1]": "from and from_user_id are missing"}


def test_a_mixed_whatsapp_batch_keeps_every_good_message_and_status() -> None:
    too_old = wa_text("wamid.ms", timestamp=str(MS))  # milliseconds where seconds belong: year 58000
    in_1970 = wa_status("wamid.s2", timestamp="1718000")  # a truncated time: January 1970
    broken_change = {"field": "messages", "value": {"messages": [wa_text("wamid.lost")]}}  # no metadata
    delivery = wa_delivery(
        wa_change(
            [wa_text("wamid.1"), "not an object", too_old, no_sender("wamid.nf"), wa_text("wamid.2")],
            [wa_status("wamid.s1"), in_1970, wa_status("wamid.s3")],
        ),
        broken_change,
        wa_change([wa_text("wamid.3")]),
    )

    result = parse_delivery("meta", delivery, NOW)

    assert [m.provider_message_id for m in result.messages] == ["wamid.1", "wamid.2", "wamid.3"]
    assert [s.provider_message_ids for s in result.statuses] == [("wamid.s1",), ("wamid.s3",)]
    found = reasons(result)
    assert set(found) == {
        "entry[0].changes[0].value.messages[1]",
        "entry[0].changes[0].value.messages[2]",
        "entry[0].changes[0].value.messages[3]",
        "entry[0].changes[0].value.statuses[1]",
        "entry[0].changes[1]",
    }
    assert found["entry[0].changes[0].value.messages[1]"] == "messages item is not an object"
    assert "out of range" in found["entry[0].changes[0].value.messages[2]"]
    assert "before 2006" in found["entry[0].changes[0].value.statuses[1]"]
    assert found["entry[0].changes[1]"] == "metadata is not an object"


def test_malformed_contacts_cost_a_name_not_the_messages() -> None:
    change = wa_change([wa_text("wamid.1")])
    change["value"]["contacts"] = ["not a contact", {"wa_id": "15550123456", "profile": {"name": "Ana"}}]

    [message] = parse_delivery("meta", wa_delivery(change), NOW).messages

    assert message.author.name == "Ana"


# --- Messenger, Page feed, Instagram -----------------------------------------------------


def test_a_mixed_page_delivery_keeps_every_good_message_comment_and_entry() -> None:
    without_mid = dm("m.bad")
    del without_mid["message"]["mid"]
    good_comment = {
        "field": "feed",
        "value": {
            "item": "comment",
            "verb": "add",
            "comment_id": "c.1",
            "post_id": "p.1",
            "from": {"id": "555"},
            "created_time": int(NOW.timestamp()) - 60,
        },
    }
    bad_comment = copy.deepcopy(good_comment)
    del bad_comment["value"]["from"]
    delivery = {
        "object": "page",
        "entry": [
            {
                "id": PAGE,
                "time": MS,
                "messaging": [dm("m.1"), without_mid, dm("m.2")],
                "standby": [dm("m.future", MS + 2 * 86_400_000)],
                "changes": [bad_comment, good_comment],
            },
            {"time": MS, "messaging": [dm("m.lost")]},  # an entry without its page id
            {"id": PAGE, "time": MS, "messaging": [dm("m.3")]},
        ],
    }

    result = parse_delivery("meta", delivery, NOW)

    assert [m.provider_message_id for m in result.messages] == ["m.1", "m.2", "c.1", "m.3"]
    found = reasons(result)
    assert found == {
        "entry[0].messaging[1]": "mid is missing",
        "entry[0].standby[0]": found["entry[0].standby[0]"],
        "entry[0].changes[0]": "comment from is not an object",
        "entry[1]": "id is missing",
    }
    assert "more than a day in the future" in found["entry[0].standby[0]"]


def test_a_mixed_instagram_delivery_keeps_every_good_comment() -> None:
    def comment(comment_id: str, **value: Any) -> dict[str, Any]:
        body = {"id": comment_id, "from": {"id": "777", "username": "ana"}, "media": {"id": "media.1"}}
        return {"field": "comments", "value": {**body, **value}}

    delivery = {
        "object": "instagram",
        "entry": [
            {
                "id": "17841400000000001",
                "time": int(NOW.timestamp()) - 60,
                "changes": [comment("ig.1"), comment("ig.2", media="gone"), comment("ig.3")],
            }
        ],
    }

    result = parse_delivery("meta", delivery, NOW)

    assert [m.provider_message_id for m in result.messages] == ["ig.1", "ig.3"]
    assert reasons(result) == {"entry[0].changes[1]": "comment media is not an object"}


# --- X ----------------------------------------------------------------------------------


def x_dm(event_id: str, created: Any = str(MS)) -> dict[str, Any]:
    return {
        "type": "message_create",
        "id": event_id,
        "created_timestamp": created,
        "message_create": {
            "target": {"recipient_id": BUSINESS_X},
            "sender_id": "3000000000000000777",
            "message_data": {"text": f"text of {event_id}"},
        },
    }


def tweet(tweet_id: str, created_at: str = "Mon Mar 02 11:55:00 +0000 2026") -> dict[str, Any]:
    return {"id_str": tweet_id, "text": "@shop hi", "user": {"id_str": "777"}, "created_at": created_at}


def test_a_mixed_x_delivery_keeps_every_good_dm_and_tweet() -> None:
    seconds_read_as_ms = str(int(NOW.timestamp()))  # 1970
    delivery = {
        "for_user_id": BUSINESS_X,
        "direct_message_events": [x_dm("dm.1"), x_dm("dm.2", seconds_read_as_ms), {"type": "message_create"}],
        "tweet_create_events": [tweet("t.1", "2026-03-02T11:55:00Z"), tweet("t.2")],
    }

    result = parse_delivery("x", delivery, NOW)

    assert [m.provider_message_id for m in result.messages] == ["dm.1", "t.2"]
    found = reasons(result)
    assert set(found) == {"direct_message_events[1]", "direct_message_events[2]", "tweet_create_events[0]"}
    assert "1970" in found["direct_message_events[1]"]
    assert "not a tweet time" in found["tweet_create_events[0]"]


# --- the time range ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "accepted"),
    [
        (datetime(2005, 12, 31, 23, 59, tzinfo=UTC), False),
        (datetime(2006, 1, 1, tzinfo=UTC), True),
        (NOW + timedelta(hours=23), True),
        (NOW + timedelta(days=1, minutes=1), False),
    ],
    ids=["2005", "2006", "23h-ahead", "a-day-ahead"],
)
def test_provider_times_before_2006_or_more_than_a_day_ahead_are_refused(
    at: datetime, accepted: bool
) -> None:
    delivery = {
        "object": "page",
        "entry": [{"id": PAGE, "messaging": [dm("m.1", int(at.timestamp() * 1000))]}],
    }

    result = parse_delivery("meta", delivery, NOW)

    assert len(result.messages) == int(accepted)
    assert len(result.failures) == int(not accepted)


def test_a_receipt_watermark_in_1970_is_refused() -> None:
    receipt = {
        "sender": {"id": "7654321098765432"},
        "recipient": {"id": PAGE},
        "timestamp": MS,
        "delivery": {"mids": ["m.1"], "watermark": 1718000000},  # seconds where milliseconds belong
    }

    result = parse_delivery("meta", {"object": "page", "entry": [{"id": PAGE, "messaging": [receipt]}]}, NOW)

    assert result.statuses == ()
    assert "watermark 1970" in result.failures[0].reason


# --- finding 10: a fixed set of skipped kinds, gathered in linear time ----------------------


def test_many_distinct_unknown_x_keys_name_one_kind() -> None:
    delivery = {"for_user_id": BUSINESS_X, **{f"forged_{i}_events": [{}] for i in range(1_400)}}

    result = parse_delivery("x", delivery, NOW)

    assert set(result.skipped) == {"x.other"}
    assert len(result.skipped) == 1_400  # still counted, one by one


@pytest.mark.parametrize(
    "delivery",
    [
        {"object": "p" * 1_000_000, "entry": [{}] * 10},
        {"object": "page", "entry": [{"id": PAGE, "changes": [{"field": "f" * 100_000, "value": {}}]}]},
        {
            "object": "page",
            "entry": [{"id": PAGE, "changes": [{"field": "feed", "value": {"item": "i" * 9}}]}],
        },
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": ["a", "list"]}]}]},
        {
            "object": "page",
            "entry": [
                {
                    "id": PAGE,
                    "messaging": [
                        {**{k: v for k, v in dm("m").items() if k != "message"}, "message_edit": {}}
                    ],
                }
            ],
        },
    ],
    ids=["huge-meta-object", "huge-change-field", "unknown-feed-item", "list-field", "known-kind"],
)
def test_skipped_kinds_are_from_the_fixed_set_whatever_the_payload_says(delivery: dict[str, Any]) -> None:
    result = parse_delivery("meta", delivery, NOW)

    assert result.skipped
    assert set(result.skipped) <= SKIP_KINDS
    assert all(len(kind) < 80 for kind in result.skipped)


def test_a_delivery_with_thousands_of_unknown_arrays_is_gathered_in_linear_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ~900 KB, under the body limit: gathering it by tuple concatenation (``result += ...``, a new
    # ever longer tuple per item) took ~40 s. Checked by structure, not by the clock: results are
    # never concatenated, and the items copied into results stay within twice the final count.
    delivery = {"for_user_id": BUSINESS_X, **{f"k{i}": [0] * 10 for i in range(30_000)}}

    def no_concatenation(self: ParseResult, other: ParseResult) -> ParseResult:
        raise AssertionError("results gathered by concatenation: quadratic in the item count")

    copied = 0
    build = ParseResult.__init__

    def counting_init(self: ParseResult, *args: Any, **kwargs: Any) -> None:
        nonlocal copied
        build(self, *args, **kwargs)
        copied += sum(len(getattr(self, field.name)) for field in dataclasses.fields(ParseResult))

    monkeypatch.setattr(ParseResult, "__add__", no_concatenation)
    monkeypatch.setattr(ParseResult, "__init__", counting_init)
    result = parse_delivery("x", delivery, NOW)

    assert len(result.skipped) == 300_000
    assert copied <= 2 * 300_000


# --- the normalizer: good events published, bad items returned for the DLQ ---------------


class Channels:
    """Every account is claimed, by one tenant."""

    def lookup(self, provider: Provider, account_id: str) -> ChannelSnapshot:
        return ChannelSnapshot(
            channel_id="chn_1",
            tenant_id="ten_1",
            provider=provider,
            account_id=account_id,
            status=ChannelStatus.ACTIVE,
            business_account_id=account_id,
            revision=1,
        )

    lookup_business = lookup

    async def catch_up(self, timeout: float) -> None:
        return None


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the normalizer waited on something outside memory")


def normalize(provider: str, payload: Any) -> tuple[list[Event], tuple[ItemFailure, ...]]:
    published: list[Event] = []

    async def publish(event: Event, event_id: str) -> None:
        published.append(event)

    worker = Normalizer(Channels(), publish, 0.0, RecentIds(100), empty_aliases(), clock=lambda: NOW)  # type: ignore[arg-type]
    record = deliveries.archive_record(provider, orjson.dumps(payload), {}, NOW, payload)
    failures = run(worker.normalize(record))
    return published, failures


def skipped_labels() -> set[str]:
    return {
        sample.labels["kind"]
        for metric in REGISTRY.collect()
        if metric.name == "parley_normalizer_skipped_events"
        for sample in metric.samples
    }


def test_the_normalizer_publishes_the_good_items_and_returns_the_bad_ones() -> None:
    delivery = wa_delivery(wa_change([wa_text("wamid.1"), no_sender("wamid.2"), wa_text("wamid.3")]))

    published, failures = normalize("meta", delivery)

    # the customer's phone is recorded as leading to their conversation once, before the first message
    assert [getattr(e, "provider_message_id", getattr(e, "alias_key", None)) for e in published] == [
        "dm:15550123456",
        "wamid.1",
        "wamid.3",
    ]
    assert failures == (
        ItemFailure("entry[0].changes[0].value.messages[1]", "from and from_user_id are missing"),
    )
    record = deliveries.archive_record("meta", orjson.dumps(delivery), {}, NOW, delivery)
    error = str(item_error(record, failures[0]))
    assert record.delivery_id in error
    assert "entry[0].changes[0].value.messages[1]: from and from_user_id are missing" in error
    assert base64.b64decode(record.body_b64) == orjson.dumps(delivery)


def test_a_forged_body_adds_no_metric_label_outside_the_fixed_set() -> None:
    forged = {"for_user_id": BUSINESS_X, **{f"k{i}": [] for i in range(1_400)}}
    huge = {"object": "o" * 500_000, "entry": [{}]}

    normalize("x", forged)
    normalize("meta", huge)

    assert skipped_labels() <= SKIP_KINDS
    assert len(skipped_labels()) <= len(SKIP_KINDS)


# --- the dead letters of one delivery -------------------------------------------------------


@dataclasses.dataclass
class Record:
    """The consumed record the normalizer's subscriber dead-letters (as aiokafka's, a dataclass)."""

    value: bytes
    headers: tuple[tuple[str, bytes], ...] = (("traceparent", b"00-abc-def-01"),)


def letters_for(failures: tuple[ItemFailure, ...]) -> list[tuple[dict[str, bytes], str]]:
    sent: list[tuple[dict[str, bytes], str]] = []

    async def sink(record: Any, error: BaseException, attempts: int) -> None:
        assert attempts == 1  # bad data: no retries
        sent.append((dict(record.headers), str(error)))

    delivery = wa_delivery(wa_change([no_sender(f"wamid.{i}") for i in range(len(failures))]))
    raw = deliveries.archive_record("meta", orjson.dumps(delivery), {}, NOW, delivery)
    run(dead_letter_items(sink, Record(orjson.dumps(delivery)), raw, failures))
    return sent


def test_each_bad_item_gets_a_dead_letter_naming_its_delivery_and_position() -> None:
    failures = tuple(
        ItemFailure(f"entry[0].changes[0].value.messages[{i}]", "from and from_user_id are missing")
        for i in range(3)
    )

    sent = letters_for(failures)

    assert [headers["parley_dlq_item"].decode() for headers, _ in sent] == [f.position for f in failures]
    assert all(headers["traceparent"] == b"00-abc-def-01" for headers, _ in sent)
    assert len({headers["parley_dlq_delivery_id"] for headers, _ in sent}) == 1
    assert all(error.endswith("from and from_user_id are missing") for _, error in sent)


def test_a_delivery_of_many_bad_items_writes_a_bounded_number_of_dead_letters() -> None:
    failures = tuple(
        ItemFailure(f"entry[0].changes[0].value.messages[{i}]", "from and from_user_id are missing")
        for i in range(50)
    )

    sent = letters_for(failures)

    assert len(sent) == MAX_ITEM_DEAD_LETTERS
    last_headers, last_error = sent[-1]
    assert "and 30 more bad items" in last_error
    more = last_headers["parley_dlq_more_items"].decode().split()
    assert more == [f.position for f in failures[MAX_ITEM_DEAD_LETTERS:]]
