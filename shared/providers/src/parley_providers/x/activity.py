"""The X Activity API's names (pure): event types, their scopes, and the delivery envelope.

One place for the strings the parser, the subscriptions logic, the billing helper and the sandbox
share. Sources: docs.x.com/x-api/activity/introduction (event types, private events and their
scopes), docs.x.com/x-api/activity/event-payloads (the envelope), and the OpenAPI description of
``POST /2/activity/subscriptions`` (the event type enum, and which scope a user-context token needs
for which event type).
"""

from __future__ import annotations

DM_RECEIVED = "dm.received"
DM_SENT = "dm.sent"
DM_READ = "dm.read"
DM_INDICATE_TYPING = "dm.indicate_typing"
CHAT_RECEIVED = "chat.received"
CHAT_SENT = "chat.sent"
POST_CREATE = "post.create"
POST_DELETE = "post.delete"
POST_MENTION = "post.mention.create"
POST_REPLY = "post.reply.create"
POST_QUOTE = "post.quote.create"
POST_REPOST = "post.repost.create"
OAUTH_REVOKE = "oauth.revoke"

DM_EVENTS = frozenset({DM_RECEIVED, DM_SENT})
CHAT_EVENTS = frozenset({CHAT_RECEIVED, CHAT_SENT})
POST_EVENTS = frozenset({POST_CREATE, POST_MENTION, POST_REPLY, POST_QUOTE})
"""Post events Parley makes messages of (deletions and reposts are skipped)."""

PUBLIC_EVENT_TYPES = frozenset(
    {
        "profile.update.bio",
        "profile.update.profile_picture",
        "profile.update.banner_picture",
        "profile.update.screenname",
        "profile.update.geo",
        "profile.update.url",
        "profile.update.verified_badge",
        "profile.update.affiliate_badge",
        "profile.update.handle",
        "news.new",
        "follow.follow",
        "follow.unfollow",
        "spaces.start",
        "spaces.end",
        "broadcast.start",
        "broadcast.end",
        POST_CREATE,
        POST_DELETE,
    }
)
"""Events an app-only Bearer token may subscribe to (docs.x.com/x-api/activity/introduction:
public events); every other event type needs the filtered user's own token."""

EVENT_TYPES = PUBLIC_EVENT_TYPES | frozenset(
    {
        "broadcast.chat",
        CHAT_RECEIVED,
        CHAT_SENT,
        "chat.conversation.join",
        "chat.conversation_join",
        "chat.conversation.member_added",
        "chat.conversation.member_removed",
        "chat.conversation.admin_added",
        "chat.conversation.admin_removed",
        "chat.update.group_name",
        "chat.update.restrictions",
        DM_SENT,
        DM_RECEIVED,
        DM_INDICATE_TYPING,
        DM_READ,
        POST_CREATE,
        POST_DELETE,
        POST_MENTION,
        POST_REPLY,
        POST_QUOTE,
        POST_REPOST,
        "like.create",
        "mute.mute",
        "mute.unmute",
        "block.block",
        "block.unblock",
    }
)
"""Every event type ``POST /2/activity/subscriptions`` accepts (its OpenAPI enum)."""


def required_scope(event_type: str) -> str:
    """The OAuth 2.0 scope a user-context token needs to subscribe to ``event_type``.

    X: ``dm.read`` for chat.* and dm.* events, ``like.read`` for like.*, ``mute.read`` for mute.*,
    ``block.read`` for block.*, and ``tweet.read`` for every other event type.
    """
    family = event_type.split(".", 1)[0]
    if family in ("chat", "dm"):
        return "dm.read"
    if family in ("like", "mute", "block"):
        return f"{family}.read"
    return "tweet.read"


def envelope(
    event_type: str,
    user_id: str | None,
    payload: dict[str, object],
    event_uuid: str,
    *,
    tag: str | None = None,
    includes: dict[str, object] | None = None,
) -> dict[str, object]:
    """An XAA delivery body: ``{"data": {event_uuid, filter, event_type, tag, payload, includes}}``."""
    data: dict[str, object] = {
        "event_uuid": event_uuid,
        "filter": {"user_id": user_id} if user_id is not None else {},
        "event_type": event_type,
    }
    if tag is not None:
        data["tag"] = tag
    data["payload"] = payload
    if includes is not None:
        data["includes"] = includes
    return {"data": data}
