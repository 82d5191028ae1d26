"""Deliveries the fuzz target (tests/fuzz/fuzz_normalizers.py) found escaping the normalizers.

Each one raised something other than MalformedPayload (OverflowError, OSError, ValueError,
TypeError), which the normalizer does not treat as bad input: the delivery was retried as if the
failure might pass, then dead-lettered without a reason. Now each is refused clearly (the item
alone, with its reason), or parsed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from parley_ingest.domain.normalize import parse_delivery

pytestmark = pytest.mark.unit


def messenger(timestamp: Any) -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [
            {
                "id": "381920475610238",
                "messaging": [
                    {
                        "sender": {"id": "6021873345917724"},
                        "recipient": {"id": "381920475610238"},
                        "timestamp": timestamp,
                        "message": {"mid": "m_1", "text": "Which warehouse?"},
                    }
                ],
            }
        ],
    }


def whatsapp(timestamp: Any) -> dict[str, Any]:
    message = {"from": "34600111222", "id": "wamid.1", "timestamp": timestamp, "type": "text"}
    value = {"metadata": {"phone_number_id": "1065"}, "messages": [{**message, "text": {"body": "hi"}}]}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "2001", "changes": [{"field": "messages", "value": value}]}],
    }


def page_comment(created_time: Any) -> dict[str, Any]:
    value = {
        "item": "comment",
        "verb": "add",
        "comment_id": "c_1",
        "post_id": "p_1",
        "from": {"id": "6021873345917724"},
        "message": "nice",
        "created_time": created_time,
    }
    return {
        "object": "page",
        "entry": [{"id": "381920475610238", "changes": [{"field": "feed", "value": value}]}],
    }


def x_dm(created_timestamp: Any) -> dict[str, Any]:
    create = {
        "target": {"recipient_id": "3000000000000000001"},
        "sender_id": "3000000000000000777",
        "message_data": {"text": "hello"},
    }
    event = {
        "type": "message_create",
        "id": "1800000000000000101",
        "created_timestamp": created_timestamp,
        "message_create": create,
    }
    return {"for_user_id": "3000000000000000001", "direct_message_events": [event]}


def tweet(created_at: str) -> dict[str, Any]:
    return {
        "for_user_id": "3000000000000000001",
        "tweet_create_events": [
            {"id_str": "1", "text": "@shop hi", "user": {"id_str": "777"}, "created_at": created_at}
        ],
    }


@pytest.mark.parametrize(
    ("provider", "payload"),
    [
        # the first crash the fuzzer found: digits inserted into a Messenger timestamp
        pytest.param("meta", messenger(17180005007003000000000000000888), id="ms-beyond-time_t"),
        pytest.param("meta", messenger(10**19), id="ms-beyond-year-9999"),
        pytest.param("meta", messenger(1e19), id="ms-float-beyond-year-9999"),
        pytest.param("meta", messenger(-1e15), id="ms-before-year-1"),
        pytest.param("meta", messenger(10**400), id="ms-too-large-for-a-float"),
        pytest.param("meta", whatsapp("²"), id="superscript-digit-seconds"),
        pytest.param("meta", whatsapp("1" * 5000), id="5000-digit-seconds"),
        pytest.param("meta", whatsapp("99999999999999"), id="seconds-beyond-year-9999"),
        pytest.param(
            "meta",
            page_comment("\u0661\u0667\u0661\u0668\u0660\u0660\u0660\u0660\u0660\u0660"),
            id="arabic-indic-digit-created-time",
        ),
        pytest.param("meta", page_comment("0001-01-01T00:00:00+01:00"), id="iso-time-before-year-1-utc"),
        pytest.param("meta", page_comment("9999-12-31T23:59:59-01:00"), id="iso-time-after-year-9999-utc"),
        pytest.param("x", x_dm("9" * 30), id="x-dm-30-digit-ms"),
        pytest.param("x", tweet("Mon Jan 01 00:00:00 +0100 0001"), id="tweet-time-before-year-1-utc"),
    ],
)
def test_an_out_of_range_or_unusual_digit_time_is_a_malformed_payload(provider: str, payload: Any) -> None:
    result = parse_delivery(provider, payload)

    assert result.messages == ()
    [failure] = result.failures  # refused item by item: the rest of the delivery still counts
    assert re.search(r"time|created_at", failure.reason), failure.reason


@pytest.mark.parametrize("obj", [[], {}, ["page"], {"page": 1}])
def test_a_meta_object_that_is_not_a_string_is_skipped_by_name(obj: Any) -> None:
    result = parse_delivery("meta", {"object": obj, "entry": [{"id": "1"}]})

    assert (result.messages, result.statuses, result.templates) == ((), (), ())
    assert result.skipped == ("meta.other",)  # a payload value never becomes a kind of its own
