"""Property tests: any bytes and any JSON get a clear answer from the verifiers and normalizers.

A normalizer returns a result (its bad items listed with their positions and reasons, its skipped
kinds from a fixed set) or raises MalformedPayload (which dead-letters the delivery with its
reason); nothing else may escape. A verifier answers True or False, and True only for the right
secret.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parley_ingest.domain.normalize import SKIP_KINDS, MalformedPayload, parse_delivery
from parley_providers.meta import webhook as meta_webhook
from parley_providers.x import webhook as x_webhook

pytestmark = pytest.mark.unit

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)

# shapes close to the providers' so the fuzzing reaches deep into the parsers
field_names = st.sampled_from(
    [
        "object",
        "entry",
        "id",
        "time",
        "messaging",
        "standby",
        "changes",
        "field",
        "value",
        "sender",
        "recipient",
        "timestamp",
        "message",
        "mid",
        "text",
        "is_echo",
        "attachments",
        "payload",
        "url",
        "type",
        "postback",
        "reaction",
        "delivery",
        "read",
        "mids",
        "watermark",
        "item",
        "verb",
        "comment_id",
        "post_id",
        "from",
        "messages",
        "statuses",
        "metadata",
        "phone_number_id",
        "contacts",
        "wa_id",
        "profile",
        "name",
        "context",
        "for_user_id",
        "direct_message_events",
        "tweet_create_events",
        "message_create",
        "sender_id",
        "target",
        "recipient_id",
        "message_data",
        "user",
        "id_str",
        "created_at",
        "media",
        "interactive",
        "button",
    ]
)
shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "page",
            "instagram",
            "whatsapp_business_account",
            "comment",
            "add",
            "text",
            "image",
            "message_create",
            "feed",
            "messages",
            "1700000000",
            "Wed Oct 10 20:19:24 +0000 2018",
        ]
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(field_names, children, max_size=6),
    max_leaves=40,
)


def normalizes_or_refuses_clearly(provider: str, payload: Any) -> None:
    with contextlib.suppress(MalformedPayload):
        result = parse_delivery(provider, payload)
        # skipped kinds become metric labels: only ever from the fixed set (security #13, finding 10)
        assert set(result.skipped) <= SKIP_KINDS, result.skipped
        assert all(failure.position and failure.reason for failure in result.failures), result.failures


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_values)
def test_any_json_gets_a_result_or_a_malformed_payload_error(payload: Any) -> None:
    for provider in ("meta", "x"):
        normalizes_or_refuses_clearly(provider, payload)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(payload=shaped)
def test_provider_shaped_json_gets_a_result_or_a_malformed_payload_error(payload: Any) -> None:
    for provider in ("meta", "x"):
        normalizes_or_refuses_clearly(provider, payload)
        normalizes_or_refuses_clearly(provider, {"object": "page", "entry": [payload]})
        normalizes_or_refuses_clearly(provider, {"object": "whatsapp_business_account", "entry": [payload]})
        normalizes_or_refuses_clearly(provider, {"for_user_id": "1", "direct_message_events": [payload]})


@settings(max_examples=300)
@given(
    body=st.binary(max_size=512),
    header=st.one_of(st.none(), st.text(max_size=80)),
    secret=st.text(min_size=1),
)
def test_verifiers_answer_true_or_false_for_any_input(body: bytes, header: str | None, secret: str) -> None:
    assert meta_webhook.verify_meta(body, header, [secret]) in (True, False)
    assert x_webhook.verify_x(body, header, [secret]) in (True, False)


@settings(max_examples=200)
@given(body=st.binary(max_size=512), secret=st.text(min_size=1), other=st.text(min_size=1))
def test_only_the_right_secret_verifies(body: bytes, secret: str, other: str) -> None:
    assert meta_webhook.verify_meta(body, meta_webhook.meta_signature(body, secret), [secret])
    assert x_webhook.verify_x(body, x_webhook.x_signature(body, secret), [secret])
    if other != secret:
        assert not meta_webhook.verify_meta(body, meta_webhook.meta_signature(body, secret), [other])
        assert not x_webhook.verify_x(body, x_webhook.x_signature(body, secret), [other])


def test_the_strategies_reach_real_messages() -> None:
    """Guard: a provider-shaped example does parse into messages (the fuzzing is not all refusals)."""
    payload = json.loads(
        '{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},'
        '"timestamp":1718000000000,"message":{"mid":"m","text":"hi"}}]}]}'
    )
    assert parse_delivery("meta", payload).messages
