"""Connecting an X account: OAuth 2.0 authorization code with PKCE, whose account it is
(``/2/users/me``), and its subscription to Parley's Account Activity webhook.

Each handle authorizes on its own and is its own channel, shown as ``@username``.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from parley_providers.base import AuthorizedAccount
from parley_providers.x.client import XClient, XSettings, x_client

__all__ = ["ConnectSettings", "XConnector", "x_connector"]


class ConnectSettings(XSettings, Protocol):
    """Onboarding's settings for X's connect flow."""

    x_webhook_id: str | None


class XConnector:
    """OAuth 2.0 with PKCE per X account (an ``AccountConnector``)."""

    def __init__(self, client: XClient, webhook_id: str) -> None:
        self._client = client
        self._webhook_id = webhook_id

    def __repr__(self) -> str:
        return f"XConnector({self._client!r}, webhook_id={self._webhook_id!r})"

    async def authorize(self, code: str, redirect_uri: str, code_verifier: str) -> AuthorizedAccount:
        token = await self._client.exchange_code(code, redirect_uri, code_verifier)
        user = await self._client.me(token.access_token)
        return AuthorizedAccount(id=user.id, display_name=f"@{user.username}", token=token)

    async def subscribe(self, account: AuthorizedAccount) -> None:
        await self._client.subscribe_account_activity(account.token.access_token, self._webhook_id)


def x_connector(http: httpx.AsyncClient, settings: ConnectSettings) -> XConnector | None:
    """X's connector; None unless X's client and its webhook are configured."""
    client = x_client(http, settings)
    if client is None or not settings.x_webhook_id:
        return None
    return XConnector(client, settings.x_webhook_id)
