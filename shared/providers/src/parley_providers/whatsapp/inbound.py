"""WhatsApp Cloud API webhooks (pure).

An entry is ``{id: WABA id, time?, changes: [{field, value}]}``. The ``messages`` field carries the
customers' messages and the receipts for the business's own (``statuses``), addressed to a phone
number (``metadata.phone_number_id``, the channel's account id); ``smb_message_echoes`` carries
what the business typed in the WhatsApp Business app on a number in coexistence (outbound messages
by a human outside Parley); ``standby`` carries, under ``value.standby``, the customers' messages
(``messages``) and the other responder's replies (``message_echoes``) in threads another responder
(Meta Business Agent, say) answers under Conversation Routing, marked ``standby`` like Messenger's;
``message_template_status_update`` carries template reviews,
``template_category_update`` and ``message_template_quality_update`` a template's new category and
quality rating, all addressed to the WABA.

A customer is named by a phone number (``wa_id``, ``from``) and a business-scoped user id (BSUID:
``contacts[].user_id``, ``from_user_id``), either of which may be absent (a customer with a username
may withhold the phone). Every customer has one thread, ``dm:<wa_id>`` when the phone is given (the
key every conversation before BSUIDs has), else ``dm:<BSUID>``. A phone-number or BSUID change
(``system`` messages) is a message on the thread of the identity the customer had before, carrying
the new identifiers (``Content.identity_change``); see docs/ingest.md for where the aliases live.
Message types, status values and fields Parley does not handle are skipped and named, never an
error; a change, message or status the provider did not shape as documented is a failure of that
item alone (with its position), never of its neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from parley_events import (
    Attachment,
    Author,
    Choice,
    Content,
    DeliveryStatus,
    Direction,
    IdentityChange,
    Location,
    MessageKind,
    Pricing,
    Provider,
    ProviderError,
    Reaction,
    SharedContact,
    ThreadControlAction,
)

from parley_providers.inbound import (
    MalformedPayload,
    ParsedHandover,
    ParsedMessage,
    ParsedMessagingLimit,
    ParsedStatus,
    ParsedTemplateStatus,
    ParsedThroughputChange,
    ParseResult,
    ResultBuilder,
    from_seconds,
    mapping,
    mappings,
    optional_str,
    require_str,
    skip_kind,
)
from parley_providers.whatsapp.rules import MESSAGING_LIMIT_TIERS, UNLIMITED

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
HANDLED_TYPES = MEDIA_TYPES | {"text", "location", "contacts", "interactive", "button", "reaction"}
STATUSES = {status.value: status for status in DeliveryStatus}
LIMIT_FIELDS = frozenset({"business_capability_update", "phone_number_quality_update"})
"""Fields that may carry the business's messaging limit (``max_daily_conversations_per_business``)."""
HANDOVERS: dict[str, tuple[ThreadControlAction, bool]] = {
    "control_passed": (ThreadControlAction.PASS, True),
    "control_taken": (ThreadControlAction.TAKE, False),
}
"""WhatsApp Conversation Routing's ``messaging_handovers`` notifications and what each means for
the app it reaches (Parley's): ``control_passed`` goes to the new owner, ``control_taken`` to the
owner the escalation partner took the thread from; a release sends none (WhatsApp
messaging_handovers webhook reference)."""
IDENTITY_CHANGES = frozenset({"user_changed_number", "user_changed_user_id"})
"""System messages that change a customer's identifiers (the others are skipped)."""


@dataclass(frozen=True, slots=True)
class _Contact:
    """What ``contacts[]`` says of one customer: the identifiers and the names."""

    phone: str | None
    user_id: str | None
    name: str | None
    username: str | None


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
    if field == "smb_message_echoes":
        _echoes_value(out, f"{position}.value", mapping(change.get("value"), "change value"))
        return None
    if field == "standby":
        _standby_value(out, f"{position}.value", mapping(change.get("value"), "change value"))
        return None
    if field == "messaging_handovers":
        return _handover(mapping(change.get("value"), "change value"))
    if field == "message_template_status_update":
        return _template_status(entry, mapping(change.get("value"), "change value"))
    if field == "template_category_update":
        return _template_category(entry, mapping(change.get("value"), "change value"))
    if field == "message_template_quality_update":
        return _template_quality(entry, mapping(change.get("value"), "change value"))
    if isinstance(field, str) and field in LIMIT_FIELDS:  # a payload's field may be any JSON
        value = mapping(change.get("value"), "change value")
        limit = _messaging_limit(entry, value)
        throughput = _throughput_change(entry, value) if field == "phone_number_quality_update" else None
        if limit is not None or throughput is not None:
            return ParseResult(
                limits=(limit,) if limit is not None else (),
                throughputs=(throughput,) if throughput is not None else (),
            )
    return ParseResult(skipped=(skip_kind("whatsapp", field),))


# --- messages and statuses ------------------------------------------------------------------


def _messages_value(out: ResultBuilder, position: str, value: Mapping[str, Any]) -> None:
    account_id = _account_id(value)
    contacts = _contacts(value.get("contacts"))
    out.items(
        f"{position}.messages",
        value.get("messages"),
        "messages",
        lambda _at, m: _message(account_id, contacts, m),
    )
    out.items(
        f"{position}.statuses", value.get("statuses"), "statuses", lambda _at, st: _status(account_id, st)
    )
    if value.get("errors"):
        # errors Meta could not tie to a message (e.g. a webhook it could not deliver in full)
        out.skip("whatsapp.errors")


def _account_id(value: Mapping[str, Any]) -> str:
    return require_str(mapping(value.get("metadata"), "metadata"), "phone_number_id")


def _contacts(raw: Any) -> dict[str, _Contact]:
    """Each contact by its phone number and by its BSUID.

    Contacts only lend names and the other identifier to the messages: a malformed one costs
    those, not a message.
    """
    found: dict[str, _Contact] = {}
    for contact in raw if isinstance(raw, list) else ():
        if not isinstance(contact, Mapping):
            continue
        profile = contact.get("profile")
        profile = profile if isinstance(profile, Mapping) else {}
        entry = _Contact(
            phone=optional_str(contact, "wa_id"),
            user_id=optional_str(contact, "user_id"),
            name=optional_str(profile, "name"),
            username=optional_str(profile, "username"),
        )
        for key in (entry.phone, entry.user_id):
            if key:
                found[key] = entry
    return found


def _customer(contacts: Mapping[str, _Contact], phone: str | None, user_id: str | None) -> Author:
    """The customer as an author: the phone number is the id when given, else the BSUID."""
    contact = contacts.get(phone or "") or contacts.get(user_id or "")
    if contact is not None:
        phone = phone or contact.phone
        user_id = user_id or contact.user_id
    customer_id = phone or user_id
    if customer_id is None:
        raise MalformedPayload("from and from_user_id are missing")
    return Author(
        id=customer_id,
        name=contact.name if contact else None,
        phone=phone,
        user_id=user_id,
        username=contact.username if contact else None,
    )


def _message(account_id: str, contacts: Mapping[str, _Contact], message: Mapping[str, Any]) -> ParseResult:
    kind = require_str(message, "type")
    if kind == "system":
        return _system(account_id, message)
    if kind not in HANDLED_TYPES:
        # "unsupported", "order", "request_welcome", ...
        return ParseResult(skipped=(skip_kind("whatsapp.message", kind),))
    # "from" is absent when the customer withholds the phone number: the BSUID names them then
    author = _customer(contacts, optional_str(message, "from"), optional_str(message, "from_user_id"))
    message_id = require_str(message, "id")
    timestamp = from_seconds(message.get("timestamp"))
    context = message.get("context")
    reply_to = optional_str(context, "id") if isinstance(context, Mapping) else None
    message_kind = MessageKind.REACTION if kind == "reaction" else MessageKind.DIRECT
    key = f"dm:{author.id}"
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.WHATSAPP,
                account_id=account_id,
                conversation_key=key,
                direction=Direction.INBOUND,
                author=author,
                content=_content(kind, message).model_copy(update={"reply_to": reply_to}),
                provider_message_id=message_id,
                provider_timestamp=timestamp,
                kind=message_kind,
                aliases=_aliases(key, author.phone, author.user_id),
            ),
        )
    )


def _aliases(key: str, *identifiers: str | None) -> tuple[str, ...]:
    """Every thread key of the customer, the message's own first, each once."""
    found: list[str] = [key]
    for identifier in identifiers:
        alias = f"dm:{identifier}" if identifier else None
        if alias and alias not in found:
            found.append(alias)
    return tuple(found)


def _system(account_id: str, message: Mapping[str, Any]) -> ParseResult:
    """A phone-number or BSUID change, on the thread of the identity the customer had before."""
    system = mapping(message.get("system"), "system")
    change = optional_str(system, "type")
    if change not in IDENTITY_CHANGES:
        return ParseResult(skipped=(skip_kind("whatsapp.message", "system"),))
    previous_user_id = optional_str(system, "previous_user_id")
    old_phone = optional_str(message, "from")
    old_user_id = previous_user_id or optional_str(message, "from_user_id")
    customer_id = old_phone or old_user_id
    if customer_id is None:
        raise MalformedPayload("an identity change names no earlier phone number or user id")
    new_phone, new_user_id = optional_str(system, "wa_id"), optional_str(system, "user_id")
    key = f"dm:{customer_id}"
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.WHATSAPP,
                account_id=account_id,
                conversation_key=key,
                direction=Direction.INBOUND,
                author=Author(id=customer_id, phone=old_phone, user_id=old_user_id),
                content=Content(
                    identity_change=IdentityChange(
                        kind=change,
                        phone=new_phone,
                        user_id=new_user_id,
                        previous_user_id=previous_user_id,
                        text=optional_str(system, "body"),
                    )
                ),
                provider_message_id=require_str(message, "id"),
                provider_timestamp=from_seconds(message.get("timestamp")),
                # the new identifiers (and the old ones) lead to the conversation the customer has
                aliases=_aliases(key, old_phone, old_user_id, new_phone, new_user_id),
            ),
        )
    )


# --- Conversation Routing --------------------------------------------------------------------


def _handover(value: Mapping[str, Any]) -> ParseResult:
    """A thread's control changed hands on a number with several responders.

    The notification names the business number (``recipient.phone_number_id``), the WhatsApp user
    (``sender``: the phone number, or the business-scoped user id when the phone is withheld) and
    carries one object, ``control_passed`` or ``control_taken`` (``type`` names it), with the
    previous owner's ``metadata``. The roles it names are not read yet (docs/ingest.md).
    """
    kind = optional_str(value, "type") or next((k for k in HANDOVERS if k in value), None)
    if kind not in HANDOVERS:
        return ParseResult(skipped=(skip_kind("whatsapp.handover", kind),))
    action, parley_active = HANDOVERS[kind]
    recipient = value.get("recipient")
    metadata = value.get("metadata")
    account_id = (optional_str(recipient, "phone_number_id") if isinstance(recipient, Mapping) else None) or (
        optional_str(metadata, "phone_number_id") if isinstance(metadata, Mapping) else None
    )
    if account_id is None:
        raise MalformedPayload("the handover names no business phone number id")
    sender = mapping(value.get("sender"), "sender")
    phone = optional_str(sender, "phone_number") or optional_str(sender, "wa_id")
    customer = phone or optional_str(sender, "user_id")
    if customer is None:
        raise MalformedPayload("the handover names no WhatsApp user")
    details = value.get(kind)
    return ParseResult(
        handovers=(
            ParsedHandover(
                provider=Provider.WHATSAPP,
                account_id=account_id,
                conversation_key=f"dm:{customer.removeprefix('+')}",
                action=action,
                parley_active=parley_active,
                provider_timestamp=from_seconds(value.get("timestamp")),
                metadata=optional_str(details, "metadata") if isinstance(details, Mapping) else None,
            ),
        )
    )


# --- coexistence echoes ---------------------------------------------------------------------


def _echoes_value(out: ResultBuilder, position: str, value: Mapping[str, Any]) -> None:
    account_id = _account_id(value)
    out.items(
        f"{position}.message_echoes",
        value.get("message_echoes"),
        "message_echoes",
        lambda _at, m: _echo(account_id, m),
    )


def _standby_value(out: ResultBuilder, position: str, value: Mapping[str, Any]) -> None:
    """Conversation Routing: a thread another responder answers, told to Parley's app as the passive
    listener. The customer's messages and the other responder's replies join the conversation's
    history marked ``standby`` (routing then knows Parley is not the active responder); the receipts
    of the other responder's messages are Parley's business in no way and are skipped."""
    account_id = _account_id(value)
    inner = mapping(value.get("standby"), "standby")
    contacts = _contacts(inner.get("contacts") or value.get("contacts"))
    out.items(
        f"{position}.standby.messages",
        inner.get("messages"),
        "messages",
        lambda _at, m: _on_standby(_message(account_id, contacts, m)),
    )
    out.items(
        f"{position}.standby.message_echoes",
        inner.get("message_echoes"),
        "message_echoes",
        lambda _at, m: _on_standby(_echo(account_id, m)),
    )
    statuses = inner.get("statuses")
    if isinstance(statuses, list) and statuses:
        out.skip("whatsapp.standby.statuses", len(statuses))


def _on_standby(result: ParseResult) -> ParseResult:
    """``result``'s messages, delivered while another responder answers the thread."""
    return replace(result, messages=tuple(replace(m, standby=True) for m in result.messages))


def _echo(account_id: str, message: Mapping[str, Any]) -> ParseResult:
    """What the business typed in the WhatsApp Business app: outbound, by a human outside Parley."""
    kind = require_str(message, "type")
    if kind not in HANDLED_TYPES:
        return ParseResult(skipped=(skip_kind("whatsapp.message", kind),))
    # "to" is the number as the business typed it ("+16505551234"): the thread's key has digits only
    to = optional_str(message, "to")
    customer = _customer({}, to.removeprefix("+") if to else None, optional_str(message, "to_user_id"))
    business = optional_str(message, "from") or account_id
    context = message.get("context")
    reply_to = optional_str(context, "id") if isinstance(context, Mapping) else None
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.WHATSAPP,
                account_id=account_id,
                conversation_key=f"dm:{customer.id}",
                aliases=(f"dm:{customer.id}",),  # a changed number's echo finds the old thread
                direction=Direction.OUTBOUND,
                author=Author(id=business),
                content=_content(kind, message).model_copy(update={"reply_to": reply_to}),
                provider_message_id=require_str(message, "id"),
                provider_timestamp=from_seconds(message.get("timestamp")),
                kind=MessageKind.REACTION if kind == "reaction" else MessageKind.DIRECT,
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
    # recipient_id is absent when the customer withholds the phone: the BSUID names them then
    recipient = optional_str(status, "recipient_id") or optional_str(status, "recipient_user_id")
    if recipient is None:
        raise MalformedPayload("recipient_id and recipient_user_id are missing")
    return ParseResult(
        statuses=(
            ParsedStatus(
                provider=Provider.WHATSAPP,
                account_id=account_id,
                conversation_key=f"dm:{recipient}",
                aliases=(f"dm:{recipient}",),  # a receipt to a changed number finds the old thread
                status=STATUSES[value],
                provider_message_ids=(require_str(status, "id"),),
                provider_timestamp=from_seconds(status.get("timestamp")),
                errors=tuple(_error(error) for error in mappings(status.get("errors"), "errors")),
                pricing=_pricing(status.get("pricing")),
            ),
        )
    )


def _pricing(raw: Any) -> Pricing | None:
    """The status's ``pricing`` object, as the provider gives it (absent: None)."""
    if not isinstance(raw, Mapping):
        return None
    billable = raw.get("billable")
    return Pricing(
        billable=billable if isinstance(billable, bool) else None,
        category=optional_str(raw, "category"),
        pricing_model=optional_str(raw, "pricing_model"),
        type=optional_str(raw, "type"),
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
                category=optional_str(value, "message_template_category"),
            ),
        )
    )


def _template_category(entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParseResult:
    """A template's category changed (``previous_category`` and ``new_category``); a change only
    announced (``correct_category`` with a ``category_update_timestamp``) has not happened yet and
    is skipped: the completed change follows."""
    if entry.get("time") is None:
        raise MalformedPayload("template category update has no entry time")
    if "previous_category" not in value:
        return ParseResult(skipped=(skip_kind("whatsapp", "template_category_update"),))
    return ParseResult(
        templates=(
            ParsedTemplateStatus(
                business_account_id=require_str(entry, "id"),
                status="",
                provider_timestamp=from_seconds(entry["time"]),
                template_id=optional_str(value, "message_template_id"),
                template_name=optional_str(value, "message_template_name"),
                language=optional_str(value, "message_template_language"),
                update="category",
                category=require_str(value, "new_category"),
                previous_category=optional_str(value, "previous_category"),
            ),
        )
    )


def _template_quality(entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParseResult:
    """A template's quality rating changed (``previous_quality_score``, ``new_quality_score``)."""
    if entry.get("time") is None:
        raise MalformedPayload("template quality update has no entry time")
    return ParseResult(
        templates=(
            ParsedTemplateStatus(
                business_account_id=require_str(entry, "id"),
                status="",
                provider_timestamp=from_seconds(entry["time"]),
                template_id=optional_str(value, "message_template_id"),
                template_name=optional_str(value, "message_template_name"),
                language=optional_str(value, "message_template_language"),
                update="quality",
                quality_score=require_str(value, "new_quality_score"),
                previous_quality_score=optional_str(value, "previous_quality_score"),
            ),
        )
    )


# --- throughput -----------------------------------------------------------------------------


def _throughput_change(entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParsedThroughputChange | None:
    """A number's throughput level changed (``event`` ``THROUGHPUT_UPGRADE``, or another
    ``THROUGHPUT_`` event), named by its display phone number; None for the other events."""
    event = optional_str(value, "event")
    if event is None or not event.startswith("THROUGHPUT"):
        return None
    if entry.get("time") is None:
        raise MalformedPayload("throughput update has no entry time")
    return ParsedThroughputChange(
        business_account_id=require_str(entry, "id"),
        display_phone_number=require_str(value, "display_phone_number"),
        event=event,
        provider_timestamp=from_seconds(entry["time"]),
    )


# --- messaging limits -----------------------------------------------------------------------


def _messaging_limit(entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParsedMessagingLimit | None:
    """The business's messaging limit, when the change gives one; None when it gives none (a
    throughput change, a number still onboarding, ``TIER_NOT_SET``), which is then skipped."""
    tier: str | None = None
    limit: int | None = None
    named = optional_str(value, "max_daily_conversations_per_business")
    legacy = value.get("max_daily_conversation_per_phone")
    if named in MESSAGING_LIMIT_TIERS:
        tier, limit = named, MESSAGING_LIMIT_TIERS[named]
    elif isinstance(legacy, int) and not isinstance(legacy, bool) and (legacy == UNLIMITED or legacy > 0):
        # the earlier form: a number, -1 for unlimited
        tier = "TIER_UNLIMITED" if legacy == UNLIMITED else f"{legacy}"
        limit = None if legacy == UNLIMITED else legacy
    if tier is None:
        return None
    if entry.get("time") is None:
        raise MalformedPayload("messaging limit update has no entry time")
    return ParsedMessagingLimit(
        business_account_id=require_str(entry, "id"),
        tier=tier,
        messaging_limit=limit,
        provider_timestamp=from_seconds(entry["time"]),
    )
