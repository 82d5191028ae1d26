"""The policy service against the real broker and store, with the provider sandbox over HTTP.

``policy_stack`` serves a fresh provider sandbox (``serve_sandbox``), connects the channels the
test asks for there (a Page through the Login code, ``/me/accounts`` flow, a WhatsApp number with
a system token), stores their tokens encrypted in the test's database as onboarding would,
publishes their snapshots, and runs one or more policy apps with an injectable clock. The
:class:`Stack` it hands out publishes customer messages, waits for policy to have seen them, and
reads what policy published and what the sandbox received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer, ConsumerRecord
from parley_events import (
    Author,
    ChannelSnapshot,
    ChannelStatus,
    Content,
    Direction,
    MessageReceived,
    Provider,
    qualify,
    topics,
)
from parley_policy.adapters.postgres import PostgresPolicyStore
from parley_policy.adapters.stores import PolicyStore, PolicyStorePort
from parley_policy.bootstrap import create_policy_app
from parley_policy.service import PolicyService
from parley_policy.settings import PolicySettings
from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
from parley_sandbox import SandboxState, serve_sandbox
from parley_shared.auth import issue_dev_token
from parley_shared.store import open_store
from parley_shared.vault import (
    Credential,
    CredentialStore,
    MongoCredentialStore,
    PostgresCredentialStore,
    TokenVault,
    parse_keys,
)
from starlette.applications import Starlette

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import count_records, publish_events, read_records

JWT = "policy-test-secret-of-at-least-32-bytes"
KEYS = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
REDIRECT = "https://app.parley.test/oauth/meta/callback"
GRAPH = DEFAULT_GRAPH_API_VERSION

REQUESTED = "parley.reply.requested.v1"
APPROVED = "parley.reply.approved.v1"
REJECTED = "parley.reply.rejected.v1"
SENT = "parley.reply.sent.v1"
FAILED = "parley.reply.failed.v1"
OPENED = "parley.reply_window.opened.v1"
CLOSING = "parley.reply_window.closing.v1"
CLOSED = "parley.reply_window.closed.v1"
HUMAN_CLOSED = "parley.human_agent_window.closed.v1"
REAUTH = "parley.channel.reauth_required.v1"


class Clock:
    """Policy's clock, frozen: tests set it or move it forward."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def auth(user: str, tenant: str = TENANT, roles: Sequence[str] = ()) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_dev_token(JWT, user, tenant, list(roles))}"}


def key(value: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": value or secrets.token_hex(8)}


def channel(
    channel_id: str,
    provider: Provider,
    account_id: str,
    tenant: str = TENANT,
    **extra: Any,
) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id=channel_id,
        tenant_id=tenant,
        provider=provider,
        account_id=account_id,
        status=extra.pop("status", ChannelStatus.ACTIVE),
        revision=1,
        **extra,
    )


def inbound(
    snapshot: ChannelSnapshot, conversation: str, customer: str, at: datetime, n: int = 1
) -> MessageReceived:
    """A customer's private message on ``snapshot``'s channel, at the provider's time ``at``."""
    return MessageReceived(
        event_id=f"msg_{conversation}_{n}",
        tenant_id=snapshot.tenant_id,
        channel_id=snapshot.channel_id,
        provider=snapshot.provider,
        account_id=snapshot.account_id,
        conversation_id=conversation,
        conversation_key=f"dm:{customer}",
        direction=Direction.INBOUND,
        author=Author(id=customer),
        content=Content(text=f"customer message {n}"),
        provider_message_id=f"m_{conversation}_{n}",
        provider_timestamp=at,
        delivery_id=f"d_{conversation}_{n}",
    )


def event_of(record: ConsumerRecord[Any, Any]) -> dict[str, Any]:
    headers = {k: v.decode() for k, v in record.headers}
    return {"type": headers.get("ce_type"), "ce_id": headers.get("ce_id"), **json.loads(record.value)}


def of_type(events: Sequence[dict[str, Any]], event_type: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type and all(e.get(k) == v for k, v in match.items())]


@dataclass
class Sandbox:
    """The provider sandbox over HTTP: its admin API and what it received."""

    url: str
    http: httpx.AsyncClient
    state: SandboxState

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.request(method, f"{self.url}/_sandbox{path}", json=body)
        assert response.is_success, f"sandbox {method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def page(self, page_id: str, **spec: Any) -> str:
        """A Meta user managing Page ``page_id``; the Page token from the Login flow."""
        user_id = f"user-{page_id}"
        created = await self.admin(
            "POST",
            "/meta/users",
            {"user_id": user_id, "pages": [{"id": page_id, **spec}], "redirect_uri": REDIRECT},
        )
        exchanged = await self.http.get(
            f"{self.url}/{GRAPH}/oauth/access_token",
            params={
                "client_id": self.state.meta_app_id,
                "client_secret": self.state.meta_app_secret,
                "code": created["code"],
                "redirect_uri": REDIRECT,
            },
        )
        assert exchanged.status_code == 200, exchanged.text
        accounts = await self.http.get(
            f"{self.url}/{GRAPH}/me/accounts",
            headers={"authorization": f"Bearer {exchanged.json()['access_token']}"},
        )
        assert accounts.status_code == 200, accounts.text
        (row,) = [p for p in accounts.json()["data"] if p["id"] == page_id]
        return str(row["access_token"])

    async def whatsapp_number(self, number_id: str, **spec: Any) -> str:
        """A verified, registered WhatsApp number; its (system user) token."""
        token = "EAAsys" + secrets.token_hex(20)
        await self.admin(
            "POST",
            "/whatsapp/numbers",
            {
                "phone_number_id": number_id,
                "waba_id": f"waba-{number_id}",
                "token": token,
                "verified": True,
                "registered": True,
                **spec,
            },
        )
        return token

    async def sent(self, path_contains: str = "") -> list[dict[str, Any]]:
        """Every call to a send endpoint, accepted or not (``status``)."""
        data = await self.admin("GET", f"/sent?path_contains={path_contains}")
        return list(data["data"])

    async def accepted(self, path_contains: str = "") -> list[dict[str, Any]]:
        return [s for s in await self.sent(path_contains) if s["status"] == 200]

    async def fault(self, **spec: Any) -> None:
        await self.admin("POST", "/faults", spec)


@dataclass
class Stack:
    infra: Infra
    namespace: str
    sandbox: Sandbox
    clock: Clock
    store_url: str
    """Where policy keeps its state (PostgreSQL or MongoDB, by the scheme): see ``policy_stores``."""
    apps: list[Starlette] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def api(self) -> httpx.AsyncClient:
        return self.clients[0]

    def service(self, index: int = 0) -> PolicyService:
        service: PolicyService = self.apps[index].state.runtime.wiring.service
        return service

    async def publish(self, *events: Any) -> None:
        await publish_events(self.infra.kafka, self.namespace, *events)

    async def customer_message(
        self, message: MessageReceived, user: str = "admin", roles: Sequence[str] = ("admin",)
    ) -> dict[str, Any]:
        """Publish a customer message; the reply window once policy has recorded it."""
        await self.publish(message)
        return await self.window(message.conversation_id, message.provider_timestamp, user, roles)

    async def window(
        self, conversation: str, last: datetime, user: str = "admin", roles: Sequence[str] = ("admin",)
    ) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        body: Any = None
        while time.monotonic() < deadline:
            response = await self.api.get(
                f"/v1/conversations/{conversation}/reply-window",
                headers=auth(user, roles=roles),
            )
            body = response.text
            if response.status_code == 200 and response.json()["last_customer_message_at"] is not None:
                seen = datetime.fromisoformat(response.json()["last_customer_message_at"])
                if seen >= last:
                    return dict(response.json())
            await asyncio.sleep(0.1)
        raise AssertionError(f"policy did not record the message of {conversation}: {body}")

    async def reply(
        self,
        conversation: str,
        body: dict[str, Any],
        user: str,
        idempotency_key: str | None = None,
        roles: Sequence[str] = (),
        tenant: str = TENANT,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        return await (client or self.api).post(
            f"/v1/conversations/{conversation}/replies",
            json=body,
            headers={**auth(user, tenant, roles), **key(idempotency_key)},
        )

    async def check(
        self, conversation: str, body: dict[str, Any], user: str, roles: Sequence[str] = ()
    ) -> httpx.Response:
        return await self.api.post(
            f"/v1/conversations/{conversation}/replies:check", json=body, headers=auth(user, roles=roles)
        )

    async def records(
        self,
        spec: topics.TopicSpec,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 20.0,
    ) -> list[ConsumerRecord[Any, Any]]:
        return await read_records(
            self.infra.kafka,
            qualify(spec.name, self.namespace),
            until=lambda rs: until([event_of(r) for r in rs]),
            timeout=timeout,
        )

    async def events(
        self,
        spec: topics.TopicSpec,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 20.0,
    ) -> list[dict[str, Any]]:
        return [event_of(r) for r in await self.records(spec, until, timeout)]

    async def count(self, spec: topics.TopicSpec) -> int:
        return await count_records(self.infra.kafka, qualify(spec.name, self.namespace))

    async def republish(self, record: ConsumerRecord[Any, Any]) -> None:
        """Put a record back on its topic as it was: same key, bytes and headers."""
        producer = AIOKafkaProducer(bootstrap_servers=self.infra.kafka, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
        finally:
            await producer.stop()


def policy_settings(
    infra: Infra, namespace: str, store_url: str, sandbox_url: str, **extra: Any
) -> PolicySettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka,
        "store_url": store_url,
        "topic_namespace": namespace,
        "consumer_group_prefix": namespace,
        "jwt_hs256_secret": JWT,
        "encryption_keys": KEYS,
        "meta_app_id": SandboxState.meta_app_id,
        "meta_app_secret": SandboxState.meta_app_secret,
        "graph_base_url": sandbox_url,
        "x_api_base_url": sandbox_url,
        "x_client_id": SandboxState.x_client_id,
        "x_client_secret": SandboxState.x_client_secret,
        "delivery_backoff_s": 0.01,
        "window_sweep_interval_s": 0.2,
        "log_level": "warning",
    }
    values.update(extra)
    return PolicySettings(**values)


@contextlib.asynccontextmanager
async def policy_stores(store_url: str) -> AsyncIterator[tuple[PolicyStorePort, CredentialStore]]:
    """Policy's store and the credential store on ``store_url``, the adapters of its kind, their
    tables made (what a test reads or writes behind the service's back)."""
    store = await open_store(store_url)
    try:
        vault = TokenVault(parse_keys(KEYS))
        adapters: tuple[PolicyStorePort, CredentialStore] = (
            (PostgresPolicyStore(store.postgres), PostgresCredentialStore(store.postgres, vault))
            if store.kind == "postgresql"
            else (PolicyStore(store.db), MongoCredentialStore(store.db["channel_credentials"], vault))
        )
        for adapter in adapters:
            await adapter.ensure_indexes()
        yield adapters
    finally:
        await store.close()


async def store_token(store_url: str, channel_id: str, token: str) -> None:
    """What onboarding does on connect: the channel's token, encrypted, in the shared store."""
    async with policy_stores(store_url) as (_, credentials):
        await credentials.put(Credential(channel_id, token, None))


@contextlib.asynccontextmanager
async def policy_stack(
    infra: Infra,
    namespace: str,
    store_url: str,
    setup: Callable[[Sandbox], Any],
    *,
    now: datetime,
    replicas: int = 1,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """Sandbox, channels (``await setup(sandbox)`` returns [(snapshot, token or None)]) and policy."""
    state = SandboxState()
    async with serve_sandbox(state) as url, httpx.AsyncClient(timeout=10) as http:
        sandbox = Sandbox(url, http, state)
        channels = await setup(sandbox)
        for snapshot, token in channels:
            if token is not None:
                await store_token(store_url, snapshot.channel_id, token)
        await publish_events(infra.kafka, namespace, *(snapshot for snapshot, _ in channels))
        stack = Stack(infra, namespace, sandbox, Clock(now), store_url)
        async with contextlib.AsyncExitStack() as stack_of_apps:
            for _ in range(replicas):
                app = create_policy_app(
                    policy_settings(infra, namespace, store_url, url, **settings), clock=stack.clock
                )
                stack.apps.append(app)
                stack.clients.append(await stack_of_apps.enter_async_context(running(app)))
            yield stack
