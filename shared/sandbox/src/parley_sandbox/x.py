"""The X API as the sandbox plays it: OAuth 2.0 with PKCE, account activity, DMs and posts."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from typing import Any

from parley_providers.x.errors import CLIENT_FORBIDDEN, RESOURCE_NOT_FOUND
from parley_providers.x.rules import X_DM_MAX, X_POST_MAX

from parley_sandbox.state import X_ACCESS_S, SandboxState, Token, XAccount, XRefreshToken
from parley_sandbox.wire import Incoming, Reply, _x_invalid, _x_oauth, _x_problem, _x_unauthorized


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
