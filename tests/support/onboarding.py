"""The onboarding service against the real broker and store, with the provider sandbox over HTTP.

``onboarding_stack`` serves a fresh provider sandbox (uvicorn on a free 127.0.0.1 port, wrapped so
every request body it receives is recorded), builds the onboarding app pointed at it with random
secrets, runs the app's lifespan and hands out a :class:`Stack`: an API client that keeps every
response body, the sandbox's state and admin API, an injectable clock, and readers for the topics
onboarding publishes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from parley_events import Provider, qualify, topics
from parley_onboarding.adapters.stores import account_claim_id
from parley_onboarding.bootstrap import create_onboarding_app
from parley_onboarding.service import OnboardingService
from parley_onboarding.settings import OnboardingSettings
from parley_sandbox import SandboxState, create_sandbox_app
from parley_shared.auth import issue_dev_token
from parley_shared.store import Store
from starlette.applications import Starlette

from tests.conftest import Infra
from tests.support import records
from tests.support.kafka import count_records, read_records

TENANT = "tenant-acme"
OTHER_TENANT = "tenant-globex"
ADMIN = "usr-admin"
AGENT = "usr-agent"
OPERATOR = "usr-operator"  # the platform operator (role ``operator``): records provider-side steps
REDIRECT = "https://app.parley.test/oauth/meta/callback"
X_REDIRECT = "https://app.parley.test/oauth/x/callback"
X_WEBHOOK = "x-webhook-test"

CHANNEL_TOPICS = (topics.CHANNELS, topics.CHANNEL_EVENTS, topics.TEAMS)


class Clock:
    """The service's clock: the wall clock plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body)) if self.body.strip() else {}


class RequestRecorder:
    """ASGI middleware: remembers every request (method, path, query, body) before passing it on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[RecordedRequest] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        self.requests.append(
            RecordedRequest(scope["method"], scope["path"], scope["query_string"].decode(), body)
        )
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def matching(self, suffix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(suffix)]


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port in this event loop; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the sandbox server stopped during start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def auth(user: str = ADMIN, tenant: str = TENANT, *, admin: bool = True, secret: str = "") -> dict[str, str]:
    token = issue_dev_token(secret, user, tenant, ["admin"] if admin else [])
    return {"authorization": f"Bearer {token}"}


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


@dataclass
class Stack:
    infra: Infra
    namespace: str
    app: Starlette
    api: httpx.AsyncClient
    sandbox: SandboxState
    sandbox_url: str
    sandbox_http: httpx.AsyncClient
    recorder: RequestRecorder
    clock: Clock
    settings: OnboardingSettings
    jwt_secret: str
    encryption_key: str
    responses: list[str] = field(default_factory=list)

    # --- the service -------------------------------------------------------------------------

    @property
    def service(self) -> OnboardingService:
        service: OnboardingService = self.app.state.runtime.wiring.service
        return service

    @property
    def store(self) -> Store:
        """The store the service opened (PostgreSQL, or MongoDB when ``store_url`` says so)."""
        opened: Store = self.app.state.runtime.opened_store
        return opened

    async def stored(self, table: str, key: str) -> dict[str, Any] | None:
        """A record as the service stored it, from either store (``tests.support.records``)."""
        return await records.record(self.store, table, key)

    async def count_stored(self, table: str, **where: str) -> int:
        return await records.count(self.store, table, **where)

    async def every_record(self) -> list[records.StoredRecord]:
        """Every record anywhere in the service's store: (table or collection, key, record)."""
        return await records.every_record(self.store)

    async def account_holder(self, provider: Provider, account_id: str) -> str | None:
        """The channel whose claim holds the account (the port only claims and releases)."""
        claim = await self.stored("account_claims", account_claim_id(provider, account_id))
        return None if claim is None else str(claim["channel_id"])

    async def waba_holder(self, waba_id: str) -> str | None:
        """The tenant whose claim holds the WABA (the port only claims and releases)."""
        claim = await self.stored("waba_claims", waba_id)
        return None if claim is None else str(claim["tenant_id"])

    def admin(self, user: str = ADMIN, tenant: str = TENANT) -> dict[str, str]:
        return auth(user, tenant, admin=True, secret=self.jwt_secret)

    def agent(self, user: str = AGENT, tenant: str = TENANT) -> dict[str, str]:
        return auth(user, tenant, admin=False, secret=self.jwt_secret)

    def operator(self, user: str = OPERATOR, tenant: str = TENANT) -> dict[str, str]:
        """The platform operator's token (role ``operator``, not ``admin``) in ``tenant``."""
        return {"authorization": f"Bearer {issue_dev_token(self.jwt_secret, user, tenant, ['operator'])}"}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        status: int = 200,
    ) -> Any:
        """An API call that must answer ``status``; its JSON (None for an empty body)."""
        response = await self.api.request(
            method, f"/v1{path}", json=body, headers=headers if headers is not None else self.admin()
        )
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    # --- the sandbox ---------------------------------------------------------------------------

    async def sandbox_admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.sandbox_http.request(method, f"{self.sandbox_url}/_sandbox{path}", json=body)
        assert response.is_success, f"sandbox {method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def meta_user(self, user_id: str, pages: list[dict[str, Any]], **spec: Any) -> str:
        """Create (or replace) a Meta user with these Pages; a Login code for them."""
        body = {"user_id": user_id, "pages": pages, "redirect_uri": REDIRECT, **spec}
        return str((await self.sandbox_admin("POST", "/meta/users", body))["code"])

    async def meta_code(self, user_id: str) -> str:
        body = {"user_id": user_id, "redirect_uri": REDIRECT}
        return str((await self.sandbox_admin("POST", "/meta/codes", body))["code"])

    async def start_meta(self, code: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "POST", "/connections/meta", {"code": code, "redirect_uri": REDIRECT}, headers=headers
        )
        return result

    async def activate(
        self,
        connection_id: str,
        page_ids: Iterable[str] = (),
        instagram_ids: Iterable[str] = (),
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Any:
        body = {"page_ids": list(page_ids), "instagram_account_ids": list(instagram_ids)}
        return await self.call(
            "POST", f"/connections/meta/{connection_id}/activate", body, headers=headers, status=status
        )

    async def connect_pages(
        self, user_id: str, pages: list[dict[str, Any]], instagram: bool = True
    ) -> dict[str, dict[str, Any]]:
        """A Meta user with ``pages``, connected and every Page (and linked profile) activated.

        Returns the channels by account id.
        """
        code = await self.meta_user(user_id, pages)
        started = await self.start_meta(code)
        page_ids = [p["page_id"] for p in started["pages"]]
        ig_ids = [p["instagram"]["id"] for p in started["pages"] if p["instagram"] and instagram]
        channels = await self.activate(started["connection_id"], page_ids, ig_ids)
        return {c["account_id"]: c for c in channels}

    def page_token(self, page_id: str) -> str:
        """The newest Page token the sandbox issued for ``page_id`` (the one a channel holds)."""
        issued = [t for t in self.sandbox.tokens.values() if t.kind == "page" and t.page_id == page_id]
        assert issued, f"the sandbox issued no token for page {page_id}"
        return max(issued, key=lambda t: t.issued_at).value

    async def x_code(self, user_id: str, username: str, scopes: list[str] | None = None) -> tuple[str, str]:
        """An X user (granting ``scopes``, else the sandbox's default, ``offline.access`` among
        them) and an authorization code for them; (code, code_verifier)."""
        verifier, challenge = pkce()
        body: dict[str, Any] = {
            "id": user_id,
            "username": username,
            "redirect_uri": X_REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if scopes is not None:
            body["scopes"] = scopes
        return str((await self.sandbox_admin("POST", "/x/users", body))["code"]), verifier

    async def whatsapp_number(self, phone_number_id: str, waba_id: str, token: str) -> None:
        body = {"phone_number_id": phone_number_id, "waba_id": waba_id, "token": token}
        await self.sandbox_admin("POST", "/whatsapp/numbers", body)

    # --- what onboarding published ------------------------------------------------------------

    async def events(self, spec: topics.TopicSpec) -> list[dict[str, Any]]:
        """Every record on one of onboarding's topics in this namespace, oldest first per key.

        Each is its JSON value plus ``_type`` (the CloudEvents type header) and ``_key``.
        """
        topic = qualify(spec.name, self.namespace)
        total = await count_records(self.infra.kafka, topic)
        records = await read_records(self.infra.kafka, topic, until=lambda rs: len(rs) >= total)
        return [
            {
                "_type": dict(r.headers).get("ce_type", b"").decode(),
                "_key": r.key.decode() if r.key else None,
                **(json.loads(r.value) if r.value else {}),
            }
            for r in records
        ]

    async def raw_events(self) -> list[str]:
        """The values of every record on the three topics, as text."""
        values: list[str] = []
        for spec in CHANNEL_TOPICS:
            topic = qualify(spec.name, self.namespace)
            total = await count_records(self.infra.kafka, topic)
            records = await read_records(self.infra.kafka, topic, until=lambda rs, n=total: len(rs) >= n)
            values += [r.value.decode() for r in records if r.value]
            values += [str(r.headers) for r in records]
        return values


def of_type(events: list[dict[str, Any]], event_type: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["_type"] == event_type and all(e.get(k) == v for k, v in match.items())]


@contextlib.asynccontextmanager
async def onboarding_stack(
    infra: Infra,
    namespace: str,
    store_url: str,
    clock: Clock | None = None,
    configure: Callable[[SandboxState], None] | None = None,
    jwt_secret: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """The sandbox served over HTTP and the onboarding app running against it (with a random JWT
    secret unless ``jwt_secret`` names the one another service of the test verifies with)."""
    state = SandboxState(
        meta_app_id="parley-test-app",
        meta_app_secret=secrets.token_urlsafe(32),
        x_client_id="parley-test-x-client",
        x_client_secret=secrets.token_urlsafe(32),
    )
    state.x_webhooks[X_WEBHOOK] = []
    if configure is not None:
        configure(state)
    clock = clock or Clock()
    jwt_secret = jwt_secret or secrets.token_urlsafe(32)
    encryption_key = base64.b64encode(secrets.token_bytes(32)).decode()
    recorder = RequestRecorder(create_sandbox_app(state))
    async with serve(recorder) as url, httpx.AsyncClient(timeout=10) as sandbox_http:
        settings = OnboardingSettings(
            kafka_bootstrap_servers=infra.kafka,
            store_url=store_url,
            topic_namespace=namespace,
            consumer_group_prefix=namespace,
            jwt_hs256_secret=jwt_secret,
            encryption_keys=f"k1:{encryption_key}",
            meta_app_id=state.meta_app_id,
            meta_app_secret=state.meta_app_secret,
            graph_base_url=url,
            x_api_base_url=url,
            # the login pages a browser is sent to, on the sandbox too
            meta_login_base_url=url,
            x_authorize_base_url=url,
            x_client_id=state.x_client_id,
            x_client_secret=state.x_client_secret,
            x_webhook_id=X_WEBHOOK,
            **{
                # Instagram Login on the sandbox's two Instagram hosts
                "instagram_app_id": state.instagram_app_id,
                "instagram_app_secret": state.instagram_app_secret,
                "instagram_oauth_base_url": f"{url}/instagram-api",
                "instagram_graph_base_url": f"{url}/instagram",
                "instagram_login_base_url": f"{url}/instagram-www",
                **overrides,
            },
        )
        app = create_onboarding_app(settings, clock=clock)
        responses: list[str] = []

        async def keep_body(response: httpx.Response) -> None:
            await response.aread()
            responses.append(response.text)

        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://onboarding",
                event_hooks={"response": [keep_body]},
            ) as api,
        ):
            yield Stack(
                infra=infra,
                namespace=namespace,
                app=app,
                api=api,
                sandbox=state,
                sandbox_url=url,
                sandbox_http=sandbox_http,
                recorder=recorder,
                clock=clock,
                settings=settings,
                jwt_secret=jwt_secret,
                encryption_key=encryption_key,
                responses=responses,
            )
