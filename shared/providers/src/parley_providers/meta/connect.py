"""Connecting Facebook Pages and their Instagram profiles: Facebook Login, the grant, Page tasks,
the Page's webhook subscription, and whether a token still works.

What a Page admin must be able to do for Parley to run the Page as a channel: ``/me/accounts``
lists, per Page, the ``tasks`` the person who logged in can perform, and Meta's documentation names
the task each call Parley makes needs:

- the Send API (Messenger replies) and the webhook subscription for message fields need a Page
  token "requested by a person who can perform the MESSAGING task on the Page"
  (developers.facebook.com/docs/messenger-platform/reference/send-api, /get-started,
  /documentation/pages-api/webhooks-for-pages);
- the ``feed`` webhook field and replying to or hiding comments need one from a person who can
  perform CREATE_CONTENT, MANAGE or MODERATE (/docs/graph-api/reference/page/subscribed_apps,
  /documentation/pages-api/webhooks-for-pages).

So a Page is accepted with MANAGE (full control), or with both MESSAGING and MODERATE; MODERATE
alone (a moderator) or MESSAGING alone is refused before anything is subscribed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from parley_providers.base import AuthorizedAccount, GrantedPage, PageGrant, RefreshStep, TokenRefusal
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.meta.client import GraphClient, GraphSettings
from parley_providers.meta.errors import INVALID_TOKEN
from parley_providers.meta.instagram import (
    DEFAULT_INSTAGRAM_LOGIN_FIELDS,
    DEFAULT_INSTAGRAM_LOGIN_SCOPES,
    LONG_LIVED_VALIDITY,
    InstagramClient,
    RefreshTiming,
    refresh_timing,
)
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
from parley_providers.oauth import UserToken, authorization_url

__all__ = [
    "DEFAULT_INSTAGRAM_PERMISSIONS",
    "DEFAULT_PAGE_FIELDS",
    "DEFAULT_PAGE_PERMISSIONS",
    "FACEBOOK_LOGIN_BASE_URL",
    "FULL_CONTROL_TASK",
    "INSTAGRAM_LOGIN_BASE_URL",
    "REQUIRED_PAGE_TASKS",
    "ConnectSettings",
    "InstagramLoginSubscriptions",
    "MetaConnector",
    "MetaInstagramConnector",
    "graph_token_refusal",
    "meta_connector",
    "missing_page_tasks",
]

FACEBOOK_LOGIN_BASE_URL = "https://www.facebook.com"
"""The Login dialog's host: ``https://www.facebook.com/{version}/dialog/oauth`` with ``client_id``,
``redirect_uri``, ``state`` and ``scope`` (comma-separated) or, for Facebook Login for Business,
``config_id`` (developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow,
/docs/facebook-login/facebook-login-for-business). The dialog comes back to ``redirect_uri`` with
``code`` and ``state``, or with ``error=access_denied`` and ``error_reason=user_denied``."""
INSTAGRAM_LOGIN_BASE_URL = "https://www.instagram.com"
"""Business Login for Instagram's authorization window: ``/oauth/authorize`` with ``client_id``,
``redirect_uri``, ``response_type=code``, ``scope`` (comma-separated) and ``state``
(developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/business-login,
/docs/instagram-platform/reference/oauth-authorize)."""

FULL_CONTROL_TASK = "MANAGE"
REQUIRED_PAGE_TASKS = ("MESSAGING", "MODERATE")

DEFAULT_PAGE_PERMISSIONS = (
    "pages_show_list",  # list the Pages the admin manages
    "pages_manage_metadata",  # subscribe the app to the Page's webhooks
    "pages_messaging",  # Messenger conversations
    "pages_read_engagement",  # read posts and comments
    "pages_manage_engagement",  # answer comments
)
DEFAULT_INSTAGRAM_PERMISSIONS = (
    "instagram_basic",
    "instagram_manage_messages",
    "instagram_manage_comments",
)
DEFAULT_PAGE_FIELDS = (
    "messages",
    "messaging_postbacks",
    "message_echoes",
    "message_deliveries",
    "message_reads",
    "message_reactions",
    "feed",
)
"""The Page webhook fields the app subscribes to (Messenger's message fields and the Page feed)."""


def missing_page_tasks(tasks: Iterable[str]) -> list[str]:
    """The tasks still needed on a Page for Parley's channel ([] when the admin has enough)."""
    have = {str(t).upper() for t in tasks}
    if FULL_CONTROL_TASK in have:
        return []
    return [task for task in REQUIRED_PAGE_TASKS if task not in have]


async def graph_token_refusal(graph: GraphClient, token: str) -> TokenRefusal | None:
    """Whether Graph still takes ``token`` (``debug_token``); why not, by Graph's numbers.

    ``debug_token`` says only "invalid": a call with the token itself then says why (code,
    subcode). An answer refusing the app's own check for the token's sake (reauth, permission)
    is a refusal too; any other failure raises.
    """
    try:
        valid, _expires_at, _scopes = await graph.debug_token(token)
    except ProviderError as exc:
        if exc.kind in (ErrorKind.REAUTH_REQUIRED, ErrorKind.PERMISSION_MISSING):
            return TokenRefusal(exc.code, exc.subcode)
        raise
    if valid:
        return None
    code, subcode = INVALID_TOKEN, None
    try:
        await graph.permissions(token)
    except ProviderError as exc:
        code, subcode = exc.code or INVALID_TOKEN, exc.subcode
    return TokenRefusal(code, subcode)


class ConnectSettings(GraphSettings, Protocol):
    """Onboarding's settings for Meta's connect flow (None: Meta's defaults above)."""

    meta_permissions: tuple[str, ...] | None
    instagram_permissions: tuple[str, ...] | None
    page_subscribed_fields: tuple[str, ...] | None
    # read when present (onboarding's settings have them): ``meta_login_base_url`` (the Login
    # dialog's host, empty: FACEBOOK_LOGIN_BASE_URL), ``meta_login_config_id`` (a Facebook Login for
    # Business configuration, asked for instead of ``scope``), ``instagram_login_base_url``


class MetaConnector:
    """Facebook Login for Pages and their linked Instagram profiles (a ``PageConnector``)."""

    required_page_tasks: tuple[str, ...] = REQUIRED_PAGE_TASKS

    def __init__(
        self,
        graph: GraphClient,
        *,
        page_permissions: Iterable[str] = DEFAULT_PAGE_PERMISSIONS,
        instagram_permissions: Iterable[str] = DEFAULT_INSTAGRAM_PERMISSIONS,
        page_fields: Iterable[str] = DEFAULT_PAGE_FIELDS,
        app_id: str = "",
        api_version: str = DEFAULT_GRAPH_API_VERSION,
        login_base_url: str = FACEBOOK_LOGIN_BASE_URL,
        login_config_id: str | None = None,
    ) -> None:
        self._graph = graph
        self._page_permissions = frozenset(page_permissions)
        self._instagram_permissions = frozenset(instagram_permissions)
        self._page_fields = list(page_fields)
        self._app_id = app_id
        self._api_version = api_version
        self._login_base_url = login_base_url
        self._login_config_id = login_config_id or None

    def __repr__(self) -> str:
        return f"MetaConnector({self._graph!r})"

    def page_login_url(self, redirect_uri: str, state: str) -> str:
        """Facebook Login's dialog asking for what Pages and their Instagram profiles need (a
        ``PageLoginStart``); a Login for Business configuration replaces the scope."""
        scope = (
            None
            if self._login_config_id
            else ",".join(sorted(self._page_permissions | self._instagram_permissions))
        )
        return authorization_url(
            self._login_base_url,
            f"{self._api_version}/dialog/oauth",
            {
                "client_id": self._app_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "response_type": "code",
                "scope": scope,
                "config_id": self._login_config_id,
            },
        )

    async def grant(self, code: str, redirect_uri: str) -> PageGrant:
        """Code -> short-lived user token -> long-lived one; its permissions and Pages.

        The user token itself is not kept: a channel runs on its Page token, and only the
        long-lived token's expiry (the person's grant) is tracked.
        """
        short = await self._graph.exchange_code(code, redirect_uri)
        user_token = await self._graph.long_lived_token(short.access_token)
        permissions = await self._graph.permissions(user_token.access_token)
        pages = await self._graph.pages(user_token.access_token)
        return PageGrant(
            granted=frozenset(name for name, status in permissions.items() if status == "granted"),
            pages=tuple(
                GrantedPage(
                    id=p.id,
                    name=p.name,
                    access_token=p.access_token,
                    tasks=p.tasks,
                    instagram_id=p.instagram_business_account_id,
                    instagram_username=p.instagram_username,
                )
                for p in pages
            ),
            expires_at=user_token.expires_at,
        )

    def missing_permissions(self, granted: Iterable[str], *, instagram: bool) -> list[str]:
        needed = self._instagram_permissions if instagram else self._page_permissions
        return sorted(needed - set(granted))

    def missing_page_tasks(self, tasks: Iterable[str]) -> list[str]:
        return missing_page_tasks(tasks)

    async def subscribe_page(self, page_id: str, page_token: str) -> None:
        await self._graph.subscribe_page(page_id, page_token, self._page_fields)

    async def unsubscribe_page(self, page_id: str, page_token: str) -> None:
        await self._graph.unsubscribe_page(page_id, page_token)

    async def token_refusal(self, token: str) -> TokenRefusal | None:
        return await graph_token_refusal(self._graph, token)

    # a SubscriptionCheck: an app whose webhook calls fail for an extended period is unsubscribed
    # and must subscribe the Page again (developers.facebook.com/docs/messenger-platform/faq)

    async def missing_subscriptions(self, account_id: str, token: str) -> tuple[str, ...]:
        """The Page webhook fields Parley subscribes to that the Page's subscription lacks."""
        have = await self._graph.page_subscribed_fields(account_id, token)
        return tuple(sorted(set(self._page_fields) - have))

    async def restore_subscriptions(self, account_id: str, token: str) -> None:
        await self._graph.subscribe_page(account_id, token, self._page_fields)


class InstagramLoginSubscriptions:
    """The webhook subscription of an account connected with Instagram Login (a
    ``SubscriptionCheck``): read and restored on graph.instagram.com with the account's own token
    (``/me/subscribed_apps``, Instagram Platform, webhooks: "enable subscriptions"), since the
    account has no Page. The fields are the app's: an account receives every field the app
    subscribes to in the App Dashboard, so a missing one means the account's subscription went."""

    def __init__(self, instagram: InstagramClient, fields: Iterable[str]) -> None:
        self._instagram = instagram
        self._fields = list(fields)

    def __repr__(self) -> str:
        return f"InstagramLoginSubscriptions({self._instagram!r})"

    async def missing_subscriptions(self, account_id: str, token: str) -> tuple[str, ...]:
        """The fields Parley subscribes an Instagram-login account to that it lacks now."""
        have = await self._instagram.subscribed_fields(token)
        return tuple(sorted(set(self._fields) - have))

    async def restore_subscriptions(self, account_id: str, token: str) -> None:
        await self._instagram.subscribe(token, self._fields)


class MetaInstagramConnector(MetaConnector):
    """Meta's connector when an Instagram app is configured: also a ``LoginConnector`` for
    professional accounts connected with Instagram Login (no Page; ``meta/instagram.py``), whose
    subscriptions it checks too (a ``LoginSubscriptionCheck``)."""

    def __init__(
        self,
        graph: GraphClient,
        instagram: InstagramClient,
        *,
        login_scopes: Iterable[str] = DEFAULT_INSTAGRAM_LOGIN_SCOPES,
        login_fields: Iterable[str] = DEFAULT_INSTAGRAM_LOGIN_FIELDS,
        instagram_app_id: str = "",
        instagram_login_base_url: str = INSTAGRAM_LOGIN_BASE_URL,
        **page_flow: Any,
    ) -> None:
        super().__init__(graph, **page_flow)
        self._instagram = instagram
        self._instagram_app_id = instagram_app_id
        self._instagram_login_base_url = instagram_login_base_url
        self._login_scopes = frozenset(login_scopes)
        self._login_fields = list(login_fields)
        # a LoginSubscriptionCheck: Instagram-login accounts are checked like Pages, on their host
        self.login_subscriptions = InstagramLoginSubscriptions(instagram, self._login_fields)

    def account_login_url(self, redirect_uri: str, state: str) -> str:
        """Business Login for Instagram's authorization window (an ``AccountLoginStart``)."""
        return authorization_url(
            self._instagram_login_base_url,
            "oauth/authorize",
            {
                "client_id": self._instagram_app_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": ",".join(sorted(self._login_scopes)),
                "state": state,
            },
        )

    async def login(self, code: str, redirect_uri: str) -> AuthorizedAccount:
        """Code -> short-lived token -> the 60-day token; the professional account it is for."""
        authorization = await self._instagram.exchange_code(code, redirect_uri)
        long_lived = await self._instagram.long_lived_token(authorization.token.access_token)
        profile = await self._instagram.profile(long_lived.access_token)
        token = UserToken(long_lived.access_token, long_lived.expires_at, scopes=authorization.token.scopes)
        return AuthorizedAccount(id=profile.user_id, display_name=profile.username, token=token)

    def missing_login_permissions(self, granted: Iterable[str]) -> list[str]:
        return sorted(self._login_scopes - set(granted))

    async def subscribe_account(self, account_id: str, token: str) -> None:
        await self._instagram.subscribe(token, self._login_fields)

    def refresh_step(self, expires_at: datetime, now: datetime, lead: timedelta) -> RefreshStep:
        # a long-lived token is valid 60 days from its issue or last refresh: its age follows
        # from its end (an answer's expires_in a little short of 60 days only makes it look younger)
        timing = refresh_timing(expires_at - LONG_LIVED_VALIDITY, expires_at, now, lead)
        if timing is RefreshTiming.DUE:
            return RefreshStep.REFRESH
        if timing is RefreshTiming.EXPIRED:
            return RefreshStep.REPLACE
        return RefreshStep.WAIT

    async def refresh(self, token: str) -> UserToken:
        return await self._instagram.refresh_token(token)


def meta_connector(
    graph: GraphClient, settings: ConnectSettings, instagram: InstagramClient | None = None
) -> MetaConnector:
    """Meta's connector with the permissions and webhook fields onboarding's settings name."""

    def given(value: tuple[str, ...] | None, default: tuple[str, ...]) -> tuple[str, ...]:
        return default if value is None else value

    page_flow: dict[str, Any] = {
        "page_permissions": given(settings.meta_permissions, DEFAULT_PAGE_PERMISSIONS),
        "instagram_permissions": given(settings.instagram_permissions, DEFAULT_INSTAGRAM_PERMISSIONS),
        "page_fields": given(settings.page_subscribed_fields, DEFAULT_PAGE_FIELDS),
        "app_id": settings.meta_app_id,
        "api_version": settings.graph_api_version or DEFAULT_GRAPH_API_VERSION,
        # the login hosts are onboarding's settings only: another service's settings lack them
        "login_base_url": getattr(settings, "meta_login_base_url", "") or FACEBOOK_LOGIN_BASE_URL,
        "login_config_id": getattr(settings, "meta_login_config_id", None),
    }
    if instagram is None:
        return MetaConnector(graph, **page_flow)
    return MetaInstagramConnector(
        graph,
        instagram,
        instagram_app_id=getattr(settings, "instagram_app_id", None) or "",
        instagram_login_base_url=getattr(settings, "instagram_login_base_url", "")
        or INSTAGRAM_LOGIN_BASE_URL,
        **page_flow,
    )
