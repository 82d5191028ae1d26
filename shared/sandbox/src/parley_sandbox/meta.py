"""Meta's Graph API as the sandbox plays it: Login, tokens, Pages, the Send API, comments."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any, Literal

from parley_providers.meta.errors import (
    INVALID_TOKEN,
    OUTSIDE_WINDOW,
    PAGE_SENDING_RESTRICTED,
    PERMISSION_DENIED,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
)
from parley_providers.meta.rules import MESSENGER_TEXT_MAX, RETIRED_TAGS

from parley_sandbox.state import (
    _REVOKED_MESSAGES,
    HUMAN_AGENT_WINDOW_S,
    LONG_LIVED_S,
    MESSAGE_TAGS,
    PAGE_WEBHOOK_FIELDS,
    SHORT_LIVED_S,
    WINDOW_S,
    MentionedObject,
    MetaPage,
    MetaUser,
    SandboxState,
    Token,
)
from parley_sandbox.wire import (
    GraphFailure,
    Incoming,
    Reply,
    _cursor,
    _json_param,
    _param_required,
    _random_token,
    _split_fields,
    _uncursor,
    _unknown_object,
    _utc,
)

_MENTION_FIELDS = re.compile(
    r"^(?P<edge>mentioned_media|mentioned_comment)\.(?P<param>media_id|comment_id)"
    r"\((?P<id>[0-9]+)\)(?:\{(?P<fields>[a-z_,]*)\})?$"
)
# what Graph accepts: IG Media and IG Comment fields (the reference's lists), not only those Parley asks
_MENTIONED_MEDIA_FIELDS = (
    "id",
    "caption",
    "comments_count",
    "like_count",
    "media_product_type",
    "media_type",
    "media_url",
    "permalink",
    "shortcode",
    "thumbnail_url",
    "timestamp",
    "username",
)
_MENTIONED_COMMENT_FIELDS = (
    "id",
    "from",
    "hidden",
    "like_count",
    "media",
    "parent_id",
    "text",
    "timestamp",
    "username",
)


def mention_lookup(state: SandboxState, account_id: str, fields: str) -> dict[str, Any]:
    """``GET /{ig-user-id}?fields=mentioned_media.media_id(ID){...}`` (or ``mentioned_comment.
    comment_id(ID){...}``) as Graph answers it: ``{"mentioned_media": {...}, "id": account_id}``.
    A media or comment that does not mention the account (or is gone) is Graph's unknown object."""
    found = _MENTION_FIELDS.match(fields.strip())
    expected = {"mentioned_media": "media_id", "mentioned_comment": "comment_id"}
    if found is None or expected[found["edge"]] != found["param"]:
        raise GraphFailure(400, 100, None, f"(#100) Tried accessing nonexisting field ({fields[:60]})")
    edge, object_id = found["edge"], found["id"]
    kind = "media" if edge == "mentioned_media" else "comment"
    known = _MENTIONED_MEDIA_FIELDS if kind == "media" else _MENTIONED_COMMENT_FIELDS
    asked = [f for f in (found["fields"] or "id").split(",") if f] or ["id"]
    unknown = [f for f in asked if f not in known]
    if unknown:
        raise GraphFailure(400, 100, None, f"(#100) Tried accessing nonexisting field ({unknown[0]})")
    mentioned = state.mentioned.get(object_id)
    if mentioned is None or mentioned.account_id != account_id or mentioned.kind != kind:
        raise _unknown_object(object_id)
    return {edge: _mentioned_view(mentioned, asked), "id": account_id}


def _mentioned_view(mentioned: MentionedObject, asked: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": mentioned.id,
        "username": mentioned.username,
        "timestamp": mentioned.timestamp,
        "caption": mentioned.text,
        "text": mentioned.text,
        "media_type": mentioned.media_type,
        "permalink": mentioned.permalink,
        "media": {"id": mentioned.media_id} if mentioned.media_id else None,
    }
    # Graph leaves out fields without a value (a media with no caption has no caption field)
    return {name: values[name] for name in asked if values.get(name) is not None}


class MetaApi:
    """The Graph API: Facebook Login, tokens, Pages, the Send API and comments; each handler raises
    GraphFailure or returns a Reply."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # ---- Meta tokens

    def _new_meta_token(
        self,
        kind: Literal["user", "page"],
        user_id: str,
        scopes: list[str],
        lifetime_s: float | None,
        *,
        long_lived: bool = False,
        page_id: str | None = None,
        parent: str | None = None,
        expires_at: float | None = None,
    ) -> Token:
        now = self.state.now()
        token = Token(
            value=_random_token("EAA", 100 if long_lived or kind == "page" else 60),
            provider="meta",
            kind=kind,
            user_id=user_id,
            issued_at=now,
            expires_at=expires_at if lifetime_s is None else now + lifetime_s,
            scopes=list(scopes),
            long_lived=long_lived,
            page_id=page_id,
            parent=parent,
        )
        self.state.tokens[token.value] = token
        return token

    def validate_meta(self, token: Token) -> None:
        state = self.state
        current: Token | None = token
        while current is not None:
            if current.revoked_subcode is not None:
                template = _REVOKED_MESSAGES.get(current.revoked_subcode, _REVOKED_MESSAGES[TOKEN_INVALID])
                raise GraphFailure(
                    400, INVALID_TOKEN, current.revoked_subcode, template.format(app=state.meta_app_id)
                )
            current = state.tokens.get(current.parent) if current.parent else None
        now = state.now()
        if token.expires_at is not None and now >= token.expires_at:
            raise GraphFailure(
                400,
                INVALID_TOKEN,
                TOKEN_EXPIRED,
                f"Error validating access token: Session has expired on {_utc(token.expires_at)}. "
                f"The current time is {_utc(now)}.",
            )
        if token.kind == "page":
            user = state.meta_users.get(token.user_id or "")
            if user is None or token.page_id not in user.page_ids:
                raise GraphFailure(
                    403,
                    PERMISSION_DENIED,
                    None,
                    "(#10) The user who issued this Page token no longer has access to the Page",
                )

    def meta_token(self, call: Incoming) -> Token:
        header = call.request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip() if scheme.lower() in ("bearer", "oauth") else ""
        value = value or str(call.params.get("access_token") or "")
        token = self.state.tokens.get(value) if value else None
        if token is None or token.provider != "meta":
            message = "Invalid OAuth access token - Cannot parse access token"
            if not value:
                message = "An active access token must be used to query information about the current user."
            raise GraphFailure(400, INVALID_TOKEN, None, message)
        self.validate_meta(token)
        return token

    def meta_user_token(self, call: Incoming) -> tuple[Token, MetaUser]:
        token = self.meta_token(call)
        user = self.state.meta_users.get(token.user_id or "")
        if token.kind != "user" or user is None:
            raise GraphFailure(400, 100, None, "(#100) This endpoint requires a user access token")
        return token, user

    def page_context(self, call: Incoming, page_id: str) -> tuple[Token, MetaPage, MetaUser]:
        token = self.meta_token(call)
        if token.kind != "page":
            raise GraphFailure(
                403, 210, None, "(#210) A page access token is required to request this resource."
            )
        if page_id != "me" and token.page_id != page_id:
            raise _unknown_object(page_id)
        page = self.state.pages[token.page_id or ""]
        user = self.state.meta_users[token.user_id or ""]
        return token, page, user

    @staticmethod
    def require_permission(user: MetaUser, permission: str, code: int = 200) -> None:
        if permission not in user.granted:
            raise GraphFailure(
                403, code, None, f"(#{code}) Requires {permission} permission to manage the object"
            )

    # ---- Facebook Login

    def oauth_access_token(self, call: Incoming) -> Reply:
        state, params = self.state, call.params
        if params.get("client_id") != state.meta_app_id:
            raise GraphFailure(400, 101, None, "Error validating application. Invalid application ID.")
        if params.get("client_secret") != state.meta_app_secret:
            raise GraphFailure(400, 101, None, "Error validating client secret.")
        if params.get("grant_type") == "fb_exchange_token":
            call_token = self.state.tokens.get(str(params.get("fb_exchange_token") or ""))
            if call_token is None or call_token.kind != "user" or call_token.provider != "meta":
                raise GraphFailure(
                    400, INVALID_TOKEN, None, "Invalid OAuth access token - Cannot parse access token"
                )
            self.validate_meta(call_token)
            token = self._new_meta_token(
                "user", call_token.user_id or "", call_token.scopes, LONG_LIVED_S, long_lived=True
            )
            return Reply({"access_token": token.value, "token_type": "bearer", "expires_in": LONG_LIVED_S})
        code_value = str(params.get("code") or "")
        if not code_value:
            raise GraphFailure(400, 100, None, "Missing code parameter.")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise GraphFailure(400, 100, None, "Missing redirect_uri parameter.")
        code = state.codes.get(code_value)
        if code is None or code.provider != "meta":
            raise GraphFailure(400, 100, None, "Invalid verification code format.")
        if code.used:
            raise GraphFailure(400, 100, 36009, "This authorization code has been used.")
        if state.now() >= code.expires_at:
            raise GraphFailure(400, 100, 36007, "This authorization code has expired.")
        if code.redirect_uri is not None and code.redirect_uri != redirect_uri:
            raise GraphFailure(
                400,
                100,
                36008,
                "Error validating verification code. Please make sure your redirect_uri is identical "
                "to the one you used in the OAuth dialog request",
            )
        code.used = True
        user = state.meta_users[code.user_id]
        token = self._new_meta_token("user", user.id, user.granted, SHORT_LIVED_S)
        return Reply({"access_token": token.value, "token_type": "bearer", "expires_in": SHORT_LIVED_S})

    def debug_token(self, call: Incoming) -> Reply:
        state = self.state
        header = call.request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        app_token = value.strip() if scheme.lower() in ("bearer", "oauth") else ""
        app_token = app_token or str(call.params.get("access_token") or "")
        if app_token != f"{state.meta_app_id}|{state.meta_app_secret}":
            raise GraphFailure(400, INVALID_TOKEN, None, "Invalid OAuth access token signature.")
        input_token = str(call.params.get("input_token") or "")
        if not input_token:
            raise _param_required("input_token")
        token = state.tokens.get(input_token)
        if token is None or token.provider != "meta":
            return Reply(
                {
                    "data": {
                        "is_valid": False,
                        "error": {
                            "code": INVALID_TOKEN,
                            "message": "Invalid OAuth access token - Cannot parse access token",
                        },
                        "scopes": [],
                    }
                }
            )
        data: dict[str, Any] = {
            "app_id": state.meta_app_id,
            "type": {"user": "USER", "page": "PAGE"}.get(token.kind, "SYSTEM_USER"),
            "application": state.app_name,
            "expires_at": int(token.expires_at) if token.expires_at is not None else 0,
            "issued_at": int(token.issued_at),
            "is_valid": True,
            "scopes": list(token.scopes),
        }
        if token.user_id:
            data["user_id"] = token.user_id
            data["data_access_expires_at"] = int(token.issued_at + 90 * 86400)
        if token.page_id:
            data["profile_id"] = token.page_id
        try:
            self.validate_meta(token)
        except GraphFailure as failure:
            data["is_valid"] = False
            data["error"] = {"code": failure.code, "message": failure.message}
            if failure.subcode is not None:
                data["error"]["subcode"] = failure.subcode
        return Reply({"data": data})

    def me_permissions(self, call: Incoming) -> Reply:
        _, user = self.meta_user_token(call)
        rows = [{"permission": p, "status": "granted"} for p in user.granted]
        rows += [{"permission": p, "status": "declined"} for p in user.declined if p not in user.granted]
        return Reply({"data": rows})

    def me_accounts(self, call: Incoming) -> Reply:
        token, user = self.meta_user_token(call)
        self.require_permission(user, "pages_show_list")
        fields = _split_fields(str(call.params.get("fields") or "access_token,category,name,id,tasks"))
        try:
            limit = max(1, min(100, int(call.params.get("limit") or 25)))
        except ValueError:
            raise GraphFailure(400, 100, None, "(#100) Param limit must be a number") from None
        start = _uncursor(str(call.params["after"])) + 1 if call.params.get("after") else 0
        granted = user.app_page_ids()
        page_ids = granted[start : start + limit]
        rows = []
        for page_id in page_ids:
            page = self.state.pages[page_id]
            full: dict[str, Any] = {
                "id": page.id,
                "name": page.name,
                "category": "Product/service",
                "tasks": list(page.tasks),
                "access_token": self._page_token(token, page.id).value,
            }
            if page.instagram_id and (
                user.granted_instagram_ids is None or page.instagram_id in user.granted_instagram_ids
            ):
                full["instagram_business_account"] = {
                    "id": page.instagram_id,
                    "username": page.instagram_username,
                }
            row: dict[str, Any] = {}
            for name, sub in fields.items():
                if name not in full:
                    continue
                value = full[name]
                row[name] = (
                    {k: v for k, v in value.items() if k in sub or k == "id"}
                    if sub and isinstance(value, dict)
                    else value
                )
            row.setdefault("id", page.id)
            rows.append(row)
        body: dict[str, Any] = {"data": rows}
        if rows:
            last = start + len(rows) - 1
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
            if last + 1 < len(granted):
                paging["next"] = str(call.request.url.include_query_params(after=_cursor(last), limit=limit))
            body["paging"] = paging
        return Reply(body)

    def _page_token(self, user_token: Token, page_id: str) -> Token:
        key = (user_token.value, page_id)
        existing = self.state.tokens.get(self.state.page_tokens.get(key, ""))
        if existing is not None:
            return existing
        token = self._new_meta_token(
            "page",
            user_token.user_id or "",
            user_token.scopes,
            None,
            page_id=page_id,
            parent=user_token.value,
            # a Page token from a long-lived user token never expires; else it dies with its parent
            expires_at=None if user_token.long_lived else user_token.expires_at,
        )
        self.state.page_tokens[key] = token.value
        return token

    # ---- Pages

    def subscribed_apps(self, call: Incoming) -> Reply:
        _, page, user = self.page_context(call, call.path("node"))
        # reading, subscribing and removing all need pages_manage_metadata (Page Subscribed Apps)
        self.require_permission(user, "pages_manage_metadata")
        if call.request.method == "GET":
            apps = []
            if page.subscribed_fields:
                apps.append(
                    {
                        "name": self.state.app_name,
                        "id": self.state.meta_app_id,
                        "subscribed_fields": list(page.subscribed_fields),
                    }
                )
            return Reply({"data": apps})
        if call.request.method == "DELETE":
            # removes this app's subscription (Graph API: Page Subscribed Apps, Deleting)
            if not {"MANAGE", "MODERATE"} & set(page.tasks):
                raise GraphFailure(
                    403, PERMISSION_DENIED, None, "(#10) The user needs the MODERATE task on this Page"
                )
            page.subscribed_fields = []
            return Reply({"success": True})
        raw = _json_param(call.params.get("subscribed_fields"))
        fields = raw if isinstance(raw, list) else [f.strip() for f in str(raw or "").split(",") if f.strip()]
        if not fields:
            raise _param_required("subscribed_fields")
        for index, name in enumerate(fields):
            if name not in PAGE_WEBHOOK_FIELDS:
                raise GraphFailure(
                    400,
                    100,
                    None,
                    f"(#100) Param subscribed_fields[{index}] must be one of "
                    f'{{{", ".join(sorted(PAGE_WEBHOOK_FIELDS))}}} - got "{name}".',
                )
        page.subscribed_fields = [str(f) for f in dict.fromkeys(fields)]
        return Reply({"success": True})

    def messenger_send(self, call: Incoming, page_id: str) -> Reply:
        state = self.state
        _, page, user = self.page_context(call, page_id)
        self.require_permission(user, "pages_messaging", code=230)
        if not {"MESSAGING", "MANAGE"} & set(page.tasks):
            raise GraphFailure(
                403, PERMISSION_DENIED, None, "(#10) The user needs the MESSAGING task on this Page"
            )
        if page.sending_restricted:
            raise GraphFailure(
                400,
                PERMISSION_DENIED,
                PAGE_SENDING_RESTRICTED,
                "(#10) This Page is temporarily restricted from sending messages",
            )
        params = call.params
        recipient = _json_param(params.get("recipient"))
        if not isinstance(recipient, dict) or not any(
            recipient.get(k) for k in ("id", "comment_id", "post_id", "user_ref")
        ):
            raise _param_required("recipient")
        recipient_id = str(recipient.get("id") or "")
        action = params.get("sender_action")
        message = _json_param(params.get("message"))
        if action is not None and message is None:
            if action not in ("typing_on", "typing_off", "mark_seen"):
                raise GraphFailure(
                    400,
                    100,
                    None,
                    "(#100) Param sender_action must be one of {typing_on, typing_off, mark_seen}",
                )
            return Reply({"recipient_id": recipient_id})
        if not isinstance(message, dict):
            raise _param_required("message")
        text, attachment = message.get("text"), message.get("attachment")
        if text is None and attachment is None:
            raise GraphFailure(400, 100, None, "(#100) Must send either message text or attachment")
        if text is not None and attachment is not None:
            raise GraphFailure(
                400, 100, None, "(#100) Only one of message text or attachment can be specified"
            )
        if text is not None and (not isinstance(text, str) or not text):
            raise GraphFailure(
                400, 100, None, "(#100) Param message[text] must be a non-empty UTF-8 encoded string"
            )
        if isinstance(text, str) and len(text) > MESSENGER_TEXT_MAX:
            raise GraphFailure(
                400,
                100,
                None,
                f"(#100) Length of param message[text] must be less than or equal to {MESSENGER_TEXT_MAX}",
            )
        messaging_type = params.get("messaging_type", "RESPONSE")
        if messaging_type not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            raise GraphFailure(
                400, 100, None, "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}"
            )
        tag = params.get("tag")
        if messaging_type == "MESSAGE_TAG" and tag in RETIRED_TAGS:
            # retired on 2026-04-27: Meta answers a plain "invalid parameter" (chatwoot#14674)
            raise GraphFailure(400, 100, None, "(#100) Invalid parameter")
        if messaging_type == "MESSAGE_TAG" and tag not in MESSAGE_TAGS:
            raise GraphFailure(
                400, 100, None, f"(#100) Param tag must be one of {{{', '.join(sorted(MESSAGE_TAGS))}}}"
            )
        comment_id = recipient.get("comment_id")
        if comment_id:
            comment_id = str(comment_id)
            if comment_id in state.private_replies:
                raise GraphFailure(400, 10900, None, "Activity already replied to")
            recipient_id = str(int(hashlib.sha256(comment_id.encode()).hexdigest()[:13], 16))
        elif (
            page.enforce_window and recipient_id and (messaging_type != "MESSAGE_TAG" or tag == "HUMAN_AGENT")
        ):
            window = HUMAN_AGENT_WINDOW_S if tag == "HUMAN_AGENT" else WINDOW_S
            last = state.windows.get((page.id, recipient_id))
            if last is None or state.now() - last > window:
                raise GraphFailure(
                    400,
                    PERMISSION_DENIED,
                    OUTSIDE_WINDOW,
                    "(#10) This message is sent outside of allowed window.",
                )
        if comment_id:
            state.private_replies.add(comment_id)
        message_id = "m_" + secrets.token_urlsafe(48)
        return Reply({"recipient_id": recipient_id, "message_id": message_id}, result_id=message_id)

    def thread_control(self, call: Incoming) -> Reply:
        """``POST /{page-id}/take_thread_control`` and ``/release_thread_control`` (Conversation
        Routing): take makes this app the thread's active responder, release leaves it idle."""
        _, page, user = self.page_context(call, call.path("node"))
        self.require_permission(user, "pages_messaging", code=230)
        recipient = _json_param(call.params.get("recipient"))
        if not isinstance(recipient, dict) or not recipient.get("id"):
            raise _param_required("recipient")
        customer = str(recipient["id"])
        if call.request.url.path.endswith("/take_thread_control"):
            page.thread_owners[customer] = self.state.meta_app_id
        elif page.thread_owners.get(customer) == self.state.meta_app_id:
            del page.thread_owners[customer]
        else:
            # only the thread's owner releases it (Graph error 100 as for any refused parameter)
            raise GraphFailure(400, 100, None, "(#100) This app is not the thread's active responder")
        return Reply({"success": True})

    def ig_user_fields(self, call: Incoming) -> Reply:
        """``GET /{ig-user-id}?fields=mentioned_media...`` with the linked Page's token (Instagram
        API with Facebook Login): a caption's or comment's mention of the account."""
        node = call.path("node")
        _, page, user = self.page_context(call, "me")
        if page.instagram_id != node:
            raise _unknown_object(node)
        self.require_permission(user, "instagram_manage_comments", code=10)
        return Reply(mention_lookup(self.state, node, str(call.params.get("fields") or "")))

    def comments(self, call: Incoming) -> Reply:
        comment_id = call.path("node")
        _, _, user = self.page_context(call, "me")
        self.require_permission(user, "pages_manage_engagement")
        message = call.params.get("message")
        if not isinstance(message, str) or not message.strip():
            raise _param_required("message")
        new_id = f"{comment_id.split('_')[0]}_{self.state.next_id()}"
        return Reply({"id": new_id}, result_id=new_id)

    def replies(self, call: Incoming) -> Reply:
        comment_id = call.path("node")
        _, page, user = self.page_context(call, "me")
        self.require_permission(user, "instagram_manage_comments")
        if not page.instagram_id:
            raise _unknown_object(comment_id)
        message = call.params.get("message")
        if not isinstance(message, str) or not message.strip():
            raise _param_required("message")
        new_id = self.state.next_id()[:17]
        return Reply({"id": new_id}, result_id=new_id)
