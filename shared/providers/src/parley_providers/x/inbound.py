"""X Account Activity API webhooks (pure).

A delivery is one object for one subscribed user, ``for_user_id`` (the business's X user id and
the channel's account id), with one array per event kind. Two kinds become messages:

- ``direct_message_events``: private messages, one thread per customer, ``dm:<user id>``. X sends
  the business's own messages too (sent from any app); ``sender_id == for_user_id`` marks them,
  and they are outbound in the recipient's thread.
- ``tweet_create_events``: public tweets that mention or reply to the business, and the business's
  own tweets. They are grouped in **one public thread per customer**, ``tweets:<user id>``, not
  one per tweet or per reply chain: an agent sees everything a customer said in public together,
  the business's replies to that customer join the same thread, and a customer who keeps
  mentioning the business in fresh tweets (no reply chain) does not open a new conversation each
  time. The business's own tweets that answer nobody are not customer conversations and are
  skipped, as are retweets.

Every other array (favourites, follows, deletions, typing and read indicators, ``user_event`` ...)
is skipped and named ``x.<key>`` (``x.other`` for a key X does not document), never an error.
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
    from_ms,
    mapping,
    mappings,
    optional_str,
    require_str,
    skip_kind,
)

# Top-level keys that describe the delivery rather than carry events.
METADATA_KEYS = frozenset({"for_user_id", "users", "apps", "user_has_blocked"})
TWEET_TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"


def parse_x(payload: Any, now: datetime | None = None) -> ParseResult:
    """One X delivery: ``direct_message_events`` and ``tweet_create_events`` for ``for_user_id``.

    Each event is parsed on its own: a bad one is a failure with its position, the others are
    normalized. ``now`` (default: the current time) bounds provider times.
    """
    body = mapping(payload, "X delivery")
    account_id = require_str(body, "for_user_id")
    raw_users = body.get("users")
    users: Mapping[str, Any] = raw_users if isinstance(raw_users, Mapping) else {}
    out = ResultBuilder(now or datetime.now(UTC))
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
    return optional_str(user, "screen_name") if isinstance(user, Mapping) else None


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
