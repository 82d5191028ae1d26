"""Bad input at every HTTP API, driven by the APIs' own OpenAPI documents (schemathesis).

For routing, policy and onboarding the real app runs against the real broker and PostgreSQL (and the
provider sandbox for policy and onboarding) with a few objects in place: a channel, a
conversation, a team, a WhatsApp onboarding. The test reads the document the app serves at
``/v1/openapi.json`` and

- sends every operation a request without a token and one with a forged token: both get 401
  ``UNAUTHORIZED`` (no operation of these documents is public; /healthz, /readyz and /metrics
  are served outside them);
- lets schemathesis generate valid and invalid requests for every operation (with an admin's
  token, against generated ids and against the objects that exist) and checks every answer: no
  5xx and no unhandled exception; status code, content type, headers and body as documented;
  invalid input refused with a 4xx.

Hypothesis is derandomized, so every run sends the same requests. Ingest's webhook app is plain
Starlette without an OpenAPI document (the providers define its input):
tests/integration/test_ingest_properties.py covers its endpoints with property tests instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from parley_events import ChannelRole, Provider, topics
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings
from parley_shared.auth import issue_dev_token

from tests.conftest import Infra
from tests.support import policy
from tests.support.apps import running
from tests.support.kafka import eventually, publish_events
from tests.support.onboarding import ADMIN, REDIRECT, TENANT, onboarding_stack
from tests.support.openapi import FuzzRun, assert_auth_enforced, fuzz

pytestmark = [
    pytest.mark.integration,
    # schemathesis' negative mode draws from `random` inside its strategies; Hypothesis seeds that
    # module for every example (derandomize), so runs stay deterministic, but it warns about it
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

MAX_EXAMPLES = 25
"""Per operation, mode and id variant; fewer than 20 missed the unsendable public reply."""
FORGED = {"authorization": f"Bearer {issue_dev_token('f' * 32, 'usr-admin', policy.TENANT, ['admin'])}"}
ROUTING_JWT = "schemathesis-routing-secret-of-32-bytes"
PAGE = "104512345678901"
PSID = "2400000000000001"
REPLIES = "POST /conversations/{conversation_id}/replies"
WHATSAPP_ACTIONS = [
    "sign-agreement",
    "accept-terms",
    "submit-details",
    "account-created",
    "approve-business-manager",
    "business-verified",
    "request-code",
    "verify-code",
    "request-badge",
    "badge-decided",
]


async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/v1/openapi.json")
    assert response.status_code == 200, response.text
    spec: dict[str, Any] = response.json()
    return spec


def assert_clean(run: FuzzRun, operations: int) -> None:
    assert not run.failures, "\n\n".join(run.failures)
    assert len(run.calls) == operations, run.calls


# --------------------------------------------------------------------------- routing


@pytest.fixture
async def routing(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Any]:
    """Routing with one channel and one conversation on it, on PostgreSQL (a schema of its own)."""
    snapshot = policy.channel("ch-1", Provider.MESSENGER, PAGE, all_users_role=ChannelRole.CONTRIBUTOR)
    settings = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=ROUTING_JWT,
        log_level="warning",
    )
    await publish_events(infra.kafka, namespace, snapshot)
    async with running(create_routing_app(settings)) as api:
        await publish_events(
            infra.kafka, namespace, policy.inbound(snapshot, "conv-1", PSID, datetime.now(UTC))
        )
        admin = routing_admin()

        async def conversation_exists() -> bool:
            return (await api.get("/v1/conversations/conv-1", headers=admin)).status_code == 200

        await eventually(conversation_exists)
        yield api


def routing_admin() -> dict[str, str]:
    token = issue_dev_token(ROUTING_JWT, "usr-admin", policy.TENANT, ["admin"])
    return {"authorization": f"Bearer {token}"}


async def test_routing_api_refuses_bad_input_and_answers_as_documented(routing: httpx.AsyncClient) -> None:
    spec = await document(routing)
    ids = {"conversation_id": "conv-1"}
    # ten operations: the nine of the agent API and the open of one conversation (read on open)
    assert len(await assert_auth_enforced(routing, spec, ids, FORGED)) == 10
    run = await fuzz(routing, spec, routing_admin(), ids, max_examples=MAX_EXAMPLES)
    assert_clean(run, 10)


# --------------------------------------------------------------------------- policy


async def test_policy_api_refuses_bad_input_and_answers_as_documented(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    messenger = policy.channel("ch-m", Provider.MESSENGER, PAGE)

    async def setup(sandbox: policy.Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    async with policy.policy_stack(
        infra, namespace, store_url, setup, now=t0 + timedelta(minutes=5)
    ) as stack:
        await stack.customer_message(policy.inbound(messenger, "conv-1", PSID, t0))
        spec = await document(stack.api)
        ids = {"conversation_id": "conv-1"}
        # replies, replies:check, reply-window, thread-control:take and :release, read
        assert len(await assert_auth_enforced(stack.api, spec, ids, FORGED)) == 6
        admin = policy.auth("usr-admin", roles=["admin"])
        run = await fuzz(stack.api, spec, admin, ids, max_examples=MAX_EXAMPLES)
        assert_clean(run, 6)

        # an approved reply must be sendable: each one is sent or fails, none is dead-lettered
        approved = {r["decision_id"] for r in run.accepted.get(REPLIES, [])}
        assert approved, "no generated reply was approved: the fuzzing never got that far"

        def settled(events: list[dict[str, Any]]) -> bool:
            return approved <= {e["reply_id"] for e in events if e["type"] in (policy.SENT, policy.FAILED)}

        try:
            await stack.events(topics.REPLIES, settled)
        except AssertionError as exc:
            raise AssertionError(
                f"approved, then neither sent nor failed (dead-lettered?): {approved}"
            ) from exc
        assert await stack.count(topics.REPLIES.dlq()) == 0


# --------------------------------------------------------------------------- onboarding


async def test_onboarding_api_refuses_bad_input_and_answers_as_documented(
    infra: Infra, namespace: str, store_url: str
) -> None:
    async with onboarding_stack(infra, namespace, store_url) as stack:
        code = await stack.meta_user("meta-user-1", [{"id": PAGE, "name": "Acme"}])
        started = await stack.call("POST", "/connections/meta", {"code": code, "redirect_uri": REDIRECT})
        [channel] = await stack.activate(started["connection_id"], [PAGE])
        team = await stack.call("POST", "/teams", {"name": "Support"}, status=201)
        await stack.call("PUT", f"/teams/{team['id']}/members/usr-ana")
        onboarding = await stack.call("POST", "/whatsapp/onboardings", status=201)
        ids = {
            "channel_id": channel["id"],
            "connection_id": started["connection_id"],
            "team_id": team["id"],
            "user_id": "usr-ana",
            "onboarding_id": onboarding["id"],
            "action": "sign-agreement",
            "name": "order_update",
        }
        spec = await document(stack.api)
        assert len(await assert_auth_enforced(stack.api, spec, ids, FORGED)) == 29
        # every step of the onboarding, not only the first: the path's `action` is free text
        known = {**ids, "action": WHATSAPP_ACTIONS}
        run = await fuzz(stack.api, spec, stack.admin(ADMIN, TENANT), known, max_examples=MAX_EXAMPLES)
    assert_clean(run, 29)
