"""WhatsApp templates and the business profile end to end, on the real broker and store, with the
provider sandbox served over HTTP.

Onboarding (its admin API) submits, lists and deletes templates on the channel's WABA and saves the
business profile; the sandbox reviews a template when the test says so and delivers Meta's webhook
to ingest (signed with the app secret); the normalizer turns it into a template event, onboarding
attributes it to the WABA's channels, and policy decides every template send with what it learned:
the parameter count read from the components at creation, the status from the review, the category
from Meta's category change, the quality rating (told, never refused) from Meta's quality update.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from parley_events import Provider
from parley_ingest.bootstrap import create_normalizer_app
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_onboarding.domain.whatsapp import OPERATOR_STEPS
from parley_policy.bootstrap import create_policy_app
from parley_sandbox.state import WhatsAppTemplate

from tests.conftest import Infra
from tests.support.apps import running, served_ingest
from tests.support.kafka import publish_events
from tests.support.onboarding import OTHER_TENANT, TENANT, Stack, onboarding_stack
from tests.support.policy import auth, channel, inbound, policy_settings

pytestmark = pytest.mark.integration

PHONE_ID = "106540352242922"
WABA_ID = "102290129340398"
PHONE_CUSTOMER = "15550123456"
BSUID_CUSTOMER = "US.13491208655302741918"
ORDER_UPDATE: dict[str, Any] = {
    "name": "order_update",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Hi {{1}}, order {{2}} shipped.",
            "example": {"body_text": [["Ada", "#42"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
    ],
}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def active_whatsapp_channel(stack: Stack) -> tuple[str, str]:
    """A number taken through the onboarding to an active channel; (onboarding id, channel id)."""
    token = f"wa-system-user-{secrets.token_hex(24)}"
    await stack.whatsapp_number(PHONE_ID, WABA_ID, token)
    created = await stack.call("POST", "/whatsapp/onboardings", status=201)
    details = {
        "phone_number": "+14155550123",
        "landline": False,
        "business_manager_id": "1234567890",
        "display_name": "Acme Support",
    }
    account = {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}
    for action, body in [
        ("sign-agreement", None),
        ("accept-terms", None),
        ("submit-details", details),
        ("account-created", account),
        ("approve-business-manager", None),
        ("business-verified", None),
        ("request-code", None),
    ]:
        headers = stack.operator() if action in OPERATOR_STEPS else stack.admin()
        await stack.call("POST", f"/whatsapp/onboardings/{created['id']}/{action}", body, headers=headers)
    code = (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}/last-code"))["code"]
    done = await stack.call("POST", f"/whatsapp/onboardings/{created['id']}/verify-code", {"code": code})
    assert done["step"] == "activated"
    return created["id"], done["channel_id"]


@dataclass
class Chain:
    """Onboarding, ingest, the normalizer and policy on one namespace, store and sandbox."""

    stack: Stack
    policy: httpx.AsyncClient
    onboarding_id: str
    channel_id: str

    async def decide(
        self, conversation: str, parameters: list[str], name: str = "order_update"
    ) -> httpx.Response:
        body = {"template": {"name": name, "language": "en_US", "parameters": parameters}}
        return await self.policy.post(
            f"/v1/conversations/{conversation}/replies:check",
            json=body,
            headers=auth("usr-agent", TENANT, ["admin"]),
        )

    async def refusal(self, conversation: str, parameters: list[str]) -> list[str]:
        """The codes policy refuses the send with ([] when it would send it)."""
        answer = await self.decide(conversation, parameters)
        assert answer.status_code == 200, answer.text
        decision = answer.json()
        assert decision["approved"] is (not decision["reasons"]), decision
        return [r["code"] for r in decision["reasons"]]

    async def review(self, template_id: str, **change: Any) -> dict[str, Any]:
        # Meta's delivery names its second (entry.time), and the same review in the same second is a
        # redelivery Parley drops: each review here gets its own second, as Meta's (minutes apart) do
        await self.stack.sandbox_admin("POST", "/clock", {"advance_s": 1.0})
        reviewed: dict[str, Any] = await self.stack.sandbox_admin(
            "POST", f"/whatsapp/templates/{template_id}", change
        )
        assert reviewed["delivered"] and all(status == 200 for status in reviewed["delivered"]), reviewed
        return reviewed


@pytest.fixture
async def chain(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Chain]:
    async with onboarding_stack(infra, namespace, store_url) as stack:
        ingest = IngestSettings(
            kafka_bootstrap_servers=infra.kafka,
            topic_namespace=namespace,
            meta_app_secrets=stack.sandbox.meta_app_secret,
            meta_verify_token="verify-me",
        )
        normalizer = NormalizerSettings(
            kafka_bootstrap_servers=infra.kafka, topic_namespace=namespace, consumer_group_prefix=namespace
        )
        policy = create_policy_app(policy_settings(infra, namespace, store_url, stack.sandbox_url))
        async with (
            running(create_normalizer_app(normalizer)),
            served_ingest(ingest) as x_webhook_url,
            running(policy) as policy_api,
        ):
            meta_webhook_url = x_webhook_url.removesuffix("/x") + "/meta"
            await stack.sandbox_admin("POST", "/meta/webhook", {"url": meta_webhook_url})
            onboarding_id, channel_id = await active_whatsapp_channel(stack)
            snapshot = channel(channel_id, Provider.WHATSAPP, PHONE_ID, tenant=TENANT)
            now = datetime.now(UTC)
            await publish_events(
                infra.kafka,
                namespace,
                inbound(snapshot, "conv-phone", PHONE_CUSTOMER, now),
                inbound(snapshot, "conv-bsuid", BSUID_CUSTOMER, now),
            )
            chain = Chain(stack, policy_api, onboarding_id, channel_id)

            async def policy_knows_both() -> bool:
                answers = [await chain.decide(c, []) for c in ("conv-phone", "conv-bsuid")]
                return all(a.status_code != 404 for a in answers)

            await eventually(policy_knows_both, "policy to see both conversations")
            yield chain


async def test_a_template_is_created_reviewed_by_webhook_checked_by_policy_and_deleted(chain: Chain) -> None:
    stack = chain.stack
    path = f"/channels/{chain.channel_id}/templates"

    created = await stack.call("POST", path, ORDER_UPDATE, status=201)

    assert (created["name"], created["status"], created["category"], created["parameter_count"]) == (
        "order_update",
        "PENDING",
        "UTILITY",
        2,
    )
    [listed] = await stack.call("GET", path)
    assert (listed["id"], listed["status"]) == (created["id"], "PENDING")
    onboarding = await stack.call("GET", f"/whatsapp/onboardings/{chain.onboarding_id}")
    assert onboarding["step"] == "templates_submitted"

    def refused_as(conversation: str, parameters: list[str], *codes: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await chain.refusal(conversation, parameters) == list(codes)

        return check

    # pending review: not sendable yet
    await eventually(
        refused_as("conv-phone", ["Ada", "#42"], "TEMPLATE_NOT_APPROVED"), "policy to know the template"
    )

    # Meta approves: the webhook travels ingest -> normalizer -> onboarding -> policy
    await chain.review(created["id"], status="APPROVED")
    await eventually(refused_as("conv-phone", ["Ada", "#42"]), "the approval to reach policy")
    # Meta's webhook carries no parameter count: policy kept the one read from the components
    assert await chain.refusal("conv-phone", ["Ada"]) == ["TEMPLATE_PARAMETERS"]
    assert await chain.refusal("conv-phone", ["Ada", "#42", "extra"]) == ["TEMPLATE_PARAMETERS"]
    assert await chain.refusal("conv-bsuid", ["Ada", "#42"]) == []  # a utility template goes to a BSUID
    [listed] = await stack.call("GET", path)
    assert listed["status"] == "APPROVED"

    # Meta makes it an authentication template: a customer known only by BSUID cannot get it
    await chain.review(created["id"], category="AUTHENTICATION")
    await eventually(
        refused_as("conv-bsuid", ["Ada", "#42"], "TEMPLATE_NEEDS_PHONE"), "the category to reach policy"
    )
    assert await chain.refusal("conv-phone", ["Ada", "#42"]) == []

    # Meta rates it RED: still sent (Meta's rule), the decision tells the rating
    await chain.review(created["id"], quality_score="RED")

    async def rated_red() -> bool:
        decision = (await chain.decide("conv-phone", ["Ada", "#42"])).json()
        return bool(decision["approved"] and decision["template_quality"] == "RED")

    await eventually(rated_red, "the quality rating to reach policy")

    # Meta pauses it: refused from the next send
    await chain.review(created["id"], status="PAUSED")
    await eventually(refused_as("conv-phone", ["Ada", "#42"], "TEMPLATE_NOT_APPROVED"), "the pause")
    await chain.review(created["id"], status="APPROVED")
    await eventually(refused_as("conv-phone", ["Ada", "#42"]), "the approval again")

    # deleted through Parley: gone at Meta, refused by policy
    deleted = await stack.call("DELETE", f"{path}/order_update")
    assert [t["id"] for t in deleted] == [created["id"]]
    assert await stack.call("GET", path) == []
    assert stack.sandbox.whatsapp_templates == {}
    await eventually(
        refused_as("conv-phone", ["Ada", "#42"], "TEMPLATE_NOT_APPROVED"), "the deletion to reach policy"
    )
    missing = await stack.call("DELETE", f"{path}/order_update", status=404)
    assert missing["code"] == "TEMPLATE_NOT_FOUND"


async def test_templates_are_refused_before_meta_and_only_admins_manage_them(chain: Chain) -> None:
    stack = chain.stack
    path = f"/channels/{chain.channel_id}/templates"
    unnamed = await stack.call("POST", path, {**ORDER_UPDATE, "name": "Order Update"}, status=422)
    assert (unnamed["code"], unnamed["field"]) == ("INVALID_TEMPLATE", "name")
    no_example = {**ORDER_UPDATE, "components": [{"type": "BODY", "text": "Hi {{1}}"}]}
    assert (await stack.call("POST", path, no_example, status=422))["field"] == "components"
    assert stack.sandbox.whatsapp_templates == {}
    forbidden = await stack.call("POST", path, ORDER_UPDATE, headers=stack.agent(), status=403)
    assert forbidden["code"] == "ADMIN_REQUIRED"
    await stack.call("GET", path, headers=stack.agent(), status=403)
    elsewhere = stack.admin(tenant=OTHER_TENANT)
    assert (await stack.call("POST", path, ORDER_UPDATE, headers=elsewhere, status=404))[
        "code"
    ] == "CHANNEL_NOT_FOUND"
    await stack.call(
        "PATCH", f"/channels/{chain.channel_id}/profile", {"about": "x"}, headers=elsewhere, status=404
    )
    assert stack.sandbox.whatsapp_templates == {}

    await stack.call("POST", path, ORDER_UPDATE, status=201)
    duplicate = await stack.call("POST", path, ORDER_UPDATE, status=422)
    assert (duplicate["code"], duplicate["provider_subcode"]) == ("PROVIDER_INVALID_REQUEST", 2388024)


async def test_the_business_profile_is_saved_with_a_picture_and_completes_the_profile_step(
    chain: Chain,
) -> None:
    stack = chain.stack
    path = f"/channels/{chain.channel_id}/profile"
    picture = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(2048)
    typed = await stack.call(
        "POST", f"/whatsapp/onboardings/{chain.onboarding_id}/profile-completed", status=409
    )
    assert typed["code"] == "STEP_BY_API"

    saved = await stack.call(
        "PATCH",
        path,
        {
            "about": "Succulents, delivered",
            "description": "Plants for people who forget to water them.",
            "email": "hello@acme.example",
            "websites": ["https://acme.example"],
            "vertical": "RETAIL",
            "picture": {"content_type": "image/png", "data_base64": base64.b64encode(picture).decode()},
        },
    )

    assert saved["about"] == "Succulents, delivered"
    assert (saved["email"], saved["websites"], saved["vertical"]) == (
        "hello@acme.example",
        ["https://acme.example"],
        "RETAIL",
    )
    assert saved["profile_picture_url"].startswith("https://pps.whatsapp.net/")
    [upload] = stack.sandbox.uploads.values()
    assert (upload.data, upload.file_type) == (picture, "image/png")
    assert await stack.call("GET", path) == saved
    onboarding = await stack.call("GET", f"/whatsapp/onboardings/{chain.onboarding_id}")
    assert onboarding["step"] == "profile_completed"
    assert onboarding["history"][-1]["by"] == "usr-admin"

    too_long = await stack.call("PATCH", path, {"about": "x" * 140}, status=422)
    assert too_long["code"] == "VALIDATION_ERROR"
    bad_vertical = await stack.call("PATCH", path, {"vertical": "SPACESHIPS"}, status=422)
    assert (bad_vertical["code"], bad_vertical["field"]) == ("INVALID_PROFILE", "vertical")
    gif = {"content_type": "image/gif", "data_base64": base64.b64encode(b"GIF89a").decode()}
    assert (await stack.call("PATCH", path, {"picture": gif}, status=422))["field"] == "picture"
    await stack.call("PATCH", path, {"about": "Hi"}, headers=stack.agent(), status=403)


async def test_a_template_made_in_whatsapp_manager_gets_its_count_checked_after_a_sync(chain: Chain) -> None:
    stack = chain.stack
    made_elsewhere = WhatsAppTemplate(
        id="8000000000000009",
        waba_id=WABA_ID,
        name="order_update",
        language="en_US",
        category="UTILITY",
        components=ORDER_UPDATE["components"],
        status="APPROVED",
    )
    stack.sandbox.whatsapp_templates[made_elsewhere.id] = made_elsewhere
    # Meta's review reaches policy by webhook, without a count: only the status is checked
    await chain.review(made_elsewhere.id, status="APPROVED")
    await eventually(
        lambda: _refusal_is(chain, "conv-phone", ["Ada"], []), "the review to reach policy without a count"
    )

    synced = await stack.call("POST", f"/channels/{chain.channel_id}/templates:sync")

    assert [(t["id"], t["parameter_count"]) for t in synced] == [(made_elsewhere.id, 2)]
    await eventually(
        lambda: _refusal_is(chain, "conv-phone", ["Ada"], ["TEMPLATE_PARAMETERS"]),
        "the count to reach policy",
    )
    assert await chain.refusal("conv-phone", ["Ada", "#42"]) == []
    # templates submitted in WhatsApp Manager count for the onboarding as Parley's would
    onboarding = await stack.call("GET", f"/whatsapp/onboardings/{chain.onboarding_id}")
    assert onboarding["step"] == "templates_submitted"


async def test_a_sync_of_a_waba_without_templates_leaves_the_onboarding_where_it_was(chain: Chain) -> None:
    stack = chain.stack
    assert await stack.call("POST", f"/channels/{chain.channel_id}/templates:sync") == []
    onboarding = await stack.call("GET", f"/whatsapp/onboardings/{chain.onboarding_id}")
    assert onboarding["step"] == "activated"


async def _refusal_is(chain: Chain, conversation: str, parameters: list[str], codes: list[str]) -> bool:
    return await chain.refusal(conversation, parameters) == codes
