"""X webhooks (pure): Account Activity API (AAA) deliveries and X Activity API (XAA) deliveries.

Both reach ``/webhooks/x`` with the same signature. :func:`parse_x` tells them apart by shape:
AAA's object names its subscribed user in ``for_user_id``; XAA wraps one event in ``data``.

**Account Activity API** (ends 2027-01-01). A delivery is one object for one subscribed user,
``for_user_id`` (the business's X user id and the channel's account id), with one array per event
kind. Two kinds become messages:

- ``direct_message_events``: private messages, one thread per customer, ``dm:<user id>``. X sends
  the business's own messages too (sent from any app); ``sender_id == for_user_id`` marks them,
  and they are outbound in the recipient's thread.
- ``tweet_create_events``: public tweets that mention or reply to the business, and the business's
  own tweets. AAA's v1.1 tweets carry no conversation id, so they are grouped in **one public
  thread per customer**, ``tweets:<user id>``: an agent sees everything a customer said in public
  together, and the business's replies to that customer join the same thread. The business's own
  tweets that answer nobody are not customer conversations and are skipped, as are retweets.

Every other array (favourites, follows, deletions, typing and read indicators, ``user_event`` ...)
is skipped and named ``x.<key>`` (``x.other`` for a key X does not document), never an error.

**X Activity API** (docs.x.com/x-api/activity/event-payloads). A delivery is
``{"data": {event_uuid, filter, event_type, tag, payload, includes}}`` for one subscription. The
business is the filter's ``user_id``. ``event_uuid`` names the delivery, not the message (it can
be negative), so it is never a message id:

- ``dm.received`` / ``dm.sent``: ``payload`` has AAA's ``direct_message_events`` shape, and user
  profiles under ``payload.users[id].data`` with ``username``. Parsed by the same code as AAA's,
  so the same DM gives the same item whichever API delivered it (same id, thread, direction,
  author and text: the normalizer's deterministic event id makes one message of the two).
- ``post.mention.create``, ``post.reply.create``, ``post.quote.create`` (customers) and
  ``post.create`` (the business's own posts): ``payload`` is a v2 post. Threads follow X's own
  ``conversation_id`` (the id of the thread's root post): ``thread:<conversation_id>``. A mention
  and every reply under it, the business's replies included, are one conversation; a new post by
  the same customer is a new root and so a new conversation. A quote is a new post that points at
  another (X gives it its own ``conversation_id``), so it starts its own conversation too. The
  post may be repeated under ``includes.tweets``: only ``payload`` is read, so it is one message.
- ``chat.received`` / ``chat.sent`` (XChat): end-to-end encrypted. Parley holds no keys and does
  not decrypt: the message becomes an item flagged ``encrypted`` with no text, in the customer's
  ``dm:`` thread (a group conversation gets ``xchat:<conversation id>``), and its ciphertext is
  counted as skipped under ``x.chat.ciphertext``.

Every other documented event type is skipped and named ``x.activity.<event type>``
(``x.activity.other`` for one X does not document).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from parley_events import Attachment, Author, Choice, Content, Direction, MessageKind, Provider

from parley_providers.inbound import (
    MalformedPayload,
    ParsedMessage,
    ParseResult,
    ResultBuilder,
    from_iso,
    from_ms,
    mapping,
    mappings,
    optional_str,
    require_str,
    skip_kind,
)
from parley_providers.x import activity

# Top-level keys that describe the delivery rather than carry events.
METADATA_KEYS = frozenset({"for_user_id", "users", "apps", "user_has_blocked"})
TWEET_TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"


def parse_x(payload: Any, now: datetime | None = None) -> ParseResult:
    """One X delivery, from the Account Activity API or the X Activity API (told apart by shape).

    Each event is parsed on its own: a bad one is a failure with its position, the others are
    normalized. ``now`` (default: the current time) bounds provider times.
    """
    body = mapping(payload, "X delivery")
    moment = now or datetime.now(UTC)
    if "for_user_id" not in body and "data" in body:
        return parse_activity(body, moment)
    return parse_account_activity(body, moment)


def parse_account_activity(body: Mapping[str, Any], now: datetime) -> ParseResult:
    """An Account Activity API delivery: ``direct_message_events`` and ``tweet_create_events``
    for ``for_user_id``."""
    account_id = require_str(body, "for_user_id")
    raw_users = body.get("users")
    users: Mapping[str, Any] = raw_users if isinstance(raw_users, Mapping) else {}
    out = ResultBuilder(now)
    out.items(
        "direct_message_events",
        body.get("direct_message_events"),
        "direct_message_events",
        lambda _at, event: _direct_message(account_id, users, event),
    )
    out.items(
        "tweet_create_events",
        body.get("tweet_create_events"),
        "tweet_create_events",
        lambda _at, tweet: _tweet(account_id, tweet),
    )
    for key, value in body.items():
        if key in METADATA_KEYS or key in ("direct_message_events", "tweet_create_events"):
            continue
        out.skip(skip_kind("x", key), len(value) if isinstance(value, list) else 1)
    return out.build()


# --- direct messages ------------------------------------------------------------------------


def _direct_message(account_id: str, users: Mapping[str, Any], event: Mapping[str, Any]) -> ParseResult:
    kind = optional_str(event, "type") or "unknown"
    if kind != "message_create":
        return ParseResult(skipped=(skip_kind("x.dm", kind),))
    create = mapping(event.get("message_create"), "message_create")
    sender_id = require_str(create, "sender_id")
    recipient_id = require_str(mapping(create.get("target"), "message_create target"), "recipient_id")
    outbound = sender_id == account_id
    customer_id = recipient_id if outbound else sender_id
    data = mapping(create.get("message_data"), "message_data")
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.X,
                account_id=account_id,
                conversation_key=f"dm:{customer_id}",
                direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
                author=Author(id=sender_id, name=_screen_name(users.get(sender_id))),
                content=Content(
                    text=optional_str(data, "text"),
                    attachments=_dm_attachments(data),
                    choice=_quick_reply(data),
                ),
                provider_message_id=require_str(event, "id"),
                provider_timestamp=from_ms(event.get("created_timestamp")),
            ),
        )
    )


def _screen_name(user: Any) -> str | None:
    """The handle in a ``users`` map entry: AAA's ``screen_name``, or XAA's ``data.username``."""
    if not isinstance(user, Mapping):
        return None
    profile = user.get("data")
    if isinstance(profile, Mapping):
        return optional_str(profile, "username")
    return optional_str(user, "screen_name") or optional_str(user, "username")


def _dm_attachments(data: Mapping[str, Any]) -> tuple[Attachment, ...]:
    if data.get("attachment") is None:
        return ()
    attachment = mapping(data["attachment"], "attachment")
    media = attachment.get("media")
    if not isinstance(media, Mapping):
        return (Attachment(type=optional_str(attachment, "type") or "media"),)
    return (_media(media),)


def _media(media: Mapping[str, Any]) -> Attachment:
    return Attachment(
        type=optional_str(media, "type") or "media",
        url=optional_str(media, "media_url_https"),
        media_id=optional_str(media, "id_str"),
    )


def _quick_reply(data: Mapping[str, Any]) -> Choice | None:
    """The option a customer tapped in a quick-reply prompt: its ``metadata`` is the payload."""
    response = data.get("quick_reply_response")
    if not isinstance(response, Mapping):
        return None
    return Choice(
        kind="quick_reply", payload=optional_str(response, "metadata"), title=optional_str(data, "text")
    )


# --- tweets ---------------------------------------------------------------------------------


def _tweet(account_id: str, tweet: Mapping[str, Any]) -> ParseResult:
    if "retweeted_status" in tweet:
        return ParseResult(skipped=("x.tweet.retweet",))
    user = mapping(tweet.get("user"), "tweet user")
    author_id = require_str(user, "id_str")
    in_reply_to_user = optional_str(tweet, "in_reply_to_user_id_str")
    outbound = author_id == account_id
    if outbound:
        if in_reply_to_user is None or in_reply_to_user == account_id:
            # a post of its own, or the next tweet of its own thread: nobody to answer
            return ParseResult(skipped=("x.tweet.own_post",))
        customer_id = in_reply_to_user
    else:
        customer_id = author_id
    raw_extended = tweet.get("extended_tweet")
    extended: Mapping[str, Any] = raw_extended if isinstance(raw_extended, Mapping) else {}
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.X,
                account_id=account_id,
                conversation_key=f"tweets:{customer_id}",
                direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
                author=Author(id=author_id, name=optional_str(user, "screen_name")),
                content=Content(
                    # tweets longer than 140 characters arrive truncated, the whole text in extended_tweet
                    text=optional_str(extended, "full_text")
                    or optional_str(tweet, "full_text")
                    or optional_str(tweet, "text"),
                    attachments=_tweet_media(extended) or _tweet_media(tweet),
                    reply_to=optional_str(tweet, "in_reply_to_status_id_str"),
                ),
                provider_message_id=require_str(tweet, "id_str"),
                provider_timestamp=_tweet_time(tweet.get("created_at")),
                kind=MessageKind.MENTION,
            ),
        )
    )


def _tweet_media(tweet: Mapping[str, Any]) -> tuple[Attachment, ...]:
    entities = tweet.get("extended_entities")
    if not isinstance(entities, Mapping):
        return ()
    return tuple(_media(media) for media in mappings(entities.get("media"), "extended_entities media"))


def _tweet_time(value: Any) -> datetime:
    """v1.1 ``created_at``, e.g. ``Wed Oct 10 20:19:24 +0000 2018``.

    ``%a`` and ``%b`` read English names under the C locale, which Python keeps unless a program
    calls ``locale.setlocale``; Parley never does.
    """
    if not isinstance(value, str):
        raise MalformedPayload("tweet created_at is missing")
    try:
        return datetime.strptime(value, TWEET_TIME_FORMAT).astimezone(UTC)
    except ValueError as exc:
        raise MalformedPayload(f"tweet created_at {value!r} is not a tweet time") from exc
    except OverflowError as exc:  # year 1 east of UTC, year 9999 west of it
        raise MalformedPayload(f"tweet created_at {value!r} is out of range") from exc


# --- X Activity API -------------------------------------------------------------------------


def parse_activity(body: Mapping[str, Any], now: datetime) -> ParseResult:
    """An X Activity API delivery: one event in ``data``, for the filter's user.

    Event types that carry no message are skipped by name before anything else is read (an
    ``oauth.revoke`` has an empty filter); the others need the filter's ``user_id``.
    """
    event = mapping(body.get("data"), "X Activity API data")
    event_type = require_str(event, "event_type")
    out = ResultBuilder(now)
    if event_type in activity.DM_EVENTS:
        payload = mapping(event.get("payload"), f"{event_type} payload")
        account_id = _filter_user(event)
        raw_users = payload.get("users")
        users: Mapping[str, Any] = raw_users if isinstance(raw_users, Mapping) else {}
        out.items(
            "data.payload.direct_message_events",
            payload.get("direct_message_events"),
            "direct_message_events",
            lambda _at, dm: _direct_message(account_id, users, dm),
        )
    elif event_type in activity.POST_EVENTS:
        account_id = _filter_user(event)
        out.item(
            "data.payload",
            lambda: _post(account_id, mapping(event.get("payload"), f"{event_type} payload"), event),
        )
    elif event_type in activity.CHAT_EVENTS:
        account_id = _filter_user(event)
        out.item(
            "data.payload",
            lambda: _chat(account_id, mapping(event.get("payload"), f"{event_type} payload"), event, now),
        )
    else:
        out.skip(skip_kind("x.activity", event_type))
    if body.get("errors") is not None:
        out.skip("x.activity.errors")
    return out.build()


def _filter_user(event: Mapping[str, Any]) -> str:
    """The subscribed account: the filter's ``user_id`` (XAA has no ``for_user_id``)."""
    return require_str(mapping(event.get("filter"), "X Activity API filter"), "user_id")


def thread_key(conversation_id: str) -> str:
    """The Parley conversation of an X thread: one per X ``conversation_id`` (its root post's id)."""
    return f"thread:{conversation_id}"


# Field names as the XAA samples and X's data dictionary spell them, then as the OpenAPI document
# spells them (it renames tweet to post): a delivery in either spelling is read the same.
_REFERENCED = ("referenced_tweets", "referenced_posts")
_NOTE = ("note_tweet", "note_post")


def _first_present(obj: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if obj.get(key) is not None:
            return obj[key]
    return None


def _post(account_id: str, post: Mapping[str, Any], event: Mapping[str, Any]) -> ParseResult:
    """A v2 post from a post.* event, in the thread of its X ``conversation_id``."""
    post_id = require_str(post, "id")
    author_id = require_str(post, "author_id")
    references = {
        optional_str(ref, "type"): optional_str(ref, "id")
        for ref in mappings(_first_present(post, _REFERENCED), "referenced_tweets")
    }
    if "retweeted" in references:
        return ParseResult(skipped=("x.tweet.retweet",))
    replied_to = optional_str(post, "in_reply_to_tweet_id") or references.get("replied_to")
    in_reply_to_user = optional_str(post, "in_reply_to_user_id")
    outbound = author_id == account_id
    if outbound and (in_reply_to_user is None or in_reply_to_user == account_id):
        # a post of its own (a quote of its own included), or the next post of its own thread
        return ParseResult(skipped=("x.tweet.own_post",))
    conversation = optional_str(post, "conversation_id")
    if conversation is None:
        if replied_to is not None:
            raise MalformedPayload("conversation_id is missing on a reply")
        conversation = post_id  # a post that answers nothing is the root of its own thread
    includes = event.get("includes")
    found: Mapping[str, Any] = includes if isinstance(includes, Mapping) else {}
    note = _first_present(post, _NOTE)
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.X,
                account_id=account_id,
                conversation_key=thread_key(conversation),
                direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
                author=Author(id=author_id, name=_username(found.get("users"), author_id)),
                content=Content(
                    # a post over 280 characters carries its whole text in note_tweet
                    text=(optional_str(note, "text") if isinstance(note, Mapping) else None)
                    or optional_str(post, "text"),
                    attachments=_post_media(post, found.get("media")),
                    reply_to=replied_to,
                ),
                provider_message_id=post_id,
                provider_timestamp=from_iso(post.get("created_at")),
                kind=MessageKind.MENTION,
            ),
        )
    )


def _profile(user: Any) -> Mapping[str, Any] | None:
    """A user object of ``includes.users``: bare (post events) or under ``data`` (others)."""
    if not isinstance(user, Mapping):
        return None
    inner = user.get("data")
    return inner if isinstance(inner, Mapping) else user


def _username(users: Any, user_id: str) -> str | None:
    if not isinstance(users, list):
        return None
    for user in users:
        profile = _profile(user)
        if profile is not None and optional_str(profile, "id") == user_id:
            return optional_str(profile, "username")
    return None


def _post_media(post: Mapping[str, Any], media: Any) -> tuple[Attachment, ...]:
    """The post's ``attachments.media_keys``, described by ``includes.media`` when it is there."""
    attached = post.get("attachments")
    keys = attached.get("media_keys") if isinstance(attached, Mapping) else None
    if not isinstance(keys, list):
        return ()
    described: dict[str, Mapping[str, Any]] = {}
    for item in media if isinstance(media, list) else ():
        key = optional_str(item, "media_key") if isinstance(item, Mapping) else None
        if key is not None:
            described[key] = item
    out: list[Attachment] = []
    for key in keys:
        if not isinstance(key, str) or not key:
            continue
        item = described.get(key) or {}
        out.append(
            Attachment(
                type=optional_str(item, "type") or "media",
                url=optional_str(item, "url") or optional_str(item, "preview_image_url"),
                media_id=key,
            )
        )
    return tuple(out)


def _chat(account_id: str, chat: Mapping[str, Any], event: Mapping[str, Any], now: datetime) -> ParseResult:
    """An XChat message: encrypted, so only that it arrived, from whom and in which conversation.

    Its own id is the payload's ``id`` when X sends one (the signed message id is inside the
    ciphertext); otherwise the delivery's ``event_uuid``, which X documents as the key to
    deduplicate chat deliveries by. A payload without ``created_at_msec`` is dated when parsed.
    """
    sender_id = require_str(chat, "sender_id")
    conversation = require_str(chat, "conversation_id")
    outbound = sender_id == account_id
    peer = _chat_peer(conversation, account_id)
    key = f"dm:{peer}" if peer is not None else f"xchat:{conversation}"
    sent_at = chat.get("created_at_msec")
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.X,
                account_id=account_id,
                conversation_key=key,
                direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
                author=Author(id=sender_id),
                content=Content(encrypted=True),
                provider_message_id=optional_str(chat, "id") or require_str(event, "event_uuid"),
                provider_timestamp=from_ms(sent_at) if sent_at is not None else now,
            ),
        ),
        skipped=("x.chat.ciphertext",),
    )


def _chat_peer(conversation_id: str, account_id: str) -> str | None:
    """The other user of a one-to-one XChat conversation, or None for a group.

    A one-to-one conversation id is the two user ids joined by ``-`` (``:`` in some deliveries);
    a group's starts with ``g`` (docs.x.com/xchat/groups).
    """
    for separator in ("-", ":"):
        first, found, second = conversation_id.partition(separator)
        if found and first.isascii() and first.isdigit() and second.isascii() and second.isdigit():
            if first == account_id:
                return second
            if second == account_id:
                return first
            return None
    return None
