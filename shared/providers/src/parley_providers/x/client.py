"""The X API v2 client with OAuth 2.0 user tokens (authorization code with PKCE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.http import expiry, json_object, require_str, segment, send
from parley_providers.oauth import UserToken
from parley_providers.x.errors import CLIENT_CREDENTIAL_ERRORS, x_error

__all__ = ["ActivitySubscription", "XClient", "XSettings", "XUser", "x_client"]

MAX_SUBSCRIPTION_PAGES = 100
"""Pages of ``GET /2/activity/subscriptions`` read at most (1,000 each): far beyond X's largest
tier (150,000 subscriptions), so a cursor that never ends cannot loop forever."""


X_API_BASE_URL = "https://api.x.com"
"""X's API host: the default of every service's ``PARLEY_X_API_BASE_URL``."""


class XSettings(Protocol):
    """The settings a service gives X's client (optional: X is served only when they are set)."""

    x_api_base_url: str
    x_client_id: str | None
    x_client_secret: SecretStr | None


@dataclass(frozen=True)
class XUser:
    id: str
    username: str
    name: str


@dataclass(frozen=True)
class ActivitySubscription:
    """One X Activity API subscription: an event type, filtered on a user, delivered to a webhook."""

    subscription_id: str
    event_type: str
    user_id: str | None
    webhook_id: str | None = None
    tag: str | None = None
    direction: str | None = None

    @classmethod
    def from_api(cls, status: int, data: Any) -> ActivitySubscription:
        """Read one subscription object; an answer without its id is a provider fault (retryable)."""
        raw_filter = data.get("filter") if isinstance(data, dict) else None
        selector: dict[str, Any] = raw_filter if isinstance(raw_filter, dict) else {}
        return cls(
            subscription_id=require_str("x", status, data, "subscription_id"),
            event_type=require_str("x", status, data, "event_type"),
            user_id=_text(selector.get("user_id")),
            webhook_id=_text(data.get("webhook_id")),
            tag=_text(data.get("tag")),
            direction=_text(selector.get("direction")),
        )


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


class XClient:
    """The X API v2 with OAuth 2.0 user tokens (authorization code with PKCE)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, client_id: str, client_secret: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret

    def __repr__(self) -> str:
        return f"XClient(base_url={self._base!r}, client_id={self._client_id!r})"

    async def _call(
        self,
        method: str,
        path: str,
        token: str,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await send(
            self._http,
            "x",
            method,
            f"{self._base}/{path}",
            json=json_body,
            params=params,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        if not response.is_success:
            raise x_error(response)
        return json_object("x", response)

    async def _token(self, form: dict[str, str]) -> UserToken:
        response = await send(
            self._http,
            "x",
            "POST",
            f"{self._base}/2/oauth2/token",
            data={**form, "client_id": self._client_id},
            auth=(self._client_id, self._client_secret),
        )
        if not response.is_success:
            raise x_error(response)
        data = json_object("x", response)
        refresh = data.get("refresh_token")
        return UserToken(
            access_token=require_str("x", response.status_code, data, "access_token"),
            expires_at=expiry(data.get("expires_in")),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            scopes=tuple(str(data.get("scope") or "").split()),
        )

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> UserToken:
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> UserToken:
        """A new access token (and the next refresh token: X rotates them on every use).

        A refused refresh token means the user must authorize again, so a 400 or 401 answer is
        REAUTH_REQUIRED here unless it says our client credentials are wrong.
        """
        try:
            return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})
        except ProviderError as exc:
            if exc.status in (400, 401) and exc.error_type not in CLIENT_CREDENTIAL_ERRORS:
                raise ProviderError(
                    exc.provider,
                    exc.status,
                    exc.code,
                    exc.subcode,
                    exc.message,
                    ErrorKind.REAUTH_REQUIRED,
                    error_type=exc.error_type,
                    retry_after_s=exc.retry_after_s,
                ) from exc
            raise

    async def me(self, token: str) -> XUser:
        data = await self._call("GET", "2/users/me", token)
        return XUser(
            id=require_str("x", 200, data, "data", "id"),
            username=require_str("x", 200, data, "data", "username"),
            name=str((data.get("data") or {}).get("name", "")),
        )

    async def subscribe_account_activity(self, token: str, webhook_id: str) -> None:
        """Subscribe the token's user to Account Activity events on ``webhook_id``."""
        await self._call(
            "POST", f"2/account_activity/webhooks/{segment(webhook_id)}/subscriptions/all", token
        )

    async def unsubscribe_account_activity(self, app_token: str, webhook_id: str, user_id: str) -> None:
        """End the user's Account Activity subscription on ``webhook_id`` (the app's Bearer token:
        ``DELETE /2/account_activity/webhooks/{id}/subscriptions/{user_id}/all``)."""
        await self._call(
            "DELETE",
            f"2/account_activity/webhooks/{segment(webhook_id)}/subscriptions/{segment(user_id)}/all",
            app_token,
        )

    # --- X Activity API subscriptions (docs.x.com/x-api/activity/quickstart) ---------------

    async def create_activity_subscription(
        self, token: str, event_type: str, user_id: str, webhook_id: str, tag: str | None = None
    ) -> ActivitySubscription:
        """Subscribe ``webhook_id`` to ``event_type`` filtered on ``user_id``.

        Private events (DMs, chats, mentions, replies, quotes) need the user's own OAuth 2.0 token
        with the event's scope (``dm.read`` for dm.* and chat.*, ``tweet.read`` for post.*).
        X's answer is ``data.subscription`` in its OpenAPI description and the subscription
        itself under ``data`` (or a one-item list) in its quickstart: all three are read.
        """
        body: dict[str, Any] = {
            "event_type": event_type,
            "filter": {"user_id": user_id},
            "webhook_id": webhook_id,
        }
        if tag is not None:
            body["tag"] = tag
        data = await self._call("POST", "2/activity/subscriptions", token, body)
        found = data.get("data")
        if isinstance(found, list) and found:
            found = found[0]
        if isinstance(found, dict) and isinstance(found.get("subscription"), dict):
            found = found["subscription"]
        return ActivitySubscription.from_api(200, found)

    async def activity_subscriptions(self, token: str) -> list[ActivitySubscription]:
        """Every X Activity API subscription of the app, all pages (an app-only Bearer token)."""
        found: list[ActivitySubscription] = []
        params = {"max_results": "1000"}
        for _ in range(MAX_SUBSCRIPTION_PAGES):
            data = await self._call("GET", "2/activity/subscriptions", token, params=params)
            items = data.get("data")
            for item in items if isinstance(items, list) else ():
                found.append(ActivitySubscription.from_api(200, item))
            meta = data.get("meta")
            cursor = meta.get("next_token") if isinstance(meta, dict) else None
            if not isinstance(cursor, str) or not cursor:
                break
            params = {"max_results": "1000", "pagination_token": cursor}
        return found

    async def delete_activity_subscription(self, token: str, subscription_id: str) -> bool:
        """Delete one subscription (X accepts only an app-only Bearer token here); True if deleted."""
        data = await self._call("DELETE", f"2/activity/subscriptions/{segment(subscription_id)}", token)
        found = data.get("data")
        return bool(found.get("deleted")) if isinstance(found, dict) else False

    async def send_dm(self, token: str, participant_id: str, text: str) -> str:
        """Send a direct message in the one-to-one conversation; the ``dm_event_id``."""
        data = await self._call(
            "POST", f"2/dm_conversations/with/{segment(participant_id)}/messages", token, {"text": text}
        )
        return require_str("x", 201, data, "data", "dm_event_id")

    async def post_reply(self, token: str, text: str, in_reply_to_tweet_id: str) -> str:
        """Post a public reply to a post; the new post's id."""
        data = await self._call(
            "POST",
            "2/tweets",
            token,
            {"text": text, "reply": {"in_reply_to_tweet_id": in_reply_to_tweet_id}},
        )
        return require_str("x", 201, data, "data", "id")


def x_client(http: httpx.AsyncClient, settings: XSettings) -> XClient | None:
    """The X API client a service's settings describe; None when X is not configured."""
    secret = settings.x_client_secret.get_secret_value() if settings.x_client_secret is not None else ""
    if not settings.x_client_id or not secret:
        return None  # an empty secret (a Helm key present but empty) is no configuration
    return XClient(http, settings.x_api_base_url or X_API_BASE_URL, settings.x_client_id, secret)
