"""The provider sandbox for contract tests: served for real by uvicorn, with Parley's clients on it.

``running_sandbox()`` serves a fresh sandbox (its own state) on a free 127.0.0.1 port and yields a
:class:`Sandbox`: the state, the URL, a real ``httpx.AsyncClient`` (no ASGI transport), the Graph
and X clients, and the senders the registry builds from settings that point at the sandbox, the
way policy builds them. Set-up and inspection use the ``/_sandbox`` admin API and the state.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from parley_events import Provider, ReplyApproved, SenderType
from parley_providers import ProviderError, registry
from parley_providers.base import Sender
from parley_providers.meta.client import GraphClient, PageInfo
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
from parley_providers.oauth import UserToken
from parley_providers.x.client import XClient
from parley_sandbox import SandboxState, serve_sandbox
from pydantic import SecretStr

REDIRECT = "https://app.parley.test/oauth/meta/callback"
X_REDIRECT = "https://app.parley.test/oauth/x/callback"
GRAPH_VERSION = DEFAULT_GRAPH_API_VERSION
"""The Graph API version the clients here are configured with (the sandbox serves any)."""
WA_TOKEN = "wa-system-user-token-0001"
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
X_USER_ID = "2244994945"
PKCE_VERIFIER = "parley-test-verifier-" + "k" * 43


async def fails(awaitable: Awaitable[Any]) -> ProviderError:
    """The ProviderError a call raises (the test fails if it returns)."""
    with pytest.raises(ProviderError) as info:
        await awaitable
    return info.value


def near(actual: datetime | None, expected: timedelta, slack_s: float = 30) -> bool:
    """True if ``actual`` is ``expected`` from now, give or take ``slack_s``."""
    assert actual is not None
    return abs((actual - datetime.now(UTC) - expected).total_seconds()) < slack_s


def approved(
    provider: Provider, account_id: str, recipient_id: str, kind: str, **fields: Any
) -> ReplyApproved:
    """A reply as policy approves it for delivery (``fields``: text, template, messaging_type, tag)."""
    return ReplyApproved(
        event_id="rpl_contract:approved",
        reply_id="rpl_contract",
        conversation_id="conv_contract",
        tenant_id="ten_contract",
        channel_id="chn_contract",
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        occurred_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        provider=provider,
        account_id=account_id,
        recipient_id=recipient_id,
        kind=kind,
        **fields,
    )


def nobody_listening() -> str:
    """The URL of a 127.0.0.1 port nothing listens on: a provider that does not answer at all."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def pkce_challenge(verifier: str = PKCE_VERIFIER) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def acme_pages() -> list[dict[str, Any]]:
    """Two Pages: Acme with an Instagram account and every task, the Outlet with two tasks."""
    return [
        {
            "id": "104512345678901",
            "name": "Acme",
            "instagram": {"id": "17841400000000001", "username": "acme"},
        },
        {
            "id": "104512345678902",
            "name": "Acme Outlet",
            "tasks": ["ANALYZE", "MESSAGING"],
            "instagram": None,
        },
    ]


@dataclass
class Sandbox:
    """A running sandbox and Parley's provider clients pointed at it."""

    state: SandboxState
    url: str
    http: httpx.AsyncClient
    graph: GraphClient
    x: XClient
    senders: dict[Provider, Sender]

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.request(method, f"{self.url}/_sandbox{path}", json=body)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def admin_status(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        response = await self.http.request(method, f"{self.url}/_sandbox{path}", json=body)
        return response.status_code

    async def fault(self, **spec: Any) -> dict[str, Any]:
        """Answer the next matching provider call(s) with an error in the provider's shape."""
        return dict(await self.admin("POST", "/faults", spec))

    # --- Meta

    async def meta_user(self, **spec: Any) -> str:
        """A Meta user (``pages``, ``granted``, ...); the Login code for them."""
        spec.setdefault("redirect_uri", REDIRECT)
        return str((await self.admin("POST", "/meta/users", spec))["code"])

    async def connect_meta(self, **spec: Any) -> tuple[str, str, list[PageInfo]]:
        """A user through Login: (short-lived token, long-lived token, pages from the long one)."""
        code = await self.meta_user(**spec)
        short = await self.graph.exchange_code(code, REDIRECT)
        long = await self.graph.long_lived_token(short.access_token)
        return short.access_token, long.access_token, await self.graph.pages(long.access_token)

    def user_of(self, page_id: str) -> str:
        """The sandbox user who manages ``page_id``."""
        return next(u.id for u in self.state.meta_users.values() if page_id in u.page_ids)

    # --- WhatsApp

    async def whatsapp_number(self, **spec: Any) -> str:
        """A WhatsApp number of WABA_ID whose system-user token is WA_TOKEN (unless ``spec`` says)."""
        body = {
            "phone_number_id": PHONE_NUMBER_ID,
            "display_phone_number": "+1 555 010 0001",
            "waba_id": WABA_ID,
            "token": WA_TOKEN,
            **spec,
        }
        return str((await self.admin("POST", "/whatsapp/numbers", body))["phone_number_id"])

    # --- X

    async def x_connect(self, **spec: Any) -> UserToken:
        """An X user (``X_USER_ID``, @acme_help) authorized through OAuth 2.0 with PKCE."""
        body = {"id": X_USER_ID, "username": "acme_help", "name": "Acme Help", **spec}
        body.update({"redirect_uri": X_REDIRECT, "code_challenge": pkce_challenge()})
        body["code_challenge_method"] = "S256"
        created = await self.admin("POST", "/x/users", body)
        return await self.x.exchange_code(created["code"], X_REDIRECT, PKCE_VERIFIER)


def sandbox_settings(url: str, state: SandboxState) -> SimpleNamespace:
    """What a service's settings give the provider plugins, pointed at the sandbox."""
    return SimpleNamespace(
        graph_base_url=url,
        graph_api_version=GRAPH_VERSION,
        instagram_graph_base_url=f"{url}/instagram",
        meta_app_id=state.meta_app_id,
        meta_app_secret=SecretStr(state.meta_app_secret),
        x_api_base_url=url,
        x_client_id=state.x_client_id,
        x_client_secret=SecretStr(state.x_client_secret),
    )


@contextlib.asynccontextmanager
async def running_sandbox() -> AsyncIterator[Sandbox]:
    """A fresh sandbox served over HTTP, with the clients and senders on it."""
    state = SandboxState()
    async with serve_sandbox(state) as url, httpx.AsyncClient(timeout=10) as http:
        assert url.startswith("http://127.0.0.1:")
        yield Sandbox(
            state=state,
            url=url,
            http=http,
            graph=GraphClient(http, url, state.meta_app_id, state.meta_app_secret, GRAPH_VERSION),
            x=XClient(http, url, state.x_client_id, state.x_client_secret),
            senders=registry.senders(http, sandbox_settings(url, state)),
        )
