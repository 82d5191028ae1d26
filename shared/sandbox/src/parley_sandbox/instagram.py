"""Business Login for Instagram and ``graph.instagram.com`` as the sandbox plays them.

Served under two prefixes of the sandbox's address, one per host Meta uses:
``/instagram-api`` stands for ``https://api.instagram.com`` (the code exchange) and ``/instagram``
for ``https://graph.instagram.com`` (the long-lived token, its refresh, ``/me``). Tokens are Meta
tokens of kind ``instagram``: ``/_sandbox/meta/tokens/{token}/revoke`` revokes them as it revokes
Graph's, and they expire as Instagram's do (one hour short-lived, 60 days long-lived).
"""

from __future__ import annotations

import secrets

from parley_providers.meta.errors import INVALID_TOKEN, OUTSIDE_WINDOW, PERMISSION_DENIED
from parley_providers.meta.instagram import MIN_REFRESH_AGE
from parley_providers.meta.rules import INSTAGRAM_TEXT_MAX_BYTES, RETIRED_TAGS
from starlette.responses import JSONResponse, Response

from parley_sandbox.meta import MetaApi, mention_lookup
from parley_sandbox.state import HUMAN_AGENT_WINDOW_S, LONG_LIVED_S, WINDOW_S, InstagramAccount, Token
from parley_sandbox.wire import (
    GraphFailure,
    Incoming,
    Reply,
    _json_param,
    _param_required,
    _random_token,
    _unknown_object,
)

INSTAGRAM_WEBHOOK_FIELDS = frozenset(
    {
        "comments",
        "live_comments",
        "mentions",
        "message_reactions",
        "messages",
        "messaging_postbacks",
        "messaging_referral",
        "messaging_seen",
    }
)
"""An Instagram professional account's webhook fields (Instagram Platform, webhooks)."""

INSTAGRAM_SHORT_LIVED_S = 3600
"""Business Login's short-lived token lives one hour."""


class OAuthRefusal(GraphFailure):
    """api.instagram.com's own error form: ``{"error_type", "code", "error_message"}``."""

    def __init__(self, message: str) -> None:
        super().__init__(400, 400, None, message)

    def response(self) -> Response:
        body = {"error_type": "OAuthException", "code": 400, "error_message": self.message}
        return JSONResponse(body, status_code=400)


class InstagramApi(MetaApi):
    """Business Login for Instagram: the code exchange, long-lived tokens, their refresh, ``/me``."""

    def _new_instagram_token(self, account: InstagramAccount, lifetime_s: int, *, long_lived: bool) -> Token:
        now = self.state.now()
        token = Token(
            value=_random_token("IGAA", 120 if long_lived else 80),
            provider="meta",
            kind="instagram",
            user_id=account.id,
            issued_at=now,
            expires_at=now + lifetime_s,
            scopes=list(account.granted),
            long_lived=long_lived,
        )
        self.state.tokens[token.value] = token
        return token

    def _instagram_token(self, call: Incoming, *, long_lived: bool | None = None) -> Token:
        header = call.request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip() if scheme.lower() == "bearer" else ""
        value = value or str(call.params.get("access_token") or "")
        token = self.state.tokens.get(value) if value else None
        if token is None or token.kind != "instagram":
            raise GraphFailure(
                400, INVALID_TOKEN, None, "Invalid OAuth access token - Cannot parse access token"
            )
        self.validate_meta(token)  # revoked or expired: 190 with its subcode, as Graph answers
        if long_lived is not None and token.long_lived != long_lived:
            kind = "long-lived" if long_lived else "short-lived"
            raise GraphFailure(400, 100, None, f"(#100) A {kind} Instagram User access token is required")
        return token

    def instagram_code_exchange(self, call: Incoming) -> Reply:
        state, params = self.state, call.params
        if params.get("client_id") != state.instagram_app_id:
            raise OAuthRefusal("Invalid platform app")
        if params.get("client_secret") != state.instagram_app_secret:
            raise OAuthRefusal("Error validating client secret")
        if params.get("grant_type") != "authorization_code":
            raise OAuthRefusal("Invalid grant_type")
        code = state.codes.get(str(params.get("code") or ""))
        if code is None or code.provider != "instagram" or code.used or state.now() >= code.expires_at:
            raise OAuthRefusal("Invalid authorization code")
        if code.redirect_uri is not None and code.redirect_uri != params.get("redirect_uri"):
            raise OAuthRefusal(
                "Error validating verification code. Please make sure your redirect_uri is identical"
            )
        code.used = True
        account = state.instagram_accounts[code.user_id]
        token = self._new_instagram_token(account, INSTAGRAM_SHORT_LIVED_S, long_lived=False)
        return Reply(
            {
                "data": [
                    {
                        "access_token": token.value,
                        "user_id": account.id,
                        "permissions": ",".join(account.granted),
                    }
                ]
            }
        )

    def instagram_exchange(self, call: Incoming) -> Reply:
        params = call.params
        if params.get("grant_type") != "ig_exchange_token":
            raise GraphFailure(400, 100, None, "(#100) grant_type must be ig_exchange_token")
        if params.get("client_secret") != self.state.instagram_app_secret:
            raise GraphFailure(400, 101, None, "Error validating client secret.")
        short = self._instagram_token(call, long_lived=False)
        account = self.state.instagram_accounts[short.user_id or ""]
        token = self._new_instagram_token(account, LONG_LIVED_S, long_lived=True)
        return Reply({"access_token": token.value, "token_type": "bearer", "expires_in": LONG_LIVED_S})

    def instagram_refresh(self, call: Incoming) -> Reply:
        if call.params.get("grant_type") != "ig_refresh_token":
            raise GraphFailure(400, 100, None, "(#100) grant_type must be ig_refresh_token")
        old = self._instagram_token(call, long_lived=True)
        if self.state.now() - old.issued_at < MIN_REFRESH_AGE.total_seconds():
            # Meta documents the rule, not the refusal's number: the sandbox answers an invalid
            # parameter (100), which never reads as a dead token
            raise GraphFailure(
                400, 100, None, "(#100) The access token must be at least 24 hours old to refresh"
            )
        account = self.state.instagram_accounts[old.user_id or ""]
        token = self._new_instagram_token(account, LONG_LIVED_S, long_lived=True)
        return Reply({"access_token": token.value, "token_type": "bearer", "expires_in": LONG_LIVED_S})

    def instagram_subscribe(self, call: Incoming) -> Reply:
        """``/me/subscribed_apps``: POST subscribes the account to fields, GET reads the app's
        subscription (the Page edge's answer: this app's entry while it has fields)."""
        token = self._instagram_token(call)
        account = self.state.instagram_accounts[token.user_id or ""]
        if call.request.method == "GET":
            apps = []
            if account.subscribed_fields:
                apps.append(
                    {
                        "name": self.state.app_name,
                        "id": self.state.instagram_app_id,
                        "subscribed_fields": list(account.subscribed_fields),
                    }
                )
            return Reply({"data": apps})
        raw = str(call.params.get("subscribed_fields") or "")
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        if not fields:
            raise GraphFailure(400, 100, None, "(#100) The parameter subscribed_fields is required.")
        unknown = [f for f in fields if f not in INSTAGRAM_WEBHOOK_FIELDS]
        if unknown:
            raise GraphFailure(
                400,
                100,
                None,
                f"(#100) Param subscribed_fields must be one of "
                f'{{{", ".join(sorted(INSTAGRAM_WEBHOOK_FIELDS))}}} - got "{unknown[0]}".',
            )
        account.subscribed_fields = list(dict.fromkeys(fields))
        return Reply({"success": True})

    def _instagram_sender(self, call: Incoming, permission: str) -> InstagramAccount:
        token = self._instagram_token(call)
        if permission not in token.scopes:
            raise GraphFailure(
                403, PERMISSION_DENIED, None, "(#10) Application does not have permission for this action"
            )
        return self.state.instagram_accounts[token.user_id or ""]

    def instagram_send(self, call: Incoming) -> Reply:
        """``POST graph.instagram.com/{version}/me/messages``: a DM or a private reply."""
        state = self.state
        account = self._instagram_sender(call, "instagram_business_manage_messages")
        params = call.params
        recipient = _json_param(params.get("recipient"))
        if not isinstance(recipient, dict) or not (recipient.get("id") or recipient.get("comment_id")):
            raise _param_required("recipient")
        message = _json_param(params.get("message"))
        text = message.get("text") if isinstance(message, dict) else None
        if not isinstance(text, str) or not text:
            raise GraphFailure(
                400, 100, None, "(#100) Param message[text] must be a non-empty UTF-8 encoded string"
            )
        if len(text.encode()) > INSTAGRAM_TEXT_MAX_BYTES:
            raise GraphFailure(
                400, 100, None, f"(#100) The message text must be at most {INSTAGRAM_TEXT_MAX_BYTES} bytes"
            )
        tag = params.get("tag")
        if params.get("messaging_type") == "MESSAGE_TAG" and (tag in RETIRED_TAGS or tag != "HUMAN_AGENT"):
            raise GraphFailure(400, 100, None, "(#100) Invalid parameter")
        comment_id = str(recipient.get("comment_id") or "")
        recipient_id = str(recipient.get("id") or "")
        if comment_id:
            if comment_id in state.private_replies:
                raise GraphFailure(400, 10900, None, "Activity already replied to")
            state.private_replies.add(comment_id)
        else:
            window = HUMAN_AGENT_WINDOW_S if tag == "HUMAN_AGENT" else WINDOW_S
            last = state.windows.get((account.id, recipient_id))
            if last is None or state.now() - last > window:
                raise GraphFailure(
                    400,
                    PERMISSION_DENIED,
                    OUTSIDE_WINDOW,
                    "(#10) This message is sent outside of allowed window.",
                )
        message_id = "aWdfZAG1f" + secrets.token_urlsafe(40)
        return Reply(
            {"recipient_id": recipient_id or comment_id, "message_id": message_id}, result_id=message_id
        )

    def instagram_comment_reply(self, call: Incoming) -> Reply:
        """``POST graph.instagram.com/{version}/{comment-id}/replies``: a public reply."""
        self._instagram_sender(call, "instagram_business_manage_comments")
        text = call.params.get("message")
        if not isinstance(text, str) or not text:
            raise _param_required("message")
        comment_id = self.state.next_id()
        return Reply({"id": comment_id}, result_id=comment_id)

    def instagram_user_fields(self, call: Incoming) -> Reply:
        """``GET graph.instagram.com/{version}/{ig-user-id}?fields=mentioned_media...`` with the
        account's own token (Instagram API with Instagram Login)."""
        node = call.path("node")
        account = self._instagram_sender(call, "instagram_business_manage_comments")
        if account.id != node:
            raise _unknown_object(node)
        return Reply(mention_lookup(self.state, node, str(call.params.get("fields") or "")))

    def instagram_me(self, call: Incoming) -> Reply:
        token = self._instagram_token(call)
        account = self.state.instagram_accounts[token.user_id or ""]
        fields = [f.strip() for f in str(call.params.get("fields") or "id").split(",") if f.strip()]
        values: dict[str, str] = {
            "id": f"app-scoped-{account.id}",
            "user_id": account.id,
            "username": account.username,
        }
        unknown = [f for f in fields if f not in values]
        if unknown:
            raise GraphFailure(400, 100, None, f"(#100) Tried accessing nonexisting field ({unknown[0]})")
        return Reply({name: values[name] for name in fields})
