"""Meta Graph API webhooks (pure): Facebook Pages, Instagram, and the WhatsApp dispatch.

One delivery is ``{object, entry: [...]}``; each entry carries ``messaging`` (private messages,
postbacks, reactions, receipts), ``standby`` (the same, while another app owns the thread) or
``changes`` (Page feed comments, Instagram comments and mentions, WhatsApp). Unknown kinds are
skipped and named (from a fixed set of names), never an error. Every item is parsed on its own:
one Parley cannot read is a failure with its position, and costs nothing to the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from parley_events import (
    Attachment,
    Author,
    Choice,
    Content,
    DeliveryStatus,
    Direction,
    MessageKind,
    Provider,
    Reaction,
    Referral,
    StoryRef,
    ThreadControlAction,
)

from parley_providers.inbound import (
    ChangeAction,
    ContentToFetch,
    MalformedPayload,
    ParsedChange,
    ParsedHandover,
    ParsedMessage,
    ParsedStatus,
    ParseResult,
    ResultBuilder,
    epoch_number,
    from_iso,
    from_ms,
    from_seconds,
    is_digits,
    mapping,
    mappings,
    optional_str,
    require_str,
    skip_kind,
)
from parley_providers.whatsapp.inbound import parse_whatsapp_entry

MESSAGING_PROVIDERS = {"page": Provider.MESSENGER, "instagram": Provider.INSTAGRAM}


def parse_meta(payload: Any, now: datetime | None = None) -> ParseResult:
    """Split a Meta delivery (possibly a batch of up to 1000 updates) into Parley's events.

    Each entry, messaging item and change is parsed on its own: a bad one is a failure with its
    position, its neighbours are normalized. Only a delivery that is not Meta's shape at all
    raises :class:`MalformedPayload`. ``now`` (default: the current time) bounds provider times.
    """
    entries = payload.get("entry") if isinstance(payload, Mapping) else None
    if not isinstance(payload, Mapping) or not isinstance(entries, list):
        raise MalformedPayload("not a Meta webhook delivery (no entry list)")
    obj = payload.get("object")
    out = ResultBuilder(now or datetime.now(UTC))
    for index, raw_entry in enumerate(entries):
        position = f"entry[{index}]"
        if obj == "whatsapp_business_account":
            out.item(position, partial(parse_whatsapp_entry, out, position, raw_entry))
        elif isinstance(obj, str) and obj in MESSAGING_PROVIDERS:
            provider = MESSAGING_PROVIDERS[obj]
            out.item(position, partial(_parse_messaging_entry, out, position, provider, raw_entry))
        else:
            out.skip(skip_kind("meta", obj))
    return out.build()


def _parse_messaging_entry(out: ResultBuilder, position: str, provider: Provider, raw: Any) -> None:
    entry = mapping(raw, "entry")
    account_id = require_str(entry, "id")
    out.items(
        f"{position}.messaging",
        entry.get("messaging"),
        "messaging",
        lambda _at, event: _delivered(_messaging_event(provider, account_id, event), standby=False),
    )
    # Conversation Routing: while another app is the thread's active responder, Meta delivers the
    # thread's items to Parley's app on ``standby``; they join the history, marked, and tell
    # that Parley does not answer the thread now
    out.items(
        f"{position}.standby",
        entry.get("standby"),
        "standby",
        lambda _at, event: _delivered(_messaging_event(provider, account_id, event), standby=True),
    )
    out.items(
        f"{position}.changes",
        entry.get("changes"),
        "changes",
        lambda _at, change: _change(provider, account_id, entry, change),
    )


def _delivered(result: ParseResult, *, standby: bool) -> ParseResult:
    """Say which list the messages came on: under Conversation Routing, ``messaging`` reaches the
    thread's active responder only, ``standby`` the other apps."""
    return replace(result, messages=tuple(replace(m, standby=standby) for m in result.messages))


# Meta's messaging_handovers notifications, and what each means for the app it reaches (Parley's):
# pass_thread_control reaches the app the thread is passed to, take_thread_control the app it is
# taken from, request_thread_control the owner another app asks (no change until it passes).
# (the messaging_handovers webhook reference; docs/ingest.md links it)
_HANDOVERS: dict[str, tuple[ThreadControlAction, bool | None]] = {
    "pass_thread_control": (ThreadControlAction.PASS, True),
    "take_thread_control": (ThreadControlAction.TAKE, False),
    "request_thread_control": (ThreadControlAction.REQUEST, None),
}


def _handover(
    provider: Provider, account_id: str, sender_id: str, timestamp: datetime, kind: str, body: Any
) -> ParseResult:
    action, parley_active = _HANDOVERS[kind]
    # Meta's reference example shows the string "null" for an idle thread's previous owner
    details = mapping(body, kind)
    previous = optional_str(details, "previous_owner_app_id")
    return ParseResult(
        handovers=(
            ParsedHandover(
                provider=provider,
                account_id=account_id,
                conversation_key=f"dm:{sender_id}",
                action=action,
                parley_active=parley_active,
                provider_timestamp=timestamp,
                new_owner_app_id=optional_str(details, "new_owner_app_id"),
                previous_owner_app_id=None if previous == "null" else previous,
                requested_owner_app_id=optional_str(details, "requested_owner_app_id"),
                metadata=optional_str(details, "metadata"),
            ),
        )
    )


def _prefix(provider: Provider) -> str:
    return "messenger" if provider is Provider.MESSENGER else "instagram"


def _messaging_event(provider: Provider, account_id: str, event: Mapping[str, Any]) -> ParseResult:
    sender = mapping(event.get("sender"), "sender")
    recipient = mapping(event.get("recipient"), "recipient")
    sender_id = require_str(sender, "id")
    receipt_body = event.get("delivery") or event.get("read")
    if event.get("timestamp") is None and isinstance(receipt_body, Mapping) and "watermark" in receipt_body:
        # receipts may carry only their watermark
        timestamp = from_ms(receipt_body["watermark"])
    else:
        timestamp = from_ms(event.get("timestamp"))
    if "message" in event:
        return _message(
            provider, account_id, sender_id, recipient, timestamp, mapping(event["message"], "message")
        )
    customer_key = f"dm:{sender_id}"
    if "postback" in event:
        postback = mapping(event["postback"], "postback")
        mid = optional_str(postback, "mid") or f"postback:{sender_id}:{int(timestamp.timestamp() * 1000)}"
        return ParseResult(
            messages=(
                ParsedMessage(
                    provider=provider,
                    account_id=account_id,
                    conversation_key=customer_key,
                    direction=Direction.INBOUND,
                    author=Author(id=sender_id),
                    content=Content(
                        text=optional_str(postback, "title"),
                        choice=Choice(
                            kind="postback",
                            payload=optional_str(postback, "payload"),
                            title=optional_str(postback, "title"),
                        ),
                        referral=_referral(postback.get("referral")),
                    ),
                    provider_message_id=mid,
                    provider_timestamp=timestamp,
                    kind=MessageKind.POSTBACK,
                ),
            )
        )
    if "reaction" in event:
        reaction = mapping(event["reaction"], "reaction")
        target = optional_str(reaction, "mid")
        action = optional_str(reaction, "action") or "react"
        emoji = optional_str(reaction, "emoji")
        stamp = int(timestamp.timestamp() * 1000)
        return ParseResult(
            messages=(
                ParsedMessage(
                    provider=provider,
                    account_id=account_id,
                    conversation_key=customer_key,
                    direction=Direction.INBOUND,
                    author=Author(id=sender_id),
                    content=Content(
                        reaction=Reaction(
                            emoji=emoji or optional_str(reaction, "reaction"),
                            action=action,
                            target_message_id=target,
                        )
                    ),
                    provider_message_id=f"reaction:{target}:{sender_id}:{action}:{stamp}",
                    provider_timestamp=timestamp,
                    kind=MessageKind.REACTION,
                ),
            )
        )
    if "delivery" in event or "read" in event:
        status = DeliveryStatus.DELIVERED if "delivery" in event else DeliveryStatus.READ
        receipt = mapping(event.get("delivery") or event.get("read"), status.value)
        # Messenger lists mids; Instagram read receipts name the one message read
        mids = receipt.get("mids") or ([receipt["mid"]] if isinstance(receipt.get("mid"), str) else ())
        if not isinstance(mids, list | tuple) or not all(isinstance(m, str) for m in mids):
            raise MalformedPayload("delivery mids is not a list of ids")
        watermark = receipt.get("watermark")
        return ParseResult(
            statuses=(
                ParsedStatus(
                    provider=provider,
                    account_id=account_id,
                    conversation_key=customer_key,
                    status=status,
                    provider_message_ids=tuple(mids),
                    provider_timestamp=timestamp,
                    watermark=from_ms(watermark) if watermark is not None else None,
                ),
            )
        )
    if "referral" in event:
        # messaging_referral(s): the customer came back to an existing thread through an ad or an
        # m.me / ig.me link; Meta says this restarts the 24-hour window, so it is the customer's
        # turn in the conversation, with no text (m.me Links; messaging_referrals reference)
        referral = _referral(mapping(event["referral"], "referral"))
        stamp = int(timestamp.timestamp() * 1000)
        return ParseResult(
            messages=(
                ParsedMessage(
                    provider=provider,
                    account_id=account_id,
                    conversation_key=customer_key,
                    direction=Direction.INBOUND,
                    author=Author(id=sender_id),
                    content=Content(referral=referral),
                    provider_message_id=f"referral:{sender_id}:{stamp}",
                    provider_timestamp=timestamp,
                ),
            )
        )
    for kind in _HANDOVERS:
        if kind in event:
            return _handover(provider, account_id, sender_id, timestamp, kind, event[kind])
    for kind in (
        "optin",
        "account_linking",
        "app_roles",
        "policy_enforcement",
        "message_edit",
    ):
        if kind in event:
            return ParseResult(skipped=(f"{_prefix(provider)}.{kind}",))  # all in SKIP_KINDS
    return ParseResult(skipped=(f"{_prefix(provider)}.unknown",))


# a shared post's or reel's media id, by attachment type (Messenger and Instagram webhooks)
_MEDIA_ID_KEYS = ("id", "ig_post_media_id", "reel_video_id")


def _attachments(message: Mapping[str, Any]) -> tuple[tuple[Attachment, ...], StoryRef | None]:
    attachments: list[Attachment] = []
    story: StoryRef | None = None
    items = mappings(message.get("attachments"), "attachments")
    kinds = {item.get("type") for item in items}
    for item in items:
        kind = optional_str(item, "type") or "file"
        raw_payload = item.get("payload")
        payload: Mapping[str, Any] = raw_payload if isinstance(raw_payload, Mapping) else {}
        # fallback attachments (shared links) carry their url on the attachment itself
        url = optional_str(payload, "url") or optional_str(item, "url")
        sticker_id = optional_str(payload, "sticker_id")
        if kind == "image" and sticker_id is not None:
            # the old sticker form: an image with a sticker_id. Until 2026-08-30 Meta sends it next
            # to the new sticker attachment (one sticker, two attachments); after, only the new one
            if "sticker" in kinds:
                continue
            kind = "sticker"
        if kind == "share" and "ig_post" in kinds:
            continue  # Instagram sent both for a shared post until the legacy share went (2026-04-27)
        media_id = next((v for k in _MEDIA_ID_KEYS if (v := optional_str(payload, k)) is not None), None)
        if kind == "story_mention":
            media_id = media_id or _asset_id(url)
            story = StoryRef(kind="mention", story_id=media_id, url=url)
        attachments.append(
            Attachment(
                type=kind,
                url=url,
                media_id=media_id,
                title=optional_str(payload, "title"),
                sticker_id=sticker_id,
            )
        )
    return tuple(attachments), story


def _asset_id(url: str | None) -> str | None:
    """The media id in a Meta messaging CDN URL (``asset_id=...``), as in Meta's own examples where
    it equals the shared post's ``ig_post_media_id``; a story mention's payload has only the URL."""
    if not url or len(url) > 4096:
        return None
    values = parse_qs(urlsplit(url).query).get("asset_id", [])
    return values[0] if len(values) == 1 and is_digits(values[0]) and len(values[0]) <= 32 else None


def _referral(value: Any) -> Referral | None:
    """An ad's or a link's referral (``source``, ``type``, ``ref``, ``ad_id``, the ad's title)."""
    if not isinstance(value, Mapping):
        return None
    context = value.get("ads_context_data")
    context = context if isinstance(context, Mapping) else {}
    return Referral(
        source=optional_str(value, "source"),
        type=optional_str(value, "type"),
        ref=optional_str(value, "ref"),
        ad_id=optional_str(value, "ad_id"),
        ad_title=optional_str(context, "ad_title"),
    )


def _message(
    provider: Provider,
    account_id: str,
    sender_id: str,
    recipient: Mapping[str, Any],
    timestamp: datetime,
    message: Mapping[str, Any],
) -> ParseResult:
    echo = bool(message.get("is_echo"))
    # In an echo the business is the sender and the customer the recipient.
    customer_id = require_str(recipient, "id") if echo else sender_id
    attachments, story = _attachments(message)
    reply_to: str | None = None
    if isinstance(message.get("reply_to"), Mapping):
        reply = message["reply_to"]
        reply_to = optional_str(reply, "mid")
        if isinstance(reply.get("story"), Mapping):
            story = StoryRef(
                kind="reply",
                story_id=optional_str(reply["story"], "id"),
                url=optional_str(reply["story"], "url"),
            )
    choice = None
    if isinstance(message.get("quick_reply"), Mapping):
        choice = Choice(
            kind="quick_reply",
            payload=optional_str(message["quick_reply"], "payload"),
            title=optional_str(message, "text"),
        )
    text = message.get("text")
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=provider,
                account_id=account_id,
                conversation_key=f"dm:{customer_id}",
                direction=Direction.OUTBOUND if echo else Direction.INBOUND,
                author=Author(id=sender_id),
                content=Content(
                    text=text if isinstance(text, str) else None,
                    attachments=attachments,
                    story=story,
                    choice=choice,
                    reply_to=reply_to,
                    deleted=bool(message.get("is_deleted")),
                    referral=_referral(message.get("referral")),
                    unsupported=message.get("is_unsupported") is True,
                ),
                provider_message_id=require_str(message, "mid"),
                provider_timestamp=timestamp,
            ),
        )
    )


def _change_time(value: Mapping[str, Any], entry: Mapping[str, Any]) -> datetime:
    created = value.get("created_time", entry.get("time"))
    if isinstance(created, str) and not is_digits(created):
        return from_iso(created)
    if isinstance(created, str):
        created = epoch_number(created)
    if isinstance(created, int | float) and not isinstance(created, bool):
        # Graph sends seconds here, but some senders use milliseconds: tell them apart by size.
        return from_ms(created) if created > 100_000_000_000 else from_seconds(created)
    raise MalformedPayload("change has no time")


def _change(
    provider: Provider, account_id: str, entry: Mapping[str, Any], change: Mapping[str, Any]
) -> ParseResult:
    field = change.get("field")
    value = mapping(change.get("value"), "change value")
    if provider is Provider.MESSENGER and field == "feed":
        return _page_feed(account_id, entry, value)
    if provider is Provider.INSTAGRAM and field == "comments":
        return _instagram_comment(account_id, entry, value)
    # live_comments are skipped on purpose (instagram.changes.live_comments): they can be answered
    # only while the broadcast lasts, which nothing in the delivery says, so a conversation made of
    # them would offer replies Meta refuses
    if provider is Provider.INSTAGRAM and field == "mentions":
        return _instagram_mention(account_id, entry, value)
    return ParseResult(skipped=(skip_kind(f"{_prefix(provider)}.changes", field),))


def _page_feed(page_id: str, entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParseResult:
    item = value.get("item")
    verb = value.get("verb")
    if item in ("comment", "post") and verb in FEED_CHANGES:
        return _feed_change(page_id, entry, value, item, FEED_CHANGES[verb])
    if item != "comment":
        return ParseResult(skipped=(skip_kind("messenger.feed", item),))
    if verb not in ("add", None):
        # hide and unhide are the Page's own moderation, not the customer's words: counted
        return ParseResult(skipped=(skip_kind("messenger.feed.comment", verb),))
    author = mapping(value.get("from"), "comment from")
    author_id = require_str(author, "id")
    post_id = require_str(value, "post_id")
    parent_id = optional_str(value, "parent_id")
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.MESSENGER,
                account_id=page_id,
                conversation_key=f"post:{post_id}",
                direction=Direction.OUTBOUND if author_id == page_id else Direction.INBOUND,
                author=Author(id=author_id, name=optional_str(author, "name")),
                content=Content(
                    text=optional_str(value, "message"),
                    reply_to=parent_id if parent_id and parent_id != post_id else None,
                    attachments=(Attachment(type="photo", url=optional_str(value, "photo")),)
                    if value.get("photo")
                    else (),
                ),
                provider_message_id=require_str(value, "comment_id"),
                provider_timestamp=_change_time(value, entry),
                kind=MessageKind.COMMENT,
            ),
        )
    )


FEED_CHANGES = {"edited": ChangeAction.EDITED, "remove": ChangeAction.DELETED}
"""Page feed verbs that change a comment or post someone wrote before (Webhooks reference, Page
``feed`` field: ``verb`` is one of add, block, edit(ed), hide, mute, remove, unblock, unhide)."""


def _feed_change(
    page_id: str, entry: Mapping[str, Any], value: Mapping[str, Any], item: str, action: ChangeAction
) -> ParseResult:
    """A comment or post edited or removed: an event on the message it names (a post is the
    thread of its comments; Parley keeps no message for the post itself, so its edits and
    removals reach routing as changes of a message it never saw, counted there)."""
    post_id = require_str(value, "post_id")
    message_id = require_str(value, "comment_id") if item == "comment" else post_id
    author = value.get("from")
    who = None
    if isinstance(author, Mapping) and optional_str(author, "id"):
        who = Author(id=require_str(author, "id"), name=optional_str(author, "name"))
    # the change's own time: the entry's (``created_time`` in an edit is the comment's creation)
    when = _change_time({"created_time": entry["time"]} if "time" in entry else value, entry)
    return ParseResult(
        changes=(
            ParsedChange(
                provider=Provider.MESSENGER,
                account_id=page_id,
                conversation_key=f"post:{post_id}",
                provider_message_id=message_id,
                action=action,
                provider_timestamp=when,
                text=optional_str(value, "message") if action is ChangeAction.EDITED else None,
                author=who,
                kind=MessageKind.COMMENT,
            ),
        )
    )


def _instagram_comment(account_id: str, entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParseResult:
    author = mapping(value.get("from"), "comment from")
    author_id = require_str(author, "id")
    media = mapping(value.get("media"), "comment media")
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.INSTAGRAM,
                account_id=account_id,
                conversation_key=f"media:{require_str(media, 'id')}",
                direction=Direction.OUTBOUND if author_id == account_id else Direction.INBOUND,
                author=Author(id=author_id, name=optional_str(author, "username")),
                content=Content(text=optional_str(value, "text"), reply_to=optional_str(value, "parent_id")),
                provider_message_id=require_str(value, "id"),
                provider_timestamp=_change_time(value, entry),
                kind=MessageKind.COMMENT,
            ),
        )
    )


def _instagram_mention(account_id: str, entry: Mapping[str, Any], value: Mapping[str, Any]) -> ParseResult:
    """A mention carries only ids: the normalizer asks the Graph API for the caption or the
    comment and its author (``fetch``: mentioned_media or mentioned_comment) before publishing."""
    media_id = require_str(value, "media_id")
    comment_id = optional_str(value, "comment_id")
    fetch = (
        ContentToFetch("mentioned_comment", comment_id, media_id)
        if comment_id
        else ContentToFetch("mentioned_media", media_id, media_id)
    )
    return ParseResult(
        messages=(
            ParsedMessage(
                provider=Provider.INSTAGRAM,
                account_id=account_id,
                conversation_key=f"media:{media_id}",
                direction=Direction.INBOUND,
                author=Author(id="unknown"),
                content=Content(),
                provider_message_id=f"mention:{comment_id or media_id}",
                provider_timestamp=_change_time(value, entry),
                kind=MessageKind.MENTION,
                fetch=fetch,
            ),
        )
    )
