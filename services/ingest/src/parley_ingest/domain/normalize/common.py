"""What every provider normalizer produces, and the small helpers they share (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from parley_events import (
    Author,
    Content,
    DeliveryStatus,
    Direction,
    MessageKind,
    Provider,
    ProviderError,
)


class MalformedPayload(ValueError):
    """The delivery is signed but not shaped like the provider documents: retrying cannot help."""


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A provider message before Parley knows which tenant and channel it belongs to."""

    provider: Provider
    account_id: str
    conversation_key: str
    direction: Direction
    author: Author
    content: Content
    provider_message_id: str
    provider_timestamp: datetime
    kind: MessageKind = MessageKind.DIRECT


@dataclass(frozen=True, slots=True)
class ParsedStatus:
    """A delivery or read receipt for messages the business sent."""

    provider: Provider
    account_id: str
    conversation_key: str
    status: DeliveryStatus
    provider_message_ids: tuple[str, ...]
    provider_timestamp: datetime
    watermark: datetime | None = None
    errors: tuple[ProviderError, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedTemplateStatus:
    """A WhatsApp template review outcome."""

    business_account_id: str
    status: str
    provider_timestamp: datetime
    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Everything found in one delivery; ``skipped`` names the event kinds left out."""

    messages: tuple[ParsedMessage, ...] = ()
    statuses: tuple[ParsedStatus, ...] = ()
    templates: tuple[ParsedTemplateStatus, ...] = ()
    skipped: tuple[str, ...] = ()

    def __add__(self, other: ParseResult) -> ParseResult:
        return ParseResult(
            self.messages + other.messages,
            self.statuses + other.statuses,
            self.templates + other.templates,
            self.skipped + other.skipped,
        )


EMPTY = ParseResult()


def is_digits(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts superscripts such as ``²``, which ``int`` refuses."""
    return value.isascii() and value.isdigit()


def epoch_number(value: Any) -> int | float:
    """A number, or a string of digits (WhatsApp and X send times as strings)."""
    if isinstance(value, str) and is_digits(value):
        if len(value) > 20:  # no time Parley can hold, and int() refuses 4300 digits
            raise MalformedPayload("timestamp is out of range")
        value = int(value)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MalformedPayload("timestamp is not a number")
    return value


def _from_epoch(seconds: Any) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:  # beyond year 1..9999, or NaN
        raise MalformedPayload("timestamp is out of range") from exc


def from_ms(value: Any) -> datetime:
    """Milliseconds since the epoch (Messenger, Instagram, X DMs) as UTC."""
    number = epoch_number(value)
    try:
        seconds = number / 1000
    except OverflowError as exc:  # an int too large for a float
        raise MalformedPayload("timestamp is out of range") from exc
    return _from_epoch(seconds)


def from_seconds(value: Any) -> datetime:
    """Seconds since the epoch (WhatsApp sends them as strings) as UTC."""
    return _from_epoch(epoch_number(value))


def from_iso(value: Any) -> datetime:
    """An ISO 8601 time (Graph API ``created_time``) as UTC; ``+0000`` offsets are accepted."""
    if not isinstance(value, str):
        raise MalformedPayload("time is not a string")
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError as exc:
        raise MalformedPayload(f"time {value!r} is not ISO 8601") from exc
    except OverflowError as exc:  # year 1 east of UTC, year 9999 west of it
        raise MalformedPayload(f"time {value!r} is out of range") from exc


def require_str(obj: Mapping[str, Any], key: str) -> str:
    """A required id or text field; numbers are accepted and turned into strings."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise MalformedPayload(f"{key} is missing")
    return str(value)


def optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
        return str(value)
    return None


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """A required object; anything else is a malformed payload."""
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"{what} is not an object")
    return value


def mappings(value: Any, what: str) -> list[Mapping[str, Any]]:
    """An optional list of objects (missing means empty)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise MalformedPayload(f"{what} is not a list of objects")
    return value


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
