"""Instagram API with Instagram Login: an Instagram professional account connected with no Facebook
Page, through Business Login for Instagram and ``graph.instagram.com``.

Meta's documentation (Instagram Platform, developers.facebook.com/docs/instagram-platform/):

- Business Login (``instagram-api-with-instagram-login/business-login``): the authorization window
  asks for the scopes ``instagram_business_basic``, ``instagram_business_manage_messages`` and
  ``instagram_business_manage_comments`` (the older ``business_*`` values stopped working on
  2025-01-27); the code it gives is traded at ``POST https://api.instagram.com/oauth/access_token``
  (form fields ``client_id``, ``client_secret``, ``grant_type=authorization_code``,
  ``redirect_uri``, ``code``) for a short-lived token (one hour), the account's Instagram-scoped
  user id and the permissions granted.
- ``reference/access_token``: ``GET https://graph.instagram.com/access_token`` with
  ``grant_type=ig_exchange_token``, the app secret and the short-lived token gives the long-lived
  token, valid 60 days (``expires_in`` in seconds).
- ``reference/refresh_access_token``: ``GET https://graph.instagram.com/refresh_access_token``
  with ``grant_type=ig_refresh_token`` refreshes a long-lived token "that is at least 24 hours old
  but has not expired"; the refreshed token is valid 60 days from the refresh.
- ``GET https://graph.instagram.com/{version}/me?fields=user_id,username``: the professional
  account's id (the id webhooks and sends name) and its username.

Tokens travel in the ``Authorization`` header, except in the two token endpoints, which take them
only as query parameters. Nothing here logs, and no :class:`ProviderError` text contains a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from parley_providers.errors import ProviderError
from parley_providers.http import body_of, expiry, json_object, require_str, segment, send, snippet
from parley_providers.meta.client import Mentioned, mentioned_fields, mentioned_of
from parley_providers.meta.errors import graph_error, meta_error
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
from parley_providers.oauth import UserToken

__all__ = [
    "DEFAULT_INSTAGRAM_LOGIN_FIELDS",
    "DEFAULT_INSTAGRAM_LOGIN_SCOPES",
    "LONG_LIVED_VALIDITY",
    "MIN_REFRESH_AGE",
    "InstagramAuthorization",
    "InstagramClient",
    "InstagramLoginSettings",
    "InstagramProfile",
    "RefreshTiming",
    "instagram_client",
    "instagram_sender_client",
    "refresh_timing",
]

PROVIDER = "instagram"
"""The ``provider`` of this client's ProviderErrors (Graph's own calls say ``meta``)."""

DEFAULT_INSTAGRAM_LOGIN_SCOPES = (
    "instagram_business_basic",  # the profile: id and username
    "instagram_business_manage_messages",  # DMs: webhooks and the Send API
    "instagram_business_manage_comments",  # comments and mentions: webhooks, replies, private replies
)

DEFAULT_INSTAGRAM_LOGIN_FIELDS = ("messages", "messaging_postbacks", "comments", "mentions")
"""The webhook fields an Instagram-login account is subscribed to (Instagram Platform, webhooks:
``messages``, ``messaging_postbacks``, ``comments``, ``mentions`` among the account's fields)."""

MIN_REFRESH_AGE = timedelta(hours=24)
"""A long-lived token younger than this cannot be refreshed (reference/refresh_access_token)."""

LONG_LIVED_VALIDITY = timedelta(days=60)
"""How long a long-lived (or refreshed) Instagram user token is valid."""


class RefreshTiming(StrEnum):
    """Where a long-lived Instagram user token is in its life, for a refresh job."""

    NOT_YET = "not_yet"
    """Its end is further away than the lead time: nothing to do."""
    TOO_YOUNG = "too_young"
    """Within the lead time but younger than 24 hours: Instagram would refuse the refresh."""
    DUE = "due"
    """Within the lead time and at least 24 hours old: refresh it now."""
    EXPIRED = "expired"
    """Past its end: it can no longer be refreshed, only replaced by a new login."""


def refresh_timing(
    issued_at: datetime, expires_at: datetime, now: datetime, lead: timedelta
) -> RefreshTiming:
    """Whether a token issued at ``issued_at`` and valid until ``expires_at`` is refreshed ``now``
    by a job refreshing tokens ``lead`` before their end.

    The boundaries are Instagram's: a token exactly 24 hours old may be refreshed, a token at its
    ``expires_at`` has expired.
    """
    if now >= expires_at:
        return RefreshTiming.EXPIRED
    if expires_at - now > lead:
        return RefreshTiming.NOT_YET
    if now - issued_at < MIN_REFRESH_AGE:
        return RefreshTiming.TOO_YOUNG
    return RefreshTiming.DUE


@dataclass(frozen=True)
class InstagramAuthorization:
    """What Business Login's code gave: the account's Instagram-scoped user id and a short-lived
    token with the permissions granted (``token.scopes``)."""

    user_id: str
    token: UserToken


@dataclass(frozen=True)
class InstagramProfile:
    """An Instagram professional account as ``/me`` describes it."""

    user_id: str
    """The professional account's id: the id its webhooks and sends name."""
    username: str


INSTAGRAM_OAUTH_BASE_URL = "https://api.instagram.com"
"""Where Business Login for Instagram trades its codes (a service's setting may point elsewhere)."""
INSTAGRAM_GRAPH_BASE_URL = "https://graph.instagram.com"
"""The Instagram API with Instagram Login: profile, tokens, sends, comment replies."""


class InstagramLoginSettings(Protocol):
    """The settings a service gives the Instagram Login client."""

    instagram_oauth_base_url: str
    instagram_graph_base_url: str
    graph_api_version: str
    instagram_app_id: str | None
    instagram_app_secret: SecretStr | None


def _granted(value: object) -> tuple[str, ...]:
    """Permissions as Business Login lists them: a comma-separated string (or a list)."""
    if isinstance(value, str):
        return tuple(sorted(p.strip() for p in value.split(",") if p.strip()))
    if isinstance(value, list):
        return tuple(sorted(str(p) for p in value))
    return ()


def _error(response: httpx.Response) -> ProviderError:
    """A failed answer: Graph's error object (graph.instagram.com), or the authorization
    server's ``error_type``/``error_message`` form (api.instagram.com)."""
    data = body_of(response)
    if isinstance(data, dict) and "error" not in data and data.get("error_message"):
        return meta_error(PROVIDER, response.status_code, None, None, str(data["error_message"]))
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return graph_error(PROVIDER, response)
    return ProviderError(PROVIDER, response.status_code, None, None, snippet(response))


class InstagramClient:
    """Business Login for Instagram and ``graph.instagram.com`` for accounts connected with it."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        oauth_base_url: str,
        graph_base_url: str,
        app_id: str,
        app_secret: str,
        api_version: str | None = None,
    ) -> None:
        self._http = http
        self._oauth = oauth_base_url.rstrip("/")
        self._graph = graph_base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._version = (api_version or DEFAULT_GRAPH_API_VERSION).strip("/")

    def __repr__(self) -> str:
        return f"InstagramClient(graph_base_url={self._graph!r}, app_id={self._app_id!r})"

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = await send(self._http, PROVIDER, method, url, **kwargs)
        if not response.is_success:
            raise _error(response)
        return json_object(PROVIDER, response)

    async def exchange_code(self, code: str, redirect_uri: str) -> InstagramAuthorization:
        """Trade Business Login's ``code`` for a short-lived token, the account's id and the
        permissions granted."""
        data = await self._json(
            "POST",
            f"{self._oauth}/oauth/access_token",
            data={
                "client_id": self._app_id,
                "client_secret": self._app_secret,
                "grant_type": "authorization_code",
                "redirect_uri": redirect_uri,
                "code": code,
            },
        )
        # answered as {"data": [{...}]}; older answers had the fields at the top level
        rows = data.get("data")
        row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else data
        token = require_str(PROVIDER, 200, row, "access_token")
        return InstagramAuthorization(
            user_id=require_str(PROVIDER, 200, row, "user_id"),  # a number in older answers
            token=UserToken(
                access_token=token,
                expires_at=expiry(row.get("expires_in")),
                scopes=_granted(row.get("permissions")),
            ),
        )

    async def long_lived_token(self, short_lived: str) -> UserToken:
        """Trade a short-lived token for the long-lived one (60 days)."""
        data = await self._json(
            "GET",
            f"{self._graph}/access_token",
            params={
                "grant_type": "ig_exchange_token",
                "client_secret": self._app_secret,
                "access_token": short_lived,
            },
        )
        token = require_str(PROVIDER, 200, data, "access_token")
        return UserToken(access_token=token, expires_at=expiry(data.get("expires_in")))

    async def refresh_token(self, long_lived: str) -> UserToken:
        """A long-lived token at least 24 hours old and unexpired, refreshed for another 60 days
        (Instagram refuses younger or expired ones: see :func:`refresh_timing`)."""
        data = await self._json(
            "GET",
            f"{self._graph}/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": long_lived},
        )
        token = require_str(PROVIDER, 200, data, "access_token")
        return UserToken(access_token=token, expires_at=expiry(data.get("expires_in")))

    async def profile(self, token: str) -> InstagramProfile:
        """The professional account the token belongs to."""
        data = await self._json(
            "GET",
            f"{self._graph}/{self._version}/me",
            params={"fields": "user_id,username"},
            headers={"Authorization": f"Bearer {token}"},
        )
        return InstagramProfile(
            user_id=require_str(PROVIDER, 200, data, "user_id"),
            username=require_str(PROVIDER, 200, data, "username"),
        )

    async def subscribe(self, token: str, fields: list[str]) -> None:
        """Subscribe the app to the account's webhook ``fields`` (``POST /me/subscribed_apps``:
        webhooks for an account connected with Instagram Login need it, besides the app's own
        subscription in the App Dashboard)."""
        data = await self._json(
            "POST",
            f"{self._graph}/{self._version}/me/subscribed_apps",
            params={"subscribed_fields": ",".join(fields)},
            headers={"Authorization": f"Bearer {token}"},
        )
        if data.get("success") is not True:
            raise ProviderError(PROVIDER, 200, None, None, "subscription was not confirmed")

    async def subscribed_fields(self, token: str) -> frozenset[str]:
        """The webhook fields this app has on the account (empty: not subscribed): ``GET
        /me/subscribed_apps`` on graph.instagram.com, read as the Page edge's answer is (a ``data``
        list of apps, each with its ``subscribed_fields``). The list holds this app's entry when
        it is subscribed; an entry naming another app's id is not this app's."""
        data = await self._json(
            "GET",
            f"{self._graph}/{self._version}/me/subscribed_apps",
            headers={"Authorization": f"Bearer {token}"},
        )
        apps = data.get("data")
        for app in apps if isinstance(apps, list) else ():
            if not isinstance(app, dict):
                continue
            app_id = app.get("id", app.get("app_id"))
            if app_id is not None and str(app_id) != self._app_id:
                continue
            fields = app.get("subscribed_fields")
            return frozenset(str(f) for f in fields) if isinstance(fields, list) else frozenset()
        return frozenset()

    # ---- sends for accounts connected with Instagram Login (Instagram Platform, messaging API;
    # private replies; comment moderation): the account's own token, graph.instagram.com

    async def send_message(self, token: str, payload: dict[str, Any]) -> str:
        """Send a message from the account the token belongs to (``POST /me/messages``); its id."""
        data = await self._json(
            "POST",
            f"{self._graph}/{self._version}/me/messages",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
        )
        return require_str(PROVIDER, 200, data, "message_id")

    async def send_private_reply(self, token: str, comment_id: str, text: str) -> str:
        """Answer a comment with a private message to its author; the message id."""
        return await self.send_message(
            token, {"recipient": {"comment_id": comment_id}, "message": {"text": text}}
        )

    async def reply_to_comment(self, comment_id: str, token: str, text: str) -> str:
        """Reply publicly under a comment (``POST /{comment-id}/replies``); the new comment's id."""
        data = await self._json(
            "POST",
            f"{self._graph}/{self._version}/{segment(comment_id)}/replies",
            json={"message": text},
            headers={"Authorization": f"Bearer {token}"},
        )
        return require_str(PROVIDER, 200, data, "id")

    # ---- mentions: the same lookups as on graph.facebook.com, with the account's own token

    async def mentioned_media(self, ig_user_id: str, token: str, media_id: str) -> Mentioned:
        """The caption, author and link of a media whose caption @mentions the account."""
        return await self._mentioned(ig_user_id, token, "mentioned_media", media_id)

    async def mentioned_comment(self, ig_user_id: str, token: str, comment_id: str) -> Mentioned:
        """The text and author of a comment that @mentions the account."""
        return await self._mentioned(ig_user_id, token, "mentioned_comment", comment_id)

    async def _mentioned(self, ig_user_id: str, token: str, kind: str, object_id: str) -> Mentioned:
        data = await self._json(
            "GET",
            f"{self._graph}/{self._version}/{segment(ig_user_id)}",
            params={"fields": mentioned_fields(kind, object_id)},
            headers={"Authorization": f"Bearer {token}"},
        )
        return mentioned_of(PROVIDER, kind, data)


class InstagramSendSettings(Protocol):
    """What sending needs (policy's settings): the host and the Graph version."""

    instagram_graph_base_url: str
    graph_api_version: str


def instagram_sender_client(http: httpx.AsyncClient, settings: InstagramSendSettings) -> InstagramClient:
    """The client policy sends Instagram-login replies with (no login: no app credentials)."""
    return InstagramClient(
        http,
        oauth_base_url="",
        graph_base_url=settings.instagram_graph_base_url or INSTAGRAM_GRAPH_BASE_URL,
        app_id="",
        app_secret="",
        api_version=settings.graph_api_version or None,
    )


def instagram_client(http: httpx.AsyncClient, settings: InstagramLoginSettings) -> InstagramClient | None:
    """The client for a service's settings; None when no Instagram app is configured."""
    if not settings.instagram_app_id or settings.instagram_app_secret is None:
        return None
    return InstagramClient(
        http,
        oauth_base_url=settings.instagram_oauth_base_url or INSTAGRAM_OAUTH_BASE_URL,
        graph_base_url=settings.instagram_graph_base_url or INSTAGRAM_GRAPH_BASE_URL,
        app_id=settings.instagram_app_id,
        app_secret=settings.instagram_app_secret.get_secret_value(),
        api_version=settings.graph_api_version or None,
    )
