"""WhatsApp Cloud API webhooks (pure).

An entry is ``{id: WABA id, time?, changes: [{field, value}]}``. The ``messages`` field carries the
customers' messages and the receipts for the business's own (``statuses``), addressed to a phone
number (``metadata.phone_number_id``, the channel's account id); ``message_template_status_update``
carries template reviews, addressed to the WABA. Every customer has one thread, ``dm:<wa_id>``.
Message types, status values and fields Parley does not handle are skipped and named, never an
error; a change, message or status the provider did not shape as documented is a failure of that
item alone (with its position), never of its neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from parley_events import (
    Attachment,
    Author,
    Choice,
    Content,
    DeliveryStatus,
    Direction,
    Location,
    MessageKind,
    Provider,
    ProviderError,
    Reaction,
    SharedContact,
)

from parley_providers.inbound import (
    MalformedPayload,
    ParsedMessage,
    ParsedStatus,
    ParsedTemplateStatus,
    ParseResult,
    ResultBuilder,
    from_seconds,
    mapping,
    mappings,
    optional_str,
    require_str,
    skip_kind,
)

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
HANDLED_TYPES = MEDIA_TYPES | {"text", "location", "contacts", "interactive", "button", "reaction"}
STATUSES = {status.value: status for status in DeliveryStatus}


def parse_whatsapp_entry(out: ResultBuilder, position: str, raw: Any) -> None:
    """One ``entry`` of a ``whatsapp_business_account`` delivery, each change, message and status
    on its own (``position`` is the entry's, e.g. ``entry[0]``)."""
    entry = mapping(raw, "entry")
    out.items(
        f"{position}.changes",
        entry.get("changes"),
        "changes",
        lambda at, change: _change(out, at, entry, change),
    )


def _change(
    out: ResultBuilder, position: str, entry: Mapping[str, Any], change: Mapping[str, Any]
) -> ParseResult | None:
    field = change.get("field")
    if field == "messages":
        _messages_value(out, f"{position}.value", mapping(change.get("value"), "change value"))
        return None
    if field == "message_template_status_update":
        return _template_status(entry, mapping(change.get("value"), "change value"))
    return ParseResult(skipped=(skip_kind("whatsapp", field),))


# --- messages and statuses ------------------------------------------------------------------


def _messages_value(out: ResultBuilder, position: str, value: Mapping[str, Any]) -> None:
    metadata = mapping(value.get("metadata"), "metadata")
    account_id = require_str(metadata, "phone_number_id")
    names: dict[str, str] = {}
    contacts = value.get("contacts")
    # contacts only lend their names to the messages: a malformed one costs a name, not a message
    for contact in contacts if isinstance(contacts, list) else ():
        if not isinstance(contact, Mapping):
            continue
        wa_id = optional_str(contact, "wa_id")
        profile = contact.get("profile")
        name = optional_str(profile, "name") if isinstance(profile, Mapping) else None
        if wa_id and name:
            names[wa_id] = name
    out.items(
        f"{position}.messages",
        value.get("messages"),
        "messages",
        lambda _at, m: _message(account_id, names, m),
    )
    out.items(
        f"{position}.statuses", value.get("statuses"), "statuses", lambda _at, st: _status(account_id, st)
    )
    if value.get("errors"):
        # errors Meta could not tie to a message (e.g. a webhook it could not deliver in full)
        out.skip("whatsapp.errors")


def _message(account_id: str, names: Mapping[str, str], message: Mapping[str, Any]) -> ParseResult:
    kind = require_str(message, "type")
    if kind not in HANDLED_TYPES:
        # "unsupported", "system" (number changed), "order", "request_welcome", ...
        return ParseResult(skipped=(skip_kind("whatsapp.message", kind),))
    sender = require_str(message, "from")
    message_id = require_str(message, "id")
    timestamp = from_seconds(message.get("timestamp"))
    context = message.get("context")
    reply_to = optional_str(context, "id") if isinstance(context, Mapping) else None
    message_kind = MessageKind.REACTION if kind == "reaction" else MessageKind.DIRECT
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.WHATSAPP,
                account_id=account_id,
                conversation_key=f"dm:{sender}",
                direction=Direction.INBOUND,
                author=Author(id=sender, name=names.get(sender)),
                content=_content(kind, message).model_copy(update={"reply_to": reply_to}),
                provider_message_id=message_id,
                provider_timestamp=timestamp,
                kind=message_kind,
            ),
        )
    )


def _content(kind: str, message: Mapping[str, Any]) -> Content:
    if kind == "contacts":
        return Content(contacts=tuple(_shared_contact(card) for card in mappings(message.get(kind), kind)))
    body = mapping(message.get(kind), kind)
    if kind == "text":
        return Content(text=optional_str(body, "body"))
    if kind in MEDIA_TYPES:
        attachment = Attachment(type=kind, url=optional_str(body, "url"), media_id=optional_str(body, "id"))
        return Content(text=optional_str(body, "caption"), attachments=(attachment,))
    if kind == "location":
        return Content(location=_location(body))
    if kind == "interactive":
        return _interactive(body)
    if kind == "button":
        title = optional_str(body, "text")
        return Content(
            text=title, choice=Choice(kind="button", payload=optional_str(body, "payload"), title=title)
        )
    # reaction: an empty or missing emoji means the customer took the reaction back
    emoji = optional_str(body, "emoji")
    return Content(
        reaction=Reaction(
            emoji=emoji,
            action="react" if emoji else "unreact",
            target_message_id=optional_str(body, "message_id"),
        )
    )


def _location(body: Mapping[str, Any]) -> Location:
    return Location(
        latitude=_coordinate(body, "latitude"),
        longitude=_coordinate(body, "longitude"),
        name=optional_str(body, "name"),
        address=optional_str(body, "address"),
    )


def _coordinate(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedPayload(f"location {key} is not a number")
    return float(value)


def _shared_contact(card: Mapping[str, Any]) -> SharedContact:
    name = card.get("name")
    return SharedContact(
        name=optional_str(name, "formatted_name") if isinstance(name, Mapping) else None,
        phones=_values(card, "phones", "phone"),
        emails=_values(card, "emails", "email"),
    )


def _values(card: Mapping[str, Any], key: str, field: str) -> tuple[str, ...]:
    found = (optional_str(item, field) for item in mappings(card.get(key), key))
    return tuple(value for value in found if value)


def _interactive(body: Mapping[str, Any]) -> Content:
    """A tapped reply button or list row; the title also becomes the text the agent reads."""
    kind = require_str(body, "type")
    raw_reply = body.get(kind)
    reply: Mapping[str, Any] = raw_reply if isinstance(raw_reply, Mapping) else {}
    # button_reply and list_reply carry {id, title}; a flow's nfm_reply carries {response_json, body}
    payload = optional_str(reply, "id") or optional_str(reply, "response_json")
    title = optional_str(reply, "title") or optional_str(reply, "body")
    return Content(text=title, choice=Choice(kind=kind, payload=payload, title=title))


def _status(account_id: str, status: Mapping[str, Any]) -> ParseResult:
    value = require_str(status, "status")
    if value not in STATUSES:
        # "deleted", "warning", ...: not a delivery outcome Parley tracks
        return ParseResult(skipped=(skip_kind("whatsapp.status", value),))
    return ParseResult(
        statuses=(
            ParsedStatus(
                provider=Provider.WHATSAPP,
                account_id=account_id,
                conversation_key=f"dm:{require_str(status, 'recipient_id')}",
                status=STATUSES[value],
                provider_message_ids=(require_str(status, "id"),),
                provider_timestamp=from_seconds(status.get("timestamp")),
                errors=tuple(_error(error) for error in mappings(status.get("errors"), "errors")),
            ),
        )
    )


def _error(error: Mapping[str, Any]) -> ProviderError:
    code = error.get("code")
    data = error.get("error_data")
    details = optional_str(data, "details") if isinstance(data, Mapping) else None
    return ProviderError(
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        title=optional_str(error, "title"),
        message=optional_str(error, "message") or details,
    )


# --- templates ------------------------------------------------------------------------------


def _template_status(entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParseResult:
    if entry.get("time") is None:
        raise MalformedPayload("template status update has no entry time")
    timestamp: datetime = from_seconds(entry["time"])
    reason = optional_str(value, "reason")
    return ParseResult(
        templates=(
            ParsedTemplateStatus(
                business_account_id=require_str(entry, "id"),
                status=require_str(value, "event"),
                provider_timestamp=timestamp,
                template_id=optional_str(value, "message_template_id"),
                template_name=optional_str(value, "message_template_name"),
                language=optional_str(value, "message_template_language"),
                reason=None if reason in (None, "NONE") else reason,
            ),
        )
    )
