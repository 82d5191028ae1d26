"""The X API as the sandbox plays it: OAuth 2.0 with PKCE, account activity, the X Activity API
(subscriptions, webhook deliveries, the CRC re-check), DMs and posts."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from parley_providers.x import activity
from parley_providers.x.errors import CLIENT_FORBIDDEN, RESOURCE_NOT_FOUND
from parley_providers.x.rules import X_DM_MAX, X_POST_MAX
from parley_providers.x.webhook import SIGNATURE_HEADER, x_signature

from parley_sandbox.state import (
    X_ACCESS_S,
    SandboxState,
    Token,
    XAccount,
    XActivitySubscription,
    XCrcCheck,
    XDelivery,
    XRefreshToken,
)
from parley_sandbox.wire import Incoming, Reply, _x_invalid, _x_oauth, _x_problem, _x_unauthorized

_ID = re.compile(r"[0-9]{1,19}", re.ASCII)  # X's pattern for user and webhook ids in these bodies
_PROBLEMS = "https://api.twitter.com/2/problems"
_PUBLIC_EVENTS = activity.PUBLIC_EVENT_TYPES


class XApi:
    """The X API v2: OAuth 2.0 with PKCE, users, account activity, DMs and posts; each handler
    raises XFailure or returns a Reply."""

    state: SandboxState

    # ---- X

    def x_token_endpoint(self, call: Incoming) -> Reply:
        state = self.state
        scheme, _, encoded = call.request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, binascii.Error):
            client_id = client_secret = ""
        if scheme.lower() != "basic" or (client_id, client_secret) != (
            state.x_client_id,
            state.x_client_secret,
        ):
            raise _x_oauth(401, "unauthorized_client", "Missing valid authorization header")
        form = call.body
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = state.codes.get(str(form.get("code") or ""))
            verifier = str(form.get("code_verifier") or "")
            invalid = _x_oauth(400, "invalid_request", "Value passed for the authorization code was invalid.")
            if code is None or code.provider != "x" or code.used or state.now() >= code.expires_at:
                raise invalid
            if code.redirect_uri is not None and form.get("redirect_uri") != code.redirect_uri:
                raise invalid
            if not verifier:
                raise _x_oauth(400, "invalid_request", "Missing required parameter [code_verifier].")
            if code.code_challenge is not None:
                expected = verifier
                if code.code_challenge_method.upper() == "S256":
                    digest = hashlib.sha256(verifier.encode()).digest()
                    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                if not secrets.compare_digest(expected, code.code_challenge):
                    raise invalid
            code.used = True
            account = state.x_users[code.user_id]
            return Reply(self._x_tokens(account.id, account.scopes))
        if grant == "refresh_token":
            refresh = state.x_refresh_tokens.get(str(form.get("refresh_token") or ""))
            if refresh is None or refresh.used:
                raise _x_oauth(400, "invalid_request", "Value passed for the token was invalid.")
            refresh.used = True  # X rotates refresh tokens: each works once
            return Reply(self._x_tokens(refresh.user_id, refresh.scopes))
        raise _x_oauth(400, "unsupported_grant_type", "The grant type is not supported.")

    def _x_tokens(self, user_id: str, scopes: list[str]) -> dict[str, Any]:
        now = self.state.now()
        access = Token(
            value=secrets.token_urlsafe(60),
            provider="x",
            kind="x",
            user_id=user_id,
            issued_at=now,
            expires_at=now + X_ACCESS_S,
            scopes=list(scopes),
        )
        self.state.tokens[access.value] = access
        body: dict[str, Any] = {
            "token_type": "bearer",
            "expires_in": X_ACCESS_S,
            "access_token": access.value,
            "scope": " ".join(scopes),
        }
        if "offline.access" in scopes:
            refresh = XRefreshToken(secrets.token_urlsafe(60), user_id, list(scopes))
            self.state.x_refresh_tokens[refresh.value] = refresh
            body["refresh_token"] = refresh.value
        return body

    def x_account(self, call: Incoming, *scopes: str) -> XAccount:
        scheme, _, value = call.request.headers.get("authorization", "").partition(" ")
        token = self.state.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.provider != "x" or token.revoked:
            raise _x_unauthorized()
        if token.expires_at is not None and self.state.now() >= token.expires_at:
            raise _x_unauthorized()
        account = self.state.x_users.get(token.user_id or "")
        if account is None:
            raise _x_unauthorized()
        for scope in scopes:
            if scope not in token.scopes:
                raise _x_problem(
                    403,
                    f"Missing required OAuth 2.0 scope: {scope}",
                    CLIENT_FORBIDDEN,
                    reason="missing-scope",
                )
        return account

    def x_me(self, call: Incoming) -> Reply:
        account = self.x_account(call, "users.read")
        return Reply({"data": {"id": account.id, "name": account.name, "username": account.username}})

    def x_subscribe(self, call: Incoming) -> Reply:
        account = self.x_account(call, "dm.read")
        webhook_id = call.path("webhook_id")
        subscribers = self.state.x_webhooks.get(webhook_id)
        if subscribers is None:
            raise _x_problem(
                404,
                f"Could not find webhook with id: [{webhook_id}]",
                RESOURCE_NOT_FOUND,
            )
        if account.id not in subscribers:
            subscribers.append(account.id)
        return Reply({"data": {"subscribed": True}})

    # ---- X Activity API subscriptions

    def _x_caller(self, call: Incoming) -> XAccount | None:
        """None for the app's own Bearer token, else the user a user token belongs to."""
        scheme, _, value = call.request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(value.strip(), self.state.x_bearer_token):
            return None
        return self.x_account(call)

    def _x_app_only(self, call: Incoming) -> None:
        if self._x_caller(call) is not None:
            raise _x_problem(
                403,
                "Authenticating with OAuth 2.0 User Context is forbidden for this endpoint. "
                "Supported authentication types are [OAuth 2.0 Application-Only].",
                f"{_PROBLEMS}/unsupported-authentication",
            )

    def x_activity_subscriptions(self, call: Incoming) -> Reply:
        if call.request.method == "POST":
            return self._x_activity_create(call)
        return self._x_activity_list(call)

    def _x_activity_create(self, call: Incoming) -> Reply:
        caller = self._x_caller(call)
        body = call.body
        unknown = sorted(set(body) - {"event_type", "filter", "tag", "webhook_id"})
        if unknown:
            raise _x_invalid(f"The request has unexpected fields: {', '.join(unknown)}", unknown[0])
        event_type = body.get("event_type")
        if not isinstance(event_type, str) or event_type not in activity.EVENT_TYPES:
            raise _x_invalid(
                "The `event_type` field must be one of the X Activity API event types", "event_type"
            )
        event_type = "chat.conversation.join" if event_type == "chat.conversation_join" else event_type
        selector = body.get("filter")
        if (
            not isinstance(selector, dict)
            or not selector
            or set(selector) - {"user_id", "direction", "keyword"}
        ):
            raise _x_invalid(
                "The `filter` field must be an object of user_id, direction or keyword", "filter"
            )
        user_id = selector.get("user_id")
        if event_type != "news.new" and (not isinstance(user_id, str) or not _ID.fullmatch(user_id)):
            raise _x_invalid("The `filter.user_id` field must be a user id (1-19 digits)", "filter.user_id")
        direction = selector.get("direction")
        if direction is not None and direction not in ("inbound", "outbound"):
            raise _x_invalid("The `filter.direction` field must be inbound or outbound", "filter.direction")
        webhook_id = body.get("webhook_id")
        if webhook_id is not None:
            if not isinstance(webhook_id, str) or not _ID.fullmatch(webhook_id):
                raise _x_invalid("The `webhook_id` field must be a webhook id (1-19 digits)", "webhook_id")
            if webhook_id not in self.state.x_webhooks:
                raise _x_problem(
                    400,
                    f"WebhookIdInvalid: no webhook {webhook_id} is registered for this app",
                    f"{_PROBLEMS}/invalid-request",
                )
        tag = body.get("tag")
        if tag is not None and (not isinstance(tag, str) or not 1 <= len(tag) <= 200):
            raise _x_invalid("The `tag` field must be 1 to 200 characters", "tag")
        if caller is None:
            if event_type not in _PUBLIC_EVENTS:
                raise _x_problem(
                    403,
                    f"{event_type} is a private event: subscribing needs the user's OAuth 2.0 User Context",
                    f"{_PROBLEMS}/unsupported-authentication",
                )
        else:
            scope = activity.required_scope(event_type)
            self.x_account(call, scope)  # a missing scope is a client-forbidden 403
            if event_type not in _PUBLIC_EVENTS and user_id != caller.id:
                raise _x_problem(
                    403,
                    "Subscriptions to private events can only filter on the authorizing user",
                    f"{_PROBLEMS}/not-authorized-for-resource",
                )
        wanted = {k: str(v) for k, v in selector.items()}
        for existing in self.state.x_activity.values():
            if (existing.event_type, existing.filter, existing.webhook_id) == (
                event_type,
                wanted,
                webhook_id,
            ):
                raise _x_problem(
                    409,
                    f"DuplicateSubscriptionFailed: subscription {existing.subscription_id} already "
                    "delivers this event type and filter to this webhook",
                )
        created = XActivitySubscription(
            subscription_id=self.state.next_id(),
            event_type=event_type,
            filter=wanted,
            created_at=_iso(self.state.now()),
            webhook_id=webhook_id,
            tag=tag,
        )
        self.state.x_activity[created.subscription_id] = created
        return Reply(
            {
                "data": {"subscription": created.view()},
                "meta": {"total_subscriptions": len(self.state.x_activity)},
            },
            result_id=created.subscription_id,
        )

    def _x_activity_list(self, call: Incoming) -> Reply:
        if self._x_caller(call) is not None:
            # X's OpenAPI: the app's Bearer token, or a user token holding both scopes
            self.x_account(call, "tweet.read", "like.read")
        every = list(self.state.x_activity.values())
        size = call.query.get("max_results", "100")
        if not (size.isascii() and size.isdigit()) or not 1 <= int(size) <= 1000:
            raise _x_invalid("The `max_results` query parameter must be between 1 and 1000", "max_results")
        start = 0
        cursor = call.query.get("pagination_token")
        if cursor is not None:
            try:
                start = int(base64.b32hexdecode(cursor.encode()).decode())
                if start < 0:
                    raise ValueError(cursor)
            except (ValueError, binascii.Error):
                raise _x_invalid(
                    "The `pagination_token` query parameter is not valid", "pagination_token"
                ) from None
        page = every[start : start + int(size)]
        meta: dict[str, Any] = {"total_subscriptions": len(every)}
        if start + int(size) < len(every):
            meta["next_token"] = base64.b32hexencode(str(start + int(size)).rjust(10, "0").encode()).decode()
        return Reply({"data": [s.view() for s in page], "meta": meta})

    def x_activity_subscription(self, call: Incoming) -> Reply:
        self._x_app_only(call)
        subscription_id = call.path("subscription_id")
        if self.state.x_activity.pop(subscription_id, None) is None:
            raise _x_problem(
                404,
                f"Could not find subscription with id: [{subscription_id}]",
                f"{_PROBLEMS}/resource-not-found",
            )
        return Reply({"data": {"deleted": True}, "meta": {"total_subscriptions": len(self.state.x_activity)}})

    def x_send_dm(self, call: Incoming) -> Reply:
        account = self.x_account(call, "dm.write")
        participant = call.path("participant_id")
        text = call.body.get("text")
        if not participant.isdigit() and participant not in self.state.x_users:
            raise _x_invalid("The `participant_id` query parameter value is not valid", "participant_id")
        if participant == account.id:
            raise _x_invalid("You cannot send a Direct Message to yourself", "participant_id")
        if not isinstance(text, str) or not text.strip():
            if not call.body.get("attachments"):
                raise _x_invalid("The `text` field is required when no attachments are present", "text")
        elif len(text) > X_DM_MAX:
            raise _x_invalid(f"The `text` field must be at most {X_DM_MAX} characters", "text")
        other = self.state.x_users.get(participant)
        if other is not None and not other.accepts_dms:
            raise _x_problem(403, "You are not permitted to send Direct Messages to this user.")
        event_id = self.state.next_id()
        first, second = sorted((account.id, participant))
        return Reply(
            {"data": {"dm_conversation_id": f"{first}-{second}", "dm_event_id": event_id}},
            status=201,
            result_id=event_id,
        )

    def x_post(self, call: Incoming) -> Reply:
        account = self.x_account(call, "tweet.write")
        text = call.body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _x_invalid("The `text` field is required", "text")
        if len(text) > X_POST_MAX:
            raise _x_invalid(f"The `text` field must be at most {X_POST_MAX} characters", "text")
        reply = call.body.get("reply")
        if reply is not None:
            target = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
            if not isinstance(target, str) or not target.isdigit():
                raise _x_invalid(
                    "The `in_reply_to_tweet_id` field must be a post id", "reply.in_reply_to_tweet_id"
                )
        if any(p["user_id"] == account.id and p["text"] == text for p in self.state.x_posts):
            raise _x_problem(403, "You are not allowed to create a Tweet with duplicate content.")
        post_id = self.state.next_id()
        self.state.x_posts.append({"id": post_id, "user_id": account.id, "text": text})
        return Reply(
            {"data": {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}},
            status=201,
            result_id=post_id,
        )


# ---- webhook deliveries and the CRC re-check (driven from /_sandbox/, async: they call out)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _user_data(state: SandboxState, user_id: str) -> dict[str, Any]:
    account = state.x_users.get(user_id)
    username = account.username if account else f"user{user_id[-6:]}"
    return {"id": user_id, "name": account.name if account else username, "username": username}


@dataclass(frozen=True)
class DirectMessage:
    """One DM as both X APIs carry it (``direct_message_events`` item), and its two users."""

    event: dict[str, Any]
    sender_id: str
    recipient_id: str


def direct_message(state: SandboxState, sender_id: str, recipient_id: str, text: str) -> DirectMessage:
    """A new DM event with a fresh id, as X would record it."""
    event = {
        "type": "message_create",
        "id": state.next_id(),
        "created_timestamp": str(int(state.now() * 1000)),
        "message_create": {
            "target": {"recipient_id": recipient_id},
            "sender_id": sender_id,
            "message_data": {
                "text": text,
                "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
            },
        },
    }
    return DirectMessage(event, sender_id, recipient_id)


def _live_url(state: SandboxState, webhook_id: str | None) -> str | None:
    """Where a webhook receives deliveries: none without a URL, or after a failed CRC check (X
    marks the webhook invalid and delivers nothing to it until it passes again)."""
    if webhook_id is None or state.x_webhook_valid.get(webhook_id) is False:
        return None
    return state.x_webhook_urls.get(webhook_id)


async def _post_signed(
    state: SandboxState, http: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> int | None:
    raw = json.dumps(body).encode()
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: x_signature(raw, state.x_consumer_secret),
    }
    try:
        response = await http.post(url, content=raw, headers=headers)
    except httpx.HTTPError:
        return None
    return response.status_code


async def deliver_activity(
    state: SandboxState,
    http: httpx.AsyncClient,
    event_type: str,
    user_id: str | None,
    payload: dict[str, Any],
    includes: dict[str, Any] | None = None,
) -> list[XDelivery]:
    """Deliver one XAA event to the webhook of every subscription whose type and user match it."""
    made: list[XDelivery] = []
    for subscription in list(state.x_activity.values()):
        if subscription.event_type != event_type or subscription.filter.get("user_id") != user_id:
            continue
        url = _live_url(state, subscription.webhook_id)
        if url is None or subscription.webhook_id is None:
            continue  # stream-only, a webhook with no URL, or one its last CRC check failed
        body = activity.envelope(
            event_type,
            user_id,
            payload,
            str(secrets.randbits(63) - 2**62),  # event uuids can be negative
            tag=subscription.tag,
            includes=includes,
        )
        status = await _post_signed(state, http, url, body)
        made.append(
            XDelivery(
                "xaa",
                subscription.webhook_id,
                url,
                user_id or "",
                event_type,
                status,
                state.now(),
                subscription.subscription_id,
            )
        )
    state.x_deliveries.extend(made)
    return made


async def deliver_dm(state: SandboxState, http: httpx.AsyncClient, dm: DirectMessage) -> list[XDelivery]:
    """Deliver one DM the way X does while both APIs run: to every Account Activity webhook its
    sender or recipient is subscribed on (one delivery per subscribed user, ``for_user_id``), and to
    the X Activity subscriptions for ``dm.received`` (recipient) and ``dm.sent`` (sender)."""
    made: list[XDelivery] = []
    users_v1 = {
        uid: {
            "id": uid,
            "screen_name": _user_data(state, uid)["username"],
            "name": _user_data(state, uid)["name"],
        }
        for uid in (dm.sender_id, dm.recipient_id)
    }
    for webhook_id, subscribed in state.x_webhooks.items():
        url = _live_url(state, webhook_id)
        if url is None:
            continue
        for user_id in (dm.recipient_id, dm.sender_id):
            if user_id not in subscribed:
                continue
            body = {"for_user_id": user_id, "direct_message_events": [dm.event], "users": users_v1}
            status = await _post_signed(state, http, url, body)
            made.append(
                XDelivery("aaa", webhook_id, url, user_id, "direct_message_events", status, state.now())
            )
    state.x_deliveries.extend(made)
    users_v2 = {uid: {"data": _user_data(state, uid)} for uid in (dm.sender_id, dm.recipient_id)}
    payload = {"direct_message_events": [dm.event], "users": users_v2}
    made += await deliver_activity(state, http, activity.DM_RECEIVED, dm.recipient_id, payload)
    made += await deliver_activity(state, http, activity.DM_SENT, dm.sender_id, payload)
    return made


async def check_crc(state: SandboxState, http: httpx.AsyncClient, webhook_id: str) -> XCrcCheck:
    """Send X's CRC GET to a webhook, as the hourly re-check does, and judge the answer.

    Valid: a 200 within ``x_crc_timeout_s`` whose JSON ``response_token`` is
    ``sha256=`` + base64(HMAC-SHA256(consumer secret, crc_token)). The webhook's validity follows
    the last check (X marks a webhook invalid on a wrong answer and stops delivering to it).
    """
    url = state.x_webhook_urls[webhook_id]
    token = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode()
    expected = x_signature(token.encode(), state.x_consumer_secret)
    started = time.monotonic()
    status: int | None = None
    try:
        response = await http.get(url, params={"crc_token": token}, timeout=state.x_crc_timeout_s)
        status = response.status_code
        answer = response.json() if status == 200 else None
        given = answer.get("response_token") if isinstance(answer, dict) else None
        valid = status == 200 and isinstance(given, str) and secrets.compare_digest(given, expected)
        reason = "ok" if valid else ("wrong response_token" if status == 200 else f"HTTP {status}")
    except httpx.TimeoutException:
        valid, reason = False, f"no answer within {state.x_crc_timeout_s:g} s"
    except httpx.HTTPError as exc:
        valid, reason = False, f"transport error: {type(exc).__name__}"
    except ValueError:
        valid, reason = False, "the answer is not JSON"
    elapsed = time.monotonic() - started
    check = XCrcCheck(webhook_id, url, state.now(), status, valid, round(elapsed, 6), reason)
    state.x_crc_checks.append(check)
    state.x_webhook_valid[webhook_id] = valid
    return check
