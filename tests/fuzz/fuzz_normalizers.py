"""Fuzz target (atheris): any webhook body on either endpoint gets a clear answer from ingest.

One input goes the way a real delivery goes:

1. the signature verifier of its endpoint: the right signature verifies, a tampered one or one
   made with another secret does not, and any header at all gets True or False;
2. the raw record ingest archives: it keeps no signature header, its base64 body is the body,
   and it survives its own wire format;
3. the normalizer's entry point, ``Normalizer.normalize``, on that record (an in-memory channel
   directory claims every account whose id does not end in 9): it publishes events or raises
   ``UnprocessableDelivery``, the documented bad-input error that dead-letters the delivery with
   its reason; the items it could not normalize come back with their positions and reasons (each
   is dead-lettered alone). Anything else escaping is a crash;
4. every published event survives its wire encoding and validates against its published JSON
   Schema (docs/schemas), carries the delivery's id, a UTC time and a provider of its endpoint;
   ids are deterministic: the same bytes re-sent and archived at another time give the same
   events;
5. the domain entry point ``parse_delivery`` on the decoded JSON (and, for generated inputs, on
   the Python value itself, as the property tests do): a ``ParseResult`` or ``MalformedPayload``,
   and the same result twice.

Input layout, so that seeds stay readable JSON: byte 0 is a control byte, the rest depends on its
mode bits.

- bit 0: endpoint, ``meta`` or ``x`` (bits 5-7 all set: an endpoint name that does not exist);
- bits 1-2: mode. 0 and 1: the rest is the body as is (libFuzzer's own byte mutations);
  2: two bytes of length, that many bytes of a JSON document, then bytes that drive one to four
  edits of its tree (replace, delete, retype, duplicate, insert, edge value); 3: the rest drives
  a generator of provider-shaped JSON (Meta, WhatsApp and X envelopes around fields the
  providers use);
- bits 3-4: the signature sent: 0 right, 1 tampered, 2 made with another secret, 3 none.

Run it with ``make fuzz`` (docs/reliability.md, "Fuzzing"). ``PARLEY_FUZZ_PLANTED_BUG=crash`` or
``=nondeterministic`` swaps in a broken normalizer so a test can show the harness catches both.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import sys
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import atheris
import jsonschema
import orjson
import structlog

with atheris.instrument_imports(include=["parley_ingest", "parley_events", "parley_shared"]):
    from parley_events import (
        ChannelSnapshot,
        ChannelStatus,
        CustomerAliasRecorded,
        Event,
        HandoverReceived,
        MessageDeleted,
        MessageEdited,
        MessageReceived,
        MessageStatusChanged,
        MessagingLimitChanged,
        NumberThroughputChanged,
        Provider,
        TemplateCategoryChanged,
        TemplateQualityChanged,
        TemplateStatusChanged,
        WebhookReceived,
        topics,
    )
    from parley_ingest import metrics
    from parley_ingest import service as normalizer_module
    from parley_ingest.adapters.aliases import KafkaCustomerAliases
    from parley_ingest.domain import deliveries
    from parley_ingest.domain.dedupe import RecentIds
    from parley_ingest.domain.normalize import (
        SKIP_KINDS,
        ItemFailure,
        MalformedPayload,
        ParseResult,
        parse_delivery,
    )
    from parley_ingest.service import Normalizer, UnprocessableDelivery
    from parley_providers.meta import webhook as meta_webhook
    from parley_providers.x import webhook as x_webhook
    from parley_shared.kafka import decode_event, encode_event

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"

ENDPOINTS = ("meta", "x")
SIGNATURE_HEADERS = {"meta": "x-hub-signature-256", "x": "x-twitter-webhooks-signature"}
APP_SECRET = "fuzz-app-secret-3b1f"
OTHER_SECRET = "fuzz-other-secret-9c2d"
RECEIVED_AT = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)
NOW = RECEIVED_AT + timedelta(minutes=1)  # the normalizer's clock: provider times are checked against it

MODE_RAW, MODE_RAW_TOO, MODE_MUTATE, MODE_GENERATE = range(4)
SIGNATURE_RIGHT, SIGNATURE_TAMPERED, SIGNATURE_OTHER_SECRET, SIGNATURE_NONE = range(4)
# the thread keys every normalizer builds; anything else is a new kind nobody downstream expects
THREAD_PREFIXES = ("dm:", "post:", "media:", "tweets:")
ENDPOINT_PROVIDERS = {
    "meta": {Provider.MESSENGER, Provider.INSTAGRAM, Provider.WHATSAPP},
    "x": {Provider.X},
}


# --- the input layout ---------------------------------------------------------------------


def control_byte(endpoint: str, mode: int, signature: int = SIGNATURE_RIGHT) -> int:
    """The first byte of an input (the seed corpus writer uses it too)."""
    return ENDPOINTS.index(endpoint) | (mode << 1) | (signature << 3)


def raw_input(endpoint: str, body: bytes, signature: int = SIGNATURE_RIGHT) -> bytes:
    return bytes([control_byte(endpoint, MODE_RAW, signature)]) + body


def mutate_input(endpoint: str, body: bytes, edits: bytes) -> bytes:
    return bytes([control_byte(endpoint, MODE_MUTATE)]) + len(body).to_bytes(2, "big") + body + edits


def generate_input(endpoint: str, choices: bytes) -> bytes:
    return bytes([control_byte(endpoint, MODE_GENERATE)]) + choices


# --- provider-shaped JSON from fuzzer bytes ----------------------------------------------

FIELDS = [
    # Meta: Pages, Instagram
    "object", "entry", "id", "time", "messaging", "standby", "changes", "field", "value",
    "sender", "recipient", "timestamp", "message", "mid", "text", "is_echo", "is_deleted",
    "attachments", "payload", "url", "type", "quick_reply", "reply_to", "story", "postback",
    "title", "reaction", "action", "emoji", "delivery", "read", "mids", "watermark", "item",
    "verb", "comment_id", "post_id", "parent_id", "from", "name", "username", "created_time",
    "photo", "media", "media_id", "optin",
    # WhatsApp
    "messages", "statuses", "metadata", "phone_number_id", "contacts", "wa_id", "profile",
    "context", "body", "caption", "latitude", "longitude", "address", "interactive",
    "button_reply", "list_reply", "button", "status", "recipient_id", "errors", "code",
    "error_data", "details", "event", "message_template_id", "message_template_name",
    "message_template_language", "reason", "phones", "phone", "emails", "email", "formatted_name",
    # X
    "for_user_id", "direct_message_events", "tweet_create_events", "message_create",
    "sender_id", "target", "message_data", "attachment", "quick_reply_response", "users",
    "screen_name", "user", "id_str", "created_at", "created_timestamp", "extended_tweet",
    "full_text", "extended_entities", "media_url_https", "in_reply_to_user_id_str",
    "in_reply_to_status_id_str", "retweeted_status", "favorite_events",
    # X Activity API
    "data", "event_uuid", "filter", "user_id", "event_type", "tag", "includes", "author_id",
    "conversation_id", "referenced_tweets", "in_reply_to_tweet_id", "in_reply_to_user_id",
    "note_tweet", "media_keys", "media_key", "tweets", "encoded_event", "created_at_msec",
]  # fmt: skip
WORDS = [
    "page", "instagram", "whatsapp_business_account", "feed", "comments", "live_comments",
    "mentions", "messages", "message_template_status_update", "comment", "add", "edited",
    "remove", "text", "image", "audio", "video", "document", "sticker", "location", "contacts",
    "interactive", "button", "button_reply", "list_reply", "nfm_reply", "reaction", "sent",
    "delivered", "read", "failed", "deleted", "APPROVED", "REJECTED", "NONE", "message_create",
    "story_mention", "fallback", "1718000000", "1718000000123", "2024-06-10T09:15:00+0000",
    "2024-06-10T09:15:00Z", "Mon Jun 10 09:15:00 +0000 2024", "104512345678901",
    "3000000000000000001", "dm.received", "dm.sent", "post.mention.create", "post.reply.create",
    "post.quote.create", "post.create", "chat.received", "chat.sent", "replied_to", "quoted",
    "retweeted", "2026-11-20T09:00:00.000Z", "3000000000000000777-3000000000000000001",
]  # fmt: skip
# values at the edges of what the parsers convert: digit-like strings, huge and tiny times
EDGES: list[Any] = [
    "", " ", "0", "-1", "1e3", "²", "\u0661\u0662\u0663", "\U0001d7cf\U0001d7d0", "9" * 40, "1" * 5000,
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01", "2024-02-30T00:00:00Z",
    "Mon Jan 01 00:00:00 +0100 0001", "Fri Dec 31 23:59:59 -0100 9999",
    0, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 10**19, 10**30, -(10**30),
    1e300, -1e300, 1e-300, 0.5, [], {}, None, True, False,
]  # fmt: skip
MAX_DEPTH = 5


def fuzz_value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """Any JSON value, leaning on the providers' field names, words and edge values."""
    choice = fdp.ConsumeIntInRange(0, 10 if depth < MAX_DEPTH else 8)
    if choice == 0:
        return None
    if choice == 1:
        return fdp.ConsumeBool()
    if choice == 2:
        return fdp.ConsumeIntInRange(-(2**40), 2**41)
    if choice == 3:
        return fdp.ConsumeRegularFloat()
    if choice == 4:
        return fdp.PickValueInList(WORDS)
    if choice == 5:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    if choice == 6:
        return copy.deepcopy(fdp.PickValueInList(EDGES))
    if choice == 7:
        return str(fdp.ConsumeIntInRange(0, 2**53))
    if choice == 8:
        return fdp.PickValueInList(FIELDS)
    if choice == 9:
        return fuzz_object(fdp, depth + 1)
    return [fuzz_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]


def fuzz_object(fdp: atheris.FuzzedDataProvider, depth: int) -> dict[str, Any]:
    return {fdp.PickValueInList(FIELDS): fuzz_value(fdp, depth) for _ in range(fdp.ConsumeIntInRange(0, 6))}


def fuzz_delivery(fdp: atheris.FuzzedDataProvider, endpoint: str) -> Any:
    """A delivery shaped like one of the providers', with fuzzed fields inside."""
    shape = fdp.ConsumeIntInRange(0, 6)
    if shape == 0:
        return fuzz_value(fdp)
    if shape in (1, 2):  # Pages and Instagram: messaging or changes entries
        obj = fdp.PickValueInList(["page", "instagram", "page", "instagram", "permissions", None])
        entry = fuzz_object(fdp, 1)
        entry.setdefault("id", fdp.PickValueInList(["104512345678901", 7, ""]))
        key = fdp.PickValueInList(["messaging", "standby", "changes"])
        entry[key] = [fuzz_object(fdp, 2) for _ in range(fdp.ConsumeIntInRange(0, 3))]
        return {"object": obj, "entry": [entry]}
    if shape == 3:  # WhatsApp: changes with a messages or template value
        value = fuzz_object(fdp, 2)
        value.setdefault("metadata", {"phone_number_id": fdp.PickValueInList(["1065", 1065, ""])})
        value[fdp.PickValueInList(["messages", "statuses", "contacts"])] = [
            fuzz_object(fdp, 3) for _ in range(fdp.ConsumeIntInRange(0, 3))
        ]
        field = fdp.PickValueInList(["messages", "message_template_status_update", "account_update"])
        entry = {"id": "2001", "time": fuzz_value(fdp, 3), "changes": [{"field": field, "value": value}]}
        return {"object": "whatsapp_business_account", "entry": [entry]}
    if shape == 6:  # X Activity API: one event in data, for the filter's user
        event = fuzz_object(fdp, 1)
        event["event_type"] = fdp.PickValueInList(
            ["dm.received", "dm.sent", "post.mention.create", "post.create", "chat.received", "like.create"]
        )
        event.setdefault("filter", {"user_id": fdp.PickValueInList(["3000000000000000001", 30, ""])})
        event["payload"] = fuzz_object(fdp, 2)
        if fdp.ConsumeBool():
            event["payload"]["direct_message_events"] = [
                fuzz_object(fdp, 3) for _ in range(fdp.ConsumeIntInRange(0, 2))
            ]
        return {"data": event}
    # X: direct messages, tweets and the arrays Parley skips
    body: dict[str, Any] = {"for_user_id": fdp.PickValueInList(["3000000000000000001", 30, ""])}
    key = fdp.PickValueInList(["direct_message_events", "tweet_create_events", "favorite_events"])
    body[key] = [fuzz_object(fdp, 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if fdp.ConsumeBool():
        body["users"] = fuzz_object(fdp, 1)
    return body


def slots(node: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON tree, parents before children."""
    if isinstance(node, dict):
        for key, child in node.items():
            found.append((node, key))
            slots(child, found)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.append((node, index))
            slots(child, found)
    return found


def retype(value: Any) -> Any:
    """The same information in a type the provider does not send there."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.isascii() and value.isdigit() and len(value) < 100 else [value]
    if isinstance(value, list):
        return value[0] if value else {}
    if isinstance(value, dict):
        return list(value.values())
    return {}


def mutate(fdp: atheris.FuzzedDataProvider, document: Any) -> Any:
    """One to four edits of a JSON tree, each at a fuzzer-chosen place."""
    root = [document]
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        places = slots(root, [])
        container, key = places[fdp.ConsumeIntInRange(0, len(places) - 1)]
        edit = fdp.ConsumeIntInRange(0, 5)
        if edit == 0:
            container[key] = fuzz_value(fdp, 2)
        elif edit == 1 and container is not root:
            del container[key]
        elif edit == 2:
            container[key] = retype(container[key])
        elif edit == 3:
            if isinstance(container, list):
                container.insert(key, copy.deepcopy(container[key]))
            else:
                container[fdp.PickValueInList(FIELDS)] = copy.deepcopy(container[key])
        elif edit == 4 and isinstance(container[key], dict | list):
            target = container[key]
            if isinstance(target, dict):
                target[fdp.PickValueInList(FIELDS)] = fuzz_value(fdp, 2)
            else:
                target.insert(fdp.ConsumeIntInRange(0, len(target)), fuzz_value(fdp, 2))
        else:
            container[key] = copy.deepcopy(fdp.PickValueInList(EDGES))
    return root[0]


def dumps(value: Any) -> bytes:
    """JSON bytes as a provider would send them (the stdlib writes any int, unlike orjson)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- the parts under test, and the stand-ins that prove the harness catches bugs ------------

Parse = Callable[[str, Any, datetime | None], ParseResult]


def planted_bug(kind: str | None) -> Parse:
    """The real ``parse_delivery``, or a deliberately broken stand-in (for the harness's own test)."""
    if kind is None or kind == "":
        return parse_delivery
    if kind == "crash":

        def careless(provider: str, payload: Any, now: datetime | None = None) -> ParseResult:
            # trusts the shape instead of checking it: X deliveries have no entry list
            _ = payload["entry"][0]["id"]
            return parse_delivery(provider, payload, now)

        return careless
    if kind == "nondeterministic":
        calls = iter(range(1 << 62))

        def forgetful(provider: str, payload: Any, now: datetime | None = None) -> ParseResult:
            # a message id made from a counter: a re-send is no longer recognised
            result = parse_delivery(provider, payload, now)
            renamed = tuple(replace(m, provider_message_id=f"m{next(calls)}") for m in result.messages)
            return ParseResult(renamed, result.statuses, result.templates, result.skipped, result.failures)

        return forgetful
    raise SystemExit(f"PARLEY_FUZZ_PLANTED_BUG={kind!r}: expected crash or nondeterministic")


PARSE = planted_bug(os.environ.get("PARLEY_FUZZ_PLANTED_BUG"))
normalizer_module.parse_delivery = PARSE  # the normalizer calls whatever parse_delivery is bound to

VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def validator(event_type: str) -> jsonschema.protocols.Validator:
    if event_type not in VALIDATORS:
        schema = json.loads((SCHEMAS / f"{event_type}.json").read_text(encoding="utf-8"))
        VALIDATORS[event_type] = jsonschema.validators.validator_for(schema)(schema)
    return VALIDATORS[event_type]


class InMemoryChannels:
    """The normalizer's channel directory: a channel claims every account not ending in 9."""

    def _claimed(self, provider: Provider, account_id: str) -> ChannelSnapshot | None:
        if account_id.endswith("9"):  # no fixture account does: mutations find the unknown path
            return None
        return ChannelSnapshot(
            channel_id=f"chn_{zlib.crc32(f'{provider.value}:{account_id}'.encode()):08x}",
            tenant_id="ten_fuzz",
            provider=provider,
            account_id=account_id,
            status=ChannelStatus.ACTIVE,
            business_account_id=account_id,
            revision=1,
        )

    def lookup(self, provider: Provider, account_id: str) -> ChannelSnapshot | None:
        return self._claimed(provider, account_id)

    def lookup_business(self, provider: Provider, business_account_id: str) -> ChannelSnapshot | None:
        return self._claimed(provider, business_account_id)

    async def catch_up(self, timeout: float) -> None:
        return None


def run_to_end(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never waits on I/O (everything it awaits here is in memory)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the normalizer waited on something outside memory")


Outcome = tuple[list[tuple[str, bytes]], tuple[ItemFailure, ...]]


def normalize(record: WebhookReceived) -> Outcome | UnprocessableDelivery:
    """What the normalizer publishes for one archived record and the items it refuses (each one
    dead-lettered alone), or the bad-input error it raises for the whole delivery."""
    published: list[tuple[str, bytes]] = []

    async def publish(event: Event, event_id: str) -> None:
        assert event_id == getattr(event, "event_id", None), f"published as {event_id}: {event!r}"
        check_event(event, record)
        published.append((event_id, encode_event(event)))

    aliases = KafkaCustomerAliases("unused:9092", topics.CUSTOMER_ALIASES.name)  # never started
    aliases.loaded.set()  # and with nothing to read
    worker = Normalizer(
        InMemoryChannels(),  # type: ignore[arg-type]
        publish,
        catch_up_s=0.0,
        recent=RecentIds(1024),
        aliases=aliases,
        clock=lambda: NOW,
    )
    try:
        failures = run_to_end(worker.normalize(record))
    except UnprocessableDelivery as refused:
        return refused
    assert isinstance(failures, tuple), failures
    assert all(isinstance(f, ItemFailure) and f.position and f.reason for f in failures), failures
    return published, failures


def check_event(event: Event, record: WebhookReceived) -> None:
    """A published event is valid on the wire and consistent with the delivery it came from."""
    wire = encode_event(event)
    assert decode_event(type(event), wire) == event, f"{event.event_type} does not survive its encoding"
    validator(event.event_type).validate(orjson.loads(wire))
    if isinstance(event, CustomerAliasRecorded):  # the normalizer's own record of an identifier
        assert event.alias_key.startswith(THREAD_PREFIXES), event.alias_key
        assert event.conversation_key.startswith(THREAD_PREFIXES), event.conversation_key
        assert event.recorded_at.utcoffset() == timedelta(0), event.recorded_at
        return
    assert isinstance(
        event,
        MessageReceived
        | MessageEdited
        | MessageDeleted
        | MessageStatusChanged
        | HandoverReceived
        | TemplateStatusChanged
        | TemplateCategoryChanged
        | TemplateQualityChanged
        | MessagingLimitChanged
        | NumberThroughputChanged,
    ), event
    assert event.delivery_id == record.delivery_id
    assert event.provider_timestamp.utcoffset() == timedelta(0), event.provider_timestamp
    assert event.key(), f"{event.event_type} has an empty record key"
    if isinstance(
        event, MessageReceived | MessageEdited | MessageDeleted | MessageStatusChanged | HandoverReceived
    ):
        assert event.provider in ENDPOINT_PROVIDERS[record.provider], (record.provider, event.provider)
        assert event.account_id, event
        assert event.conversation_key.startswith(THREAD_PREFIXES), event.conversation_key
    if isinstance(event, MessageReceived | MessageEdited | MessageDeleted):
        assert event.provider_message_id, event
    if isinstance(event, MessageStatusChanged) and event.watermark is not None:
        assert event.watermark.utcoffset() == timedelta(0), event.watermark


def parse_or_refuse(endpoint: str, payload: Any) -> ParseResult | None:
    """The domain contract: a result, or MalformedPayload (None); the same answer twice."""
    try:
        first = PARSE(endpoint, payload, NOW)
    except MalformedPayload:
        return None
    assert isinstance(first, ParseResult), first
    # skipped kinds become metric labels: a payload must never mint one (security #13, finding 10)
    assert all(kind in SKIP_KINDS for kind in first.skipped), first.skipped
    assert PARSE(endpoint, payload, NOW) == first, "parsing the same delivery twice gave two results"
    return first


def check_signatures(endpoint: str, body: bytes, signature: int, header: str | None) -> dict[str, str]:
    """The verifier's answers for this body; returns the request headers ingest would see."""
    sign, verify = {
        "meta": (meta_webhook.meta_signature, meta_webhook.verify_meta),
        "x": (x_webhook.x_signature, x_webhook.verify_x),
    }[endpoint]
    right = sign(body, APP_SECRET)
    assert verify(body, right, [OTHER_SECRET, APP_SECRET]), "the right signature was refused"
    sent: str | None = {
        SIGNATURE_RIGHT: right,
        SIGNATURE_TAMPERED: right[:-2] + ("00" if right[-2:] != "00" else "11"),
        SIGNATURE_OTHER_SECRET: sign(body, OTHER_SECRET),
        SIGNATURE_NONE: None,
    }[signature]
    assert verify(body, sent, [APP_SECRET]) is (signature == SIGNATURE_RIGHT), (signature, sent)
    if header is not None:
        answer = verify(body, header, [APP_SECRET])
        assert answer in (True, False), answer
        if answer:
            assert header.strip().lower() == right.lower(), f"{header!r} verified for {right!r}"
    headers = {"content-type": "application/json", "user-agent": "fuzz"}
    if sent is not None:
        headers[SIGNATURE_HEADERS[endpoint]] = sent
    return headers


def check_delivery(endpoint: str, body: bytes, headers: dict[str, str]) -> None:
    """Archive the body as ingest does, normalize it as the normalizer does, check both."""
    try:
        payload = orjson.loads(body)
        decoded = True
    except orjson.JSONDecodeError:
        payload, decoded = None, False
    record = deliveries.archive_record(endpoint, body, headers, RECEIVED_AT, payload)
    assert not {k.lower() for k in record.headers} & set(SIGNATURE_HEADERS.values()), record.headers
    assert base64.b64decode(record.body_b64) == body
    assert decode_event(WebhookReceived, encode_event(record)) == record

    outcome = normalize(record)
    domain = parse_or_refuse(endpoint, payload) if decoded else None
    if isinstance(outcome, UnprocessableDelivery):
        # refused by the normalizer exactly when the bytes are not JSON or the domain refuses them
        assert domain is None, f"normalizer refused what the domain parsed: {outcome}"
        return
    assert domain is not None, "normalizer accepted what the domain refused"
    # a provider re-send: same bytes, archived later, must give the very same events
    resent = deliveries.archive_record(endpoint, body, headers, RECEIVED_AT + timedelta(hours=36), payload)
    assert normalize(resent) == outcome, "a re-sent delivery gave different events"


def forget_metric_labels() -> None:
    """Skipped kinds name what the payload said: without this, every new one is a new series."""
    for metric in (metrics.SKIPPED, metrics.NORMALIZED, metrics.UNKNOWN_ACCOUNTS, metrics.DUPLICATES):
        metric.clear()


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer expect
    if not data:
        return
    control, rest = data[0], data[1:]
    endpoint = ENDPOINTS[control & 1] if control & 0xE0 != 0xE0 else "instagram"
    mode = (control >> 1) & 3
    signature = (control >> 3) & 3
    header: str | None = None
    generated: Any = None
    if mode in (MODE_RAW, MODE_RAW_TOO):
        body = rest
    else:
        if mode == MODE_MUTATE:
            end = 2 + int.from_bytes(rest[:2], "big")
            try:
                document = orjson.loads(rest[2:end])
            except orjson.JSONDecodeError:
                return  # raw mode feeds broken JSON already
            fdp = atheris.FuzzedDataProvider(rest[end:])
            generated = mutate(fdp, document)
        else:
            fdp = atheris.FuzzedDataProvider(rest)
            generated = fuzz_delivery(fdp, endpoint)
        header = fdp.ConsumeBytes(80).decode("latin-1") or None
        body = dumps(generated)
        # the domain contract holds for any JSON value, not only those orjson reads back
        parse_or_refuse(endpoint, generated)
    signing_endpoint = endpoint if endpoint in ENDPOINTS else "meta"
    headers = check_signatures(signing_endpoint, body, signature, header)
    check_delivery(endpoint, body, headers)
    forget_metric_labels()


def main() -> None:
    # the normalizer logs unknown accounts; a fuzzer's stdout has no use for them
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
