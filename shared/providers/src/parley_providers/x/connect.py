"""Connecting an X account: OAuth 2.0 authorization code with PKCE, whose account it is
(``/2/users/me``), and its subscriptions on Parley's webhook through one of X's two delivery APIs.

Each handle authorizes on its own and is its own channel, shown as ``@username``. The X Activity
API (``activity``, one subscription per event type: :mod:`parley_providers.x.subscriptions`)
replaces the Account Activity API (``account_activity``, one subscription per handle), which X
ends on 2027-01-01; a deployment offers ``activity`` once X's app Bearer token and the X Activity
webhook id are configured, and new handles get it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from pydantic import SecretStr

from parley_providers.base import AuthorizedAccount, RefreshStep, SubscriptionOutcome
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.oauth import UserToken, authorization_url, code_challenge
from parley_providers.x import subscriptions
from parley_providers.x.client import XClient, XSettings, x_client

__all__ = [
    "ACCESS_TOKEN_LIFETIME",
    "ACCOUNT_ACTIVITY",
    "ACTIVITY",
    "DEFAULT_X_SCOPES",
    "X_AUTHORIZE_BASE_URL",
    "ConnectSettings",
    "XConnector",
    "refresh_step",
    "refusal_reason",
    "x_connector",
]

ACTIVITY = "activity"
"""The X Activity API (XAA)."""
ACCOUNT_ACTIVITY = "account_activity"
"""The Account Activity API (AAA), until X ends it on 2027-01-01."""

ACCESS_TOKEN_LIFETIME = timedelta(hours=2)
"""How long an OAuth 2.0 user access token works (X docs: OAuth 2.0 Authorization Code Flow with
PKCE, "How long will my credentials stay valid?"); the token answer's ``expires_in`` says it too."""


X_AUTHORIZE_BASE_URL = "https://x.com"
"""Where X's authorization page is: ``https://x.com/i/oauth2/authorize`` with ``response_type=code``,
``client_id``, ``redirect_uri``, ``scope`` (space-separated), ``state``, ``code_challenge`` and
``code_challenge_method=S256`` (docs.x.com, OAuth 2.0 Authorization Code Flow with PKCE, "Connecting
with OAuth 2.0"); it comes back with ``code`` and ``state``, or ``error=access_denied``."""

DEFAULT_X_SCOPES = ("dm.read", "dm.write", "offline.access", "tweet.read", "tweet.write", "users.read")
"""What a handle grants Parley: DMs read and sent (``dm.*`` need ``tweet.read`` and ``users.read``),
posts read and replied to, and ``offline.access`` for the refresh token (without it a token ends
after two hours for good)."""


def refresh_step(expires_at: datetime, now: datetime, lead: timedelta) -> RefreshStep:
    """X's rule: refresh from ``lead`` before the access token's end, and after it (the refresh
    token does not end with the access token). Never REPLACE: only X's refusal of the refresh
    token says a new authorization is needed."""
    return RefreshStep.REFRESH if expires_at - now <= lead else RefreshStep.WAIT


REFUSALS = {"invalid_grant": "grant_revoked", "invalid_request": "refresh_token_invalid"}
"""X's OAuth 2.0 errors for a refused refresh token, and the reconnect reason each gives: X answers
``invalid_request`` ("Value passed for the token was invalid.") for a used or revoked one."""


def refusal_reason(error_type: str | None) -> str:
    return REFUSALS.get(error_type or "", "refresh_refused")


WEBHOOK_ID = re.compile(r"^[0-9]{1,19}$")
"""X's id of a registered webhook, as the X Activity API takes it."""


class ConnectSettings(XSettings, Protocol):
    """Onboarding's settings for X's connect flow."""

    x_webhook_id: str | None
    x_activity_webhook_id: str | None
    x_bearer_token: SecretStr | None
    # read when present (onboarding's): ``x_authorize_base_url``, empty: X_AUTHORIZE_BASE_URL


class XConnector:
    """OAuth 2.0 with PKCE per X account (an ``AccountConnector``, a ``SubscriptionKeeper`` and a
    ``RotatingGrant``)."""

    def __init__(
        self,
        client: XClient,
        webhook_id: str,
        *,
        activity_webhook_id: str | None = None,
        app_token: str | None = None,
        client_id: str = "",
        authorize_base_url: str = X_AUTHORIZE_BASE_URL,
        scopes: tuple[str, ...] = DEFAULT_X_SCOPES,
    ) -> None:
        self._client = client
        self._webhook_id = webhook_id
        self._activity_webhook_id = activity_webhook_id
        self._app_token = app_token or None
        self._client_id = client_id
        self._authorize_base_url = authorize_base_url
        self._scopes = scopes

    def __repr__(self) -> str:
        return (
            f"XConnector({self._client!r}, webhook_id={self._webhook_id!r}, "
            f"activity_webhook_id={self._activity_webhook_id!r})"
        )

    @property
    def delivery_apis(self) -> tuple[str, ...]:
        """``activity`` first when its webhook and the app's Bearer token are configured."""
        if self._activity_webhook_id and self._app_token:
            return (ACTIVITY, ACCOUNT_ACTIVITY)
        return (ACCOUNT_ACTIVITY,)

    def authorize_url(self, redirect_uri: str, state: str, code_verifier: str) -> str:
        """X's authorization page for one handle (a ``PkceLoginStart``), with the verifier's S256
        challenge (X takes ``plain`` too; S256 keeps the verifier off the browser's URL)."""
        return authorization_url(
            self._authorize_base_url,
            "i/oauth2/authorize",
            {
                "response_type": "code",
                "client_id": self._client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self._scopes),
                "state": state,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
            },
        )

    async def authorize(self, code: str, redirect_uri: str, code_verifier: str) -> AuthorizedAccount:
        token = await self._client.exchange_code(code, redirect_uri, code_verifier)
        user = await self._client.me(token.access_token)
        return AuthorizedAccount(id=user.id, display_name=f"@{user.username}", token=token)

    def grant_refresh_step(self, expires_at: datetime, now: datetime, lead: timedelta) -> RefreshStep:
        return refresh_step(expires_at, now, lead)

    async def refresh_grant(self, refresh_token: str) -> UserToken:
        return await self._client.refresh(refresh_token)

    def grant_refusal_reason(self, error_type: str | None) -> str:
        return refusal_reason(error_type)

    async def subscribe(self, account: AuthorizedAccount) -> None:
        """Through the API new handles get (raises when anything stays unsubscribed)."""
        check = await self.subscribe_via(self.delivery_apis[0], account.id, account.token.access_token)
        if not check.complete:
            raise ProviderError(
                "x", 0, None, None, f"not subscribed: {', '.join(check.missing)}", _kind(check.reason)
            )

    def _activity(self) -> tuple[str, str]:
        if self._activity_webhook_id is None or self._app_token is None:
            raise ValueError("the X Activity API is not configured (webhook id and app Bearer token)")
        return self._activity_webhook_id, self._app_token

    async def subscribe_via(self, api: str, account_id: str, token: str) -> SubscriptionOutcome:
        if api == ACCOUNT_ACTIVITY:
            await self._client.subscribe_account_activity(token, self._webhook_id)
            return SubscriptionOutcome(account_id)
        webhook_id, app_token = self._activity()
        report = await subscriptions.ensure(
            self._client, user_token=token, app_token=app_token, user_id=account_id, webhook_id=webhook_id
        )
        return _check(report)

    async def unsubscribe_via(self, api: str, account_id: str) -> tuple[str, ...]:
        if self._app_token is None:
            raise ValueError("removing X subscriptions needs the app's Bearer token")
        if api == ACCOUNT_ACTIVITY:
            try:
                await self._client.unsubscribe_account_activity(self._app_token, self._webhook_id, account_id)
            except ProviderError as exc:
                if exc.status != 404:
                    raise
                return ()  # not subscribed (any more)
            return ("account_activity",)
        webhook_id, app_token = self._activity()
        report = await subscriptions.remove(
            self._client, app_token=app_token, user_id=account_id, webhook_id=webhook_id
        )
        if report.failed:
            first = report.failed[0]
            raise ProviderError("x", 0, None, None, f"not removed: {first.subject}", _kind(first.kind))
        return report.removed

    async def repair(self, api: str, tokens: Mapping[str, str]) -> list[SubscriptionOutcome]:
        if api != ACTIVITY or not tokens:
            return []  # Account Activity subscriptions are not listed per user: nothing to check
        webhook_id, app_token = self._activity()
        report = await subscriptions.repair(
            self._client, app_token=app_token, user_tokens=tokens, webhook_id=webhook_id
        )
        return [_check(handle) for handle in report.handles]


def _kind(value: str | None) -> ErrorKind | None:
    try:
        return ErrorKind(value) if value is not None else None
    except ValueError:
        return None


def _check(report: subscriptions.SubscriptionReport) -> SubscriptionOutcome:
    return SubscriptionOutcome(
        report.user_id,
        restored=report.created,
        missing=tuple(f.subject for f in report.failed),
        reason=report.failed[0].kind if report.failed else None,
    )


def x_connector(http: httpx.AsyncClient, settings: ConnectSettings) -> XConnector | None:
    """X's connector; None unless X's client and its webhook are configured."""
    client = x_client(http, settings)
    if client is None or not settings.x_webhook_id:
        return None
    bearer = getattr(settings, "x_bearer_token", None)
    activity_webhook = getattr(settings, "x_activity_webhook_id", None)
    if activity_webhook is not None and not WEBHOOK_ID.fullmatch(activity_webhook):
        raise ValueError("the X Activity webhook id is 1-19 digits")
    return XConnector(
        client,
        settings.x_webhook_id,
        activity_webhook_id=activity_webhook or None,
        app_token=bearer.get_secret_value() if bearer is not None else None,
        client_id=settings.x_client_id or "",
        authorize_base_url=getattr(settings, "x_authorize_base_url", "") or X_AUTHORIZE_BASE_URL,
    )
