"""What every provider normalizer produces, and the small helpers they share (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from parley_events import (
    Author,
    Content,
    DeliveryStatus,
    Direction,
    MessageKind,
    Pricing,
    Provider,
    ProviderError,
    ThreadControlAction,
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
    aliases: tuple[str, ...] = ()
    """Every thread key the customer goes by, ``conversation_key`` first (WhatsApp: the phone's
    and the business-scoped user id's, a changed number's). Not empty: the normalizer keeps them
    all pointing at the one conversation the customer has; empty: the key is the thread."""
    standby: bool | None = None
    """Conversation Routing: True when delivered while another app answers the thread (Meta's
    ``standby`` list), False when delivered to the thread's active responder (Meta's
    ``messaging`` list), None when the provider's delivery says nothing about it."""
    fetch: ContentToFetch | None = None
    """The delivery names the message by ids only (Instagram mentions): its text and author are
    asked of the provider's API before it is published (the normalizer's content lookup)."""


@dataclass(frozen=True, slots=True)
class ContentToFetch:
    """What to ask a provider's API for a message the webhook names by ids only.

    ``kind`` is the provider's lookup (Meta: ``mentioned_media``, ``mentioned_comment``);
    ``object_id`` the id it takes; ``media_id`` the media a mentioned comment is on.
    """

    kind: str
    object_id: str
    media_id: str | None = None


class ChangeAction(StrEnum):
    """What a customer did to a message they wrote before."""

    EDITED = "edited"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ParsedChange:
    """A customer edited or removed a message (Page feed comments and posts): an event about the
    message ``provider_message_id`` names, which Parley may or may not have received."""

    provider: Provider
    account_id: str
    conversation_key: str
    provider_message_id: str
    action: ChangeAction
    provider_timestamp: datetime
    text: str | None = None
    """The new text (edits)."""
    author: Author | None = None
    kind: MessageKind = MessageKind.COMMENT


@dataclass(frozen=True, slots=True)
class ParsedHandover:
    """A provider's word on which app answers a thread (Conversation Routing's handovers).

    ``parley_active``: whether the app the webhook reached (Parley's) answers the thread after
    this; ``None`` when the notification changes nothing yet (a request).
    """

    provider: Provider
    account_id: str
    conversation_key: str
    action: ThreadControlAction
    parley_active: bool | None
    provider_timestamp: datetime
    new_owner_app_id: str | None = None
    previous_owner_app_id: str | None = None
    requested_owner_app_id: str | None = None
    metadata: str | None = None

    def seen_by(self, own_app_ids: frozenset[str]) -> ParsedHandover:
        """This handover as Parley reads it when it knows its own app ids (Meta's app, the
        Instagram Login app): the app ids decide, not whom the notification reached.

        The parser reads each kind from the receiving app's side (a take reaches the app the
        thread is taken from), but Meta also tells every app subscribed to the handovers of a
        take, Parley's own included. So a pass or take naming Parley's app as the new owner makes
        Parley the active responder, one naming another app does not (whoever it came from); one
        naming no new owner after Parley's app (a release, the thread idle) does not either. A
        request, or a notification naming no app of Parley's, is kept as parsed; so is everything
        when Parley's app ids are not known."""
        if not own_app_ids or self.action is ThreadControlAction.REQUEST:
            return self
        if self.new_owner_app_id:
            active = self.new_owner_app_id in own_app_ids
        elif self.previous_owner_app_id in own_app_ids:
            active = False
        else:
            return self
        return self if active is self.parley_active else replace(self, parley_active=active)


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
    pricing: Pricing | None = None
    aliases: tuple[str, ...] = ()
    """As a message's: not empty, the key may be an alias of the customer's conversation key."""


@dataclass(frozen=True, slots=True)
class ParsedTemplateStatus:
    """A change of a WhatsApp template: its review status (``update`` "status"), its category
    ("category": ``category`` is the new one) or its quality rating ("quality")."""

    business_account_id: str
    status: str
    provider_timestamp: datetime
    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None
    reason: str | None = None
    update: str = "status"
    category: str | None = None
    previous_category: str | None = None
    quality_score: str | None = None
    previous_quality_score: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedThroughputChange:
    """A business number's throughput level changed (WhatsApp), named by its display number."""

    business_account_id: str
    display_phone_number: str
    event: str
    provider_timestamp: datetime


@dataclass(frozen=True, slots=True)
class ParsedMessagingLimit:
    """A business's messaging limit as the provider set it (WhatsApp, per business portfolio)."""

    business_account_id: str
    tier: str
    messaging_limit: int | None
    """Unique customers per rolling 24 h outside the window; None: unlimited."""
    provider_timestamp: datetime


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """One item of a delivery that could not be normalized; its neighbours still are.

    ``position`` says where it is in the delivery, JSON-pointer-like
    (``entry[0].changes[1].value.messages[2]``); ``reason`` says what is wrong with it.
    """

    position: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Everything found in one delivery.

    ``skipped`` names the event kinds left out (from :data:`SKIP_KINDS` only); ``failures`` the
    items that could not be normalized.
    """

    messages: tuple[ParsedMessage, ...] = ()
    statuses: tuple[ParsedStatus, ...] = ()
    templates: tuple[ParsedTemplateStatus, ...] = ()
    skipped: tuple[str, ...] = ()
    failures: tuple[ItemFailure, ...] = ()
    limits: tuple[ParsedMessagingLimit, ...] = ()
    handovers: tuple[ParsedHandover, ...] = ()
    throughputs: tuple[ParsedThroughputChange, ...] = ()
    changes: tuple[ParsedChange, ...] = ()

    def __add__(self, other: ParseResult) -> ParseResult:
        return ParseResult(
            self.messages + other.messages,
            self.statuses + other.statuses,
            self.templates + other.templates,
            self.skipped + other.skipped,
            self.failures + other.failures,
            self.limits + other.limits,
            self.handovers + other.handovers,
            self.throughputs + other.throughputs,
            self.changes + other.changes,
        )


EMPTY = ParseResult()

# --- skipped kinds: a fixed set, whatever a payload says ----------------------------------------

_MESSAGING_SKIPS = (
    "optin",
    "referral",  # no longer skipped (normalized), kept so a label once counted stays valid
    "account_linking",
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "app_roles",
    "policy_enforcement",
    "message_edit",
    "unknown",
)
# Kinds named after a payload value: the value is kept only when it is one of these, else the
# kind is "<family>.other". A payload can thus never mint a new kind (a metric label, a string
# held per item): one forged body once made 1,400 label values, a Meta ``object`` one of 1 MB.
_NAMED = {
    "meta": ("user", "permissions", "application", "certificate_transparency", "payment_subscriptions"),
    "messenger.changes": ("ratings", "mention", "leadgen", "live_videos", "videos", "name", "picture"),
    "instagram.changes": (
        "story_insights",
        "messages",
        "message_reactions",
        "messaging_seen",
        "live_comments",
    ),
    "messenger.feed": (
        "status",
        "post",
        "photo",
        "video",
        "share",
        "reaction",
        "like",
        "album",
        "event",
        "story",
    ),
    "messenger.feed.comment": ("edited", "remove", "hide", "unhide"),
    "whatsapp": (
        "account_update",
        "account_review_update",
        "account_alerts",
        "phone_number_quality_update",
        "phone_number_name_update",
        "business_capability_update",
        "template_category_update",
        "message_template_quality_update",
        "message_template_components_update",
        "security",
        "history",
        "flows",
        "smb_message_echoes",
        "smb_app_state_sync",
        "user_preferences",
    ),
    "whatsapp.message": ("unsupported", "system", "order", "request_welcome", "ephemeral", "unknown"),
    "whatsapp.status": ("deleted", "warning", "played"),
    "x": (
        "favorite_events",
        "follow_events",
        "unfollow_events",
        "block_events",
        "unblock_events",
        "mute_events",
        "unmute_events",
        "user_event",
        "direct_message_indicate_typing_events",
        "direct_message_mark_read_events",
        "tweet_delete_events",
    ),
    "x.dm": ("welcome_message_rule", "welcome_message", "unknown"),
    # X Activity API event types Parley subscribes to but makes no message of, or that reach a
    # shared webhook from another subscription (docs.x.com/x-api/activity/introduction)
    "whatsapp.handover": (),  # a messaging_handovers notification other than pass or take
    "x.activity": (
        "post.delete",
        "post.repost.create",
        "like.create",
        "follow.follow",
        "follow.unfollow",
        "profile.update.bio",
        "profile.update.profile_picture",
        "profile.update.banner_picture",
        "profile.update.screenname",
        "profile.update.handle",
        "profile.update.geo",
        "profile.update.url",
        "profile.update.verified_badge",
        "profile.update.affiliate_badge",
        "chat.conversation_join",
        "chat.conversation.join",
        "chat.conversation.member_added",
        "chat.conversation.member_removed",
        "chat.conversation.admin_added",
        "chat.conversation.admin_removed",
        "chat.update.group_name",
        "chat.update.restrictions",
        "dm.read",
        "dm.indicate_typing",
        "news.new",
        "spaces.start",
        "spaces.end",
        "mute.mute",
        "mute.unmute",
        "block.block",
        "block.unblock",
        "broadcast.start",
        "broadcast.end",
        "broadcast.chat",
        "oauth.revoke",
        "errors",
    ),
}
SKIP_KINDS: frozenset[str] = frozenset(
    {
        *(f"{prefix}.{kind}" for prefix in ("messenger", "instagram") for kind in _MESSAGING_SKIPS),
        *(f"{family}.{name}" for family, names in _NAMED.items() for name in names),
        *(f"{family}.other" for family in _NAMED),
        "whatsapp.errors",
        # receipts of the messages another responder sent in a thread it answers (WhatsApp standby)
        "whatsapp.standby.statuses",
        "x.tweet.retweet",
        "x.tweet.own_post",
        # an XChat message is published (flagged encrypted); its ciphertext is what is left out
        "x.chat.ciphertext",
        "other",
    }
)


def skip_kind(family: str, value: Any) -> str:
    """``<family>.<value>`` if that is a known kind, else ``<family>.other``; never a new string."""
    if isinstance(value, str) and len(value) <= 64:
        kind = f"{family}.{value}"
        if kind in SKIP_KINDS:
            return kind
    return f"{family}.other" if f"{family}.other" in SKIP_KINDS else "other"


# --- per-item parsing -------------------------------------------------------------------------

# Provider times outside this range are a sender's mistake (a seconds value read as milliseconds
# lands in 1970), not a time to sort a conversation by.
EARLIEST_TIME = datetime(2006, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
MAX_REASON_CHARS = 500


def check_time(value: datetime, now: datetime, what: str = "timestamp") -> None:
    """Refuse a provider time before 2006 or more than a day after ``now``."""
    if value < EARLIEST_TIME:
        raise MalformedPayload(f"{what} {value.isoformat()} is before {EARLIEST_TIME.year}")
    if value > now + FUTURE_SLACK:
        raise MalformedPayload(f"{what} {value.isoformat()} is more than a day in the future")


def check_times(result: ParseResult, now: datetime) -> None:
    """Every time an item carries is within the sane range."""
    for message in result.messages:
        check_time(message.provider_timestamp, now)
    for status in result.statuses:
        check_time(status.provider_timestamp, now)
        if status.watermark is not None:
            check_time(status.watermark, now, "watermark")
    for template in result.templates:
        check_time(template.provider_timestamp, now)
    for limit in result.limits:
        check_time(limit.provider_timestamp, now)
    for handover in result.handovers:
        check_time(handover.provider_timestamp, now)
    for throughput in result.throughputs:
        check_time(throughput.provider_timestamp, now)
    for change in result.changes:
        check_time(change.provider_timestamp, now)


class ResultBuilder:
    """Collects one delivery's results item by item, in linear time (no tuple concatenation).

    Each item is parsed on its own: one the provider did not shape as documented becomes an
    :class:`ItemFailure` with its position and reason, and costs nothing to its neighbours.
    """

    __slots__ = (
        "_changes",
        "_failures",
        "_handovers",
        "_limits",
        "_messages",
        "_skipped",
        "_statuses",
        "_templates",
        "_throughputs",
        "now",
    )

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._messages: list[ParsedMessage] = []
        self._statuses: list[ParsedStatus] = []
        self._templates: list[ParsedTemplateStatus] = []
        self._skipped: list[str] = []
        self._failures: list[ItemFailure] = []
        self._limits: list[ParsedMessagingLimit] = []
        self._handovers: list[ParsedHandover] = []
        self._throughputs: list[ParsedThroughputChange] = []
        self._changes: list[ParsedChange] = []

    def add(self, result: ParseResult) -> None:
        self._messages.extend(result.messages)
        self._statuses.extend(result.statuses)
        self._templates.extend(result.templates)
        self._skipped.extend(result.skipped)
        self._failures.extend(result.failures)
        self._limits.extend(result.limits)
        self._handovers.extend(result.handovers)
        self._throughputs.extend(result.throughputs)
        self._changes.extend(result.changes)

    def skip(self, kind: str, count: int = 1) -> None:
        self._skipped.extend([kind] * count)

    def fail(self, position: str, reason: str) -> None:
        self._failures.append(ItemFailure(position, reason[:MAX_REASON_CHARS]))

    def item(self, position: str, parse: Callable[[], ParseResult | None]) -> None:
        """Parse one item; a malformed one (or one with an insane time) becomes a failure."""
        try:
            result = parse()
            if result is not None:
                check_times(result, self.now)
        except MalformedPayload as exc:
            self.fail(position, str(exc))
            return
        if result is not None:
            self.add(result)

    def items(
        self,
        position: str,
        value: Any,
        what: str,
        parse: Callable[[str, Mapping[str, Any]], ParseResult | None],
    ) -> None:
        """Every object of an optional list, each on its own (``parse`` gets its position)."""
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(position, f"{what} is not a list")
            return
        for index, raw in enumerate(value):
            where = f"{position}[{index}]"
            self.item(where, partial(_parse_one, parse, where, raw, what))

    def build(self) -> ParseResult:
        return ParseResult(
            tuple(self._messages),
            tuple(self._statuses),
            tuple(self._templates),
            tuple(self._skipped),
            tuple(self._failures),
            tuple(self._limits),
            tuple(self._handovers),
            tuple(self._throughputs),
            tuple(self._changes),
        )


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


def _parse_one(
    parse: Callable[[str, Mapping[str, Any]], ParseResult | None], position: str, raw: Any, what: str
) -> ParseResult | None:
    return parse(position, mapping(raw, f"{what} item"))
