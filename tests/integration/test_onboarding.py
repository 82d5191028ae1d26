"""Onboarding against the real broker and store, with the provider sandbox served over HTTP.

Every flow goes through the admin API (``/v1``); outcomes are checked in API answers, in what
onboarding published on ``parley.channels.v1``, ``parley.channel-events.v1`` and
``parley.teams.v1`` in the test's namespace, and in the sandbox's state (page subscriptions,
Account Activity subscriptions, WhatsApp codes and the requests it received).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from parley_events import NumberThroughputChanged, Provider, topics
from parley_onboarding.adapters.stores import SEALED_FIELDS
from parley_onboarding.domain.channels import channel_id_for
from parley_onboarding.domain.whatsapp import OPERATOR_STEPS
from parley_onboarding.entrypoints.cli import rotate_credentials
from parley_providers.meta.connect import DEFAULT_PAGE_FIELDS
from parley_sandbox import DEFAULT_META_PERMISSIONS
from parley_shared.auth import issue_dev_token
from parley_shared.vault import TokenVault, parse_keys
from pydantic import SecretStr

from tests.conftest import Infra
from tests.support.kafka import eventually, publish_events
from tests.support.onboarding import (
    ADMIN,
    OPERATOR,
    OTHER_TENANT,
    REDIRECT,
    TENANT,
    X_REDIRECT,
    X_WEBHOOK,
    Stack,
    of_type,
    onboarding_stack,
)
from tests.support.openapi import assert_auth_enforced, request_for

pytestmark = pytest.mark.integration

PAGE_A = "104512345678901"
PAGE_B = "104512345678902"
PAGE_C = "104512345678903"
PAGE_D = "104512345678904"
IG_A = "17841400000000001"
IG_ELSEWHERE = "17841400000000009"
PHONE_ID = "106540352242922"
WABA_ID = "102290129340398"
DETAILS: dict[str, Any] = {
    "phone_number": "+14155550123",
    "landline": False,
    "business_manager_id": "1234567890",
    "display_name": "Acme Support",
}
# every WhatsApp step completed: (step, who acts next, the usual wait)
STEPS = [
    ("agreement_signed", "customer", None),
    ("terms_accepted", "customer", None),
    ("details_submitted", "platform", None),
    ("account_created", "customer", None),
    ("business_manager_request_approved", "meta", "24-48 hours"),
    ("business_verified", "platform", None),
    ("code_sent", "customer", "10 minutes"),
    ("phone_verified", "platform", None),
    ("activated", "customer", None),
    ("profile_completed", "customer", None),
    ("badge_requested", "meta", "24-48 hours"),
    ("badge_decided", "customer", None),
    ("templates_submitted", "meta", "24-48 hours"),
]

CONNECTED = "parley.channel.connected.v1"
SNAPSHOT = "parley.channel.snapshot.v1"
SETTINGS_CHANGED = "parley.channel.settings_changed.v1"
TOKEN_EXPIRING = "parley.channel.token_expiring.v1"
REAUTH = "parley.channel.reauth_required.v1"
RECONNECTED = "parley.channel.reconnected.v1"
SUBSCRIPTION_REPAIRED = "parley.channel.subscription_repaired.v1"
SUBSCRIPTION_LOST = "parley.channel.subscription_lost.v1"
WA_STEP = "parley.whatsapp.step_changed.v1"
TEAM = "parley.team.snapshot.v1"


def acme_pages() -> list[dict[str, Any]]:
    return [
        {"id": PAGE_A, "name": "Acme", "instagram": {"id": IG_A, "username": "acme"}},
        {"id": PAGE_B, "name": "Acme Outlet"},
    ]


@pytest.fixture
async def stack(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    """The running stack, on PostgreSQL (a schema of its own)."""
    async with onboarding_stack(infra, namespace, store_url) as s:
        yield s


# --------------------------------------------------------------------------- Facebook and Instagram


async def test_facebook_pages_and_instagram_connect_end_to_end(stack: Stack) -> None:
    code = await stack.meta_user("meta-user-1", acme_pages())
    started = await stack.start_meta(code)
    assert started["missing_permissions"] == []
    assert started["missing_instagram_permissions"] == []
    assert {p["page_id"]: (p["name"], p["connected"]) for p in started["pages"]} == {
        PAGE_A: ("Acme", False),
        PAGE_B: ("Acme Outlet", False),
    }
    by_page = {p["page_id"]: p for p in started["pages"]}
    assert by_page[PAGE_A]["instagram"] == {"id": IG_A, "username": "acme", "connected": False}
    assert by_page[PAGE_B]["instagram"] is None

    activated = await stack.activate(started["connection_id"], [PAGE_A, PAGE_B], [IG_A])
    channels = {(c["provider"], c["account_id"]): c for c in activated}
    assert set(channels) == {("messenger", PAGE_A), ("messenger", PAGE_B), ("instagram", IG_A)}
    for (provider, account), channel in channels.items():
        assert channel["id"] == channel_id_for(TENANT, Provider(provider), account)
        assert channel["status"] == "active"
        assert channel["revision"] == 1
    assert channels[("messenger", PAGE_A)]["display_name"] == "Acme"
    assert channels[("instagram", IG_A)]["display_name"] == "acme"
    assert channels[("instagram", IG_A)]["business_account_id"] == PAGE_A
    listed = await stack.call("GET", "/channels")
    assert {c["id"] for c in listed} == {c["id"] for c in activated}

    # the app is subscribed to both Pages' webhooks with the configured fields
    for page_id in (PAGE_A, PAGE_B):
        page = await stack.sandbox_admin("GET", f"/meta/pages/{page_id}")
        assert page["subscribed_fields"] == list(DEFAULT_PAGE_FIELDS)

    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    assert len(snapshots) == 3
    for snapshot in snapshots:
        channel = next(c for c in activated if c["id"] == snapshot["channel_id"])
        assert snapshot["_key"] == channel["id"]
        assert snapshot["tenant_id"] == TENANT
        assert (snapshot["provider"], snapshot["account_id"]) == (channel["provider"], channel["account_id"])
        assert snapshot["business_account_id"] == channel["business_account_id"]
        assert snapshot["status"] == "active"
        assert snapshot["revision"] == 1
    connected = of_type(await stack.events(topics.CHANNEL_EVENTS), CONNECTED)
    assert {(e["_key"], e["channel_id"], e["account_id"], e["actor_id"]) for e in connected} == {
        (c["id"], c["id"], c["account_id"], ADMIN) for c in activated
    }

    # a setting changed meanwhile, then a further Page added through a second connection
    page_a = channels[("messenger", PAGE_A)]
    patched = await stack.call("PATCH", f"/channels/{page_a['id']}/settings", {"display_name": "Acme Care"})
    before = {c["id"]: c for c in await stack.call("GET", "/channels")}
    code = await stack.meta_user("meta-user-1", [*acme_pages(), {"id": PAGE_C, "name": "Acme Labs"}])
    again = await stack.start_meta(code)
    seen = {p["page_id"]: p for p in again["pages"]}
    assert {k: p["connected"] for k, p in seen.items()} == {PAGE_A: True, PAGE_B: True, PAGE_C: False}
    assert seen[PAGE_A]["instagram"]["connected"] is True
    [added] = await stack.activate(again["connection_id"], [PAGE_C])
    assert (added["account_id"], added["revision"], added["status"]) == (PAGE_C, 1, "active")
    after = {c["id"]: c for c in await stack.call("GET", "/channels")}
    assert set(after) == {*before, added["id"]}
    for channel_id, channel in before.items():
        assert after[channel_id] == channel
    assert after[page_a["id"]]["display_name"] == "Acme Care"
    assert after[page_a["id"]]["revision"] == patched["revision"] == 2
    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    assert len(snapshots) == 5  # three connects, the rename, the new Page
    assert max(s["revision"] for s in snapshots if s["channel_id"] == page_a["id"]) == 2
    assert not of_type(await stack.events(topics.CHANNEL_EVENTS), RECONNECTED)


async def test_meta_connect_names_missing_permissions_and_refuses_what_was_not_granted(stack: Stack) -> None:
    granted = [p for p in DEFAULT_META_PERMISSIONS if p != "pages_messaging"]
    code = await stack.meta_user("meta-user-2", acme_pages(), granted=granted, declined=["pages_messaging"])
    started = await stack.start_meta(code)
    assert started["missing_permissions"] == ["pages_messaging"]
    assert started["missing_instagram_permissions"] == []
    refused = await stack.activate(started["connection_id"], [PAGE_A], status=422)
    assert refused["code"] == "PERMISSIONS_MISSING"
    assert refused["missing"] == ["pages_messaging"]
    assert "pages_messaging" in refused["message"]

    # an Instagram profile linked to a Page of somebody else's, and that Page itself
    await stack.meta_user(
        "meta-user-3",
        [{"id": PAGE_C, "name": "Globex", "instagram": {"id": IG_ELSEWHERE, "username": "globex"}}],
    )
    code = await stack.meta_user(
        "meta-user-2", [*acme_pages(), {"id": PAGE_D, "name": "Acme Ads", "tasks": ["ANALYZE", "MESSAGING"]}]
    )
    started = await stack.start_meta(code)
    assert started["missing_permissions"] == []
    unlinked = await stack.activate(started["connection_id"], [], [IG_ELSEWHERE], status=422)
    assert (unlinked["code"], unlinked["field"]) == ("INSTAGRAM_NOT_LINKED", "instagram_account_ids")
    not_granted = await stack.activate(started["connection_id"], [PAGE_C], status=422)
    assert (not_granted["code"], not_granted["field"]) == ("PAGE_NOT_GRANTED", "page_ids")
    weak = await stack.activate(started["connection_id"], [PAGE_D], status=422)
    assert weak["code"] == "PAGE_ACCESS_INSUFFICIENT"
    # a refused request activates nothing, not even its valid part
    mixed = await stack.activate(started["connection_id"], [PAGE_A], [IG_ELSEWHERE], status=422)
    assert mixed["code"] == "INSTAGRAM_NOT_LINKED"

    assert await stack.call("GET", "/channels") == []
    for page_id in (PAGE_A, PAGE_C, PAGE_D):
        assert (await stack.sandbox_admin("GET", f"/meta/pages/{page_id}"))["subscribed_fields"] == []
    assert await stack.events(topics.CHANNELS) == []
    assert await stack.events(topics.CHANNEL_EVENTS) == []
    # another tenant cannot use this tenant's connection
    other = await stack.activate(
        started["connection_id"], [PAGE_A], status=404, headers=stack.admin("usr-other", OTHER_TENANT)
    )
    assert other["code"] == "CONNECTION_NOT_FOUND"
    # a started connection lasts an hour
    stack.clock.advance(seconds=stack.settings.connection_ttl_s + 1)
    expired = await stack.activate(started["connection_id"], [PAGE_A], status=422)
    assert expired["code"] == "CONNECTION_EXPIRED"
    assert await stack.call("GET", "/channels") == []


async def test_a_page_moderator_cannot_activate_the_page_or_its_instagram_profile(stack: Stack) -> None:
    """Security #13 finding 14b: MODERATE alone is not enough to run a Page (or its profile) as a channel."""
    moderated = {
        "id": PAGE_D,
        "name": "Acme Forum",
        "tasks": ["ANALYZE", "MODERATE"],
        "instagram": {"id": IG_A, "username": "acme"},
    }
    code = await stack.meta_user("meta-moderator", [moderated, {"id": PAGE_B, "name": "Acme Outlet"}])
    started = await stack.start_meta(code)
    for pages, profiles, field in (([PAGE_D], [], "page_ids"), ([], [IG_A], "instagram_account_ids")):
        refused = await stack.activate(started["connection_id"], pages, profiles, status=422)
        assert (refused["code"], refused["field"], refused["missing_tasks"]) == (
            "PAGE_ACCESS_INSUFFICIENT",
            field,
            ["MESSAGING"],
        )
        assert "MESSAGING and MODERATE" in refused["message"]
    assert await stack.call("GET", "/channels") == []
    assert (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE_D}"))["subscribed_fields"] == []
    # the same admin's Page with every task is accepted
    [channel] = await stack.activate(started["connection_id"], [PAGE_B])
    assert channel["account_id"] == PAGE_B


# --------------------------------------------------------------------------- X


async def test_x_connect_makes_one_channel_per_handle(stack: Stack) -> None:
    handles = {"1500000000000000001": "acme", "1500000000000000002": "acme_help"}
    connected = {}
    for user_id, username in handles.items():
        code, verifier = await stack.x_code(user_id, username)
        body = {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
        connected[user_id] = await stack.call("POST", "/connections/x", body)
    for user_id, channel in connected.items():
        assert channel["id"] == channel_id_for(TENANT, Provider.X, user_id)
        assert (channel["provider"], channel["account_id"]) == ("x", user_id)
        assert channel["display_name"] == f"@{handles[user_id]}"
        assert channel["status"] == "active"
        assert channel["token_expires_at"] is not None
    assert len({c["id"] for c in connected.values()}) == 2
    webhook = await stack.sandbox_admin("GET", f"/x/webhooks/{X_WEBHOOK}")
    assert sorted(webhook["subscriptions"]) == sorted(handles)

    # the same handle authorized again is the same channel; a code with the wrong verifier is refused
    code, verifier = await stack.x_code("1500000000000000001", "acme")
    again = await stack.call(
        "POST", "/connections/x", {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    )
    assert (again["id"], again["revision"]) == (connected["1500000000000000001"]["id"], 2)
    code, _ = await stack.x_code("1500000000000000003", "acme_jobs")
    refused = await stack.call(
        "POST",
        "/connections/x",
        {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": "not-the-verifier"},
        status=422,
    )
    assert refused["code"] == "PROVIDER_INVALID_REQUEST"
    assert {c["account_id"] for c in await stack.call("GET", "/channels")} == set(handles)
    assert sorted((await stack.sandbox_admin("GET", f"/x/webhooks/{X_WEBHOOK}"))["subscriptions"]) == sorted(
        handles
    )

    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    assert {(s["_key"], s["provider"], s["account_id"], s["revision"]) for s in snapshots} == {
        (connected[u]["id"], "x", u, 1) for u in handles
    } | {(again["id"], "x", "1500000000000000001", 2)}
    events = await stack.events(topics.CHANNEL_EVENTS)
    assert {e["account_id"] for e in of_type(events, CONNECTED)} == set(handles)
    assert [e["channel_id"] for e in of_type(events, RECONNECTED)] == [again["id"]]


# --------------------------------------------------------------------------- WhatsApp


async def whatsapp_number(stack: Stack) -> str:
    token = f"wa-system-user-{secrets.token_hex(24)}"
    await stack.whatsapp_number(PHONE_ID, WABA_ID, token)
    return token


async def last_code(stack: Stack) -> str:
    return str((await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}/last-code"))["code"])


class WhatsApp:
    """One onboarding driven through the API."""

    def __init__(self, stack: Stack, onboarding_id: str) -> None:
        self.stack = stack
        self.id = onboarding_id

    @classmethod
    async def start(cls, stack: Stack) -> WhatsApp:
        created = await stack.call("POST", "/whatsapp/onboardings", status=201)
        assert (created["step"], created["next_actor"], created["history"]) == ("started", "customer", [])
        return cls(stack, created["id"])

    async def step(
        self,
        action: str,
        body: dict[str, Any] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One step, as the platform operator for the operator's steps and the admin otherwise."""
        if headers is None:
            headers = self.stack.operator() if action in OPERATOR_STEPS else self.stack.admin()
        return await self.stack.call(
            "POST", f"/whatsapp/onboardings/{self.id}/{action}", body, status=status, headers=headers
        )

    async def get(self) -> Any:
        return await self.stack.call("GET", f"/whatsapp/onboardings/{self.id}")

    async def to_business_verified(self, token: str, **details: Any) -> None:
        await self.step("sign-agreement")
        await self.step("accept-terms")
        await self.step("submit-details", {**DETAILS, **details})
        await self.step(
            "account-created", {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}
        )
        await self.step("approve-business-manager")
        await self.step("business-verified")


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_whatsapp_onboarding_through_every_step(stack: Stack) -> None:
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    answers = []
    for action, body in [
        ("sign-agreement", None),
        ("accept-terms", None),
        ("submit-details", DETAILS),
        ("account-created", {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}),
        ("approve-business-manager", None),
        ("business-verified", None),
        ("request-code", None),
    ]:
        answers.append(await wa.step(action, body))
    verified = await wa.step("verify-code", {"code": await last_code(stack)})
    answers.append(verified)
    channel_id = verified["channel_id"]
    assert channel_id == channel_id_for(TENANT, Provider.WHATSAPP, PHONE_ID)
    # the profile and templates steps are reached by the provider accepting them, not typed in
    for typed in ("profile-completed", "submit-templates"):
        assert (await wa.step(typed, status=409))["code"] == "STEP_BY_API"
    await stack.call("PATCH", f"/channels/{channel_id}/profile", {"about": "Acme answers here"})
    answers.append(await wa.get())
    for action, body in [("request-badge", None), ("badge-decided", {"approved": True})]:
        answers.append(await wa.step(action, body))
    template = {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Hi {{1}}", "example": {"body_text": [["Ada"]]}}],
    }
    await stack.call("POST", f"/channels/{channel_id}/templates", template, status=201)
    answers.append(await wa.get())
    assert [(a["step"], a["next_actor"]) for a in answers] == [
        (step, actor) for step, actor, _ in STEPS if step != "phone_verified"
    ]

    final = await wa.get()
    assert [(h["step"], h["next_actor"], h["expected_wait"]) for h in final["history"]] == list(STEPS)
    assert [h["by"] for h in final["history"]] == [
        OPERATOR if step in ("account_created", "business_verified", "badge_decided") else ADMIN
        for step, _, _ in STEPS
    ]
    assert (final["phone_number"], final["display_name"], final["landline"]) == (
        "+14155550123",
        "Acme Support",
        False,
    )
    channel = await stack.call("GET", f"/channels/{channel_id}")
    assert (channel["provider"], channel["account_id"], channel["business_account_id"]) == (
        "whatsapp",
        PHONE_ID,
        WABA_ID,
    )
    assert (channel["status"], channel["display_name"]) == ("active", "Acme Support")
    assert (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}"))["verified"] is True
    [requested] = stack.recorder.matching(f"/{PHONE_ID}/request_code")
    assert requested.json()["code_method"] == "SMS"

    events = await stack.events(topics.CHANNEL_EVENTS)
    steps = sorted(
        of_type(events, WA_STEP, onboarding_id=wa.id), key=lambda e: int(e["event_id"].rsplit("_", 1)[1])
    )
    assert [(e["step"], e["next_actor"], e["expected_wait"]) for e in steps] == list(STEPS)
    assert all(e["tenant_id"] == TENANT for e in steps)
    # once the channel exists the steps name it (and are keyed by it)
    activated_at = [e["step"] for e in steps].index("activated")
    assert all(e["channel_id"] is None and e["_key"] == wa.id for e in steps[:activated_at])
    assert all(e["channel_id"] == channel_id == e["_key"] for e in steps[activated_at:])
    [connected] = of_type(events, CONNECTED, channel_id=channel_id)
    assert (connected["provider"], connected["account_id"]) == ("whatsapp", PHONE_ID)
    [snapshot] = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    assert (snapshot["_key"], snapshot["provider"], snapshot["status"], snapshot["business_account_id"]) == (
        channel_id,
        "whatsapp",
        "active",
        WABA_ID,
    )


async def test_an_activated_whatsapp_number_is_registered_for_messaging(stack: Stack) -> None:
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    await wa.to_business_verified(token)
    await wa.step("request-code")
    assert (await wa.step("verify-code", {"code": await last_code(stack)}))["step"] == "activated"
    assert (await stack.sandbox_admin("GET", f"/whatsapp/numbers/{PHONE_ID}"))["registered"] is True


async def test_an_activated_number_records_its_throughput_and_coexistence_for_policy(stack: Stack) -> None:
    token = f"wa-system-user-{secrets.token_hex(24)}"
    await stack.sandbox_admin(
        "POST",
        "/whatsapp/numbers",
        {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "token": token, "on_biz_app": True},
    )
    wa = await WhatsApp.start(stack)
    await wa.to_business_verified(token)
    await wa.step("request-code")
    assert (await wa.step("verify-code", {"code": await last_code(stack)}))["step"] == "activated"

    [read] = [r for r in stack.recorder.matching(f"/{PHONE_ID}") if r.method == "GET"]
    assert "fields=throughput%2Cis_on_biz_app" in read.query
    [snapshot] = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    assert (snapshot["throughput_level"], snapshot["coexistence"]) == ("STANDARD", True)


async def test_a_throughput_upgrade_webhook_has_the_numbers_throughput_read_again(stack: Stack) -> None:
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    await wa.to_business_verified(token)
    await wa.step("request-code")
    await wa.step("verify-code", {"code": await last_code(stack)})
    [before] = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
    assert before["throughput_level"] == "STANDARD"

    stack.sandbox.whatsapp_numbers[PHONE_ID].throughput_level = "HIGH"  # Meta upgraded the number
    upgrade = NumberThroughputChanged(
        event_id="thr_test",
        tenant_id=TENANT,
        business_account_id=WABA_ID,
        display_phone_number="15550100000",
        event="THROUGHPUT_UPGRADE",
        provider_timestamp=datetime.now(UTC),
        delivery_id="d-thr",
    )
    await publish_events(stack.infra.kafka, stack.namespace, upgrade)

    async def upgraded() -> dict[str, Any] | None:
        snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT)
        return snapshots[-1] if snapshots[-1]["throughput_level"] == "HIGH" else None

    after = await eventually(upgraded)
    assert after["revision"] == before["revision"] + 1
    assert after["coexistence"] is False


async def test_whatsapp_code_wrong_expired_resent_too_soon_and_too_many_attempts(stack: Stack) -> None:
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    await wa.to_business_verified(token)
    await wa.step("request-code")
    code = await last_code(stack)

    for left in (4, 3):
        refused = await wa.step("verify-code", {"code": wrong(code)}, status=422)
        assert (refused["code"], refused["attempts_left"]) == ("WRONG_CODE", left)
    asked = len(stack.recorder.matching("/verify_code"))
    for malformed in ("12345", "12a456", "\u0661\u0662\u0663\u0664\u0665\u0666"):
        refused = await wa.step("verify-code", {"code": malformed}, status=422)
        assert (refused["code"], refused["field"]) == ("INVALID_CODE_FORMAT", "code")
    assert len(stack.recorder.matching("/verify_code")) == asked
    current = await wa.get()
    assert (current["step"], current["code_attempts"]) == ("code_sent", 2)
    too_soon = await wa.step("request-code", status=422)
    assert too_soon["code"] == "RESEND_TOO_SOON"
    assert 0 < too_soon["retry_after_s"] <= 60

    # ten minutes later the right code is refused before Meta is asked
    asked = len(stack.recorder.matching("/verify_code"))
    stack.clock.advance(minutes=10, seconds=1)
    expired = await wa.step("verify-code", {"code": code}, status=422)
    assert expired["code"] == "CODE_EXPIRED"
    assert len(stack.recorder.matching("/verify_code")) == asked

    # a new code keeps the count (two so far) and gets five tries of its own; the sixth attempt on
    # it is refused even with the right code
    resent = await wa.step("request-code")
    assert (resent["step"], resent["code_attempts"]) == ("code_sent", 2)
    code = await last_code(stack)
    for left in (4, 3, 2, 1, 0):
        refused = await wa.step("verify-code", {"code": wrong(code)}, status=422)
        assert (refused["code"], refused["attempts_left"]) == ("WRONG_CODE", left)
    asked = len(stack.recorder.matching("/verify_code"))
    blocked = await wa.step("verify-code", {"code": code}, status=422)
    assert blocked["code"] == "TOO_MANY_ATTEMPTS"
    assert len(stack.recorder.matching("/verify_code")) == asked
    assert await stack.call("GET", "/channels") == []

    # after the cooldown another code works
    stack.clock.advance(seconds=61)
    await wa.step("request-code")
    done = await wa.step("verify-code", {"code": await last_code(stack)})
    assert done["step"] == "activated"
    assert [c["account_id"] for c in await stack.call("GET", "/channels")] == [PHONE_ID]
    steps = of_type(await stack.events(topics.CHANNEL_EVENTS), WA_STEP, onboarding_id=wa.id)
    assert [e["step"] for e in steps].count("code_sent") == 3


async def test_provider_side_whatsapp_steps_need_the_platform_operator(stack: Stack) -> None:
    """Security #13 finding 7: a tenant admin cannot record what the platform or Meta did."""
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    await wa.step("sign-agreement")
    await wa.step("accept-terms")
    await wa.step("submit-details", DETAILS)
    account = {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}
    refused = await wa.step("account-created", account, status=403, headers=stack.admin())
    assert refused["code"] == "OPERATOR_REQUIRED"
    assert (await wa.get())["step"] == "details_submitted"
    assert await stack.service.stores.whatsapp_token(wa.id) is None
    assert await stack.waba_holder(WABA_ID) is None
    await wa.step("account-created", account)
    await wa.step("approve-business-manager")
    for action in ("business-verified",):
        refused = await wa.step(action, status=403, headers=stack.admin())
        assert refused["code"] == "OPERATOR_REQUIRED"
    # the customer's own steps stay the tenant admin's: the operator's token is no admin's
    refused = await wa.step("approve-business-manager", status=403, headers=stack.operator())
    assert refused["code"] == "ADMIN_REQUIRED"
    # another tenant's operator token does not reach this tenant's onboarding
    other = await wa.step("business-verified", status=404, headers=stack.operator(tenant=OTHER_TENANT))
    assert other["code"] == "ONBOARDING_NOT_FOUND"
    await wa.step("business-verified")
    await wa.step("request-code")
    verified = await wa.step("verify-code", {"code": await last_code(stack)})
    await stack.call("PATCH", f"/channels/{verified['channel_id']}/profile", {"about": "Acme answers here"})
    await wa.step("request-badge")
    refused = await wa.step("badge-decided", {"approved": True}, status=403, headers=stack.admin())
    assert refused["code"] == "OPERATOR_REQUIRED"
    assert (await wa.step("badge-decided", {"approved": True}))["step"] == "badge_decided"


async def test_an_account_whose_number_is_not_in_the_waba_is_refused_and_nothing_is_kept(
    stack: Stack,
) -> None:
    """Security #13 finding 7: Meta must list the number under the WABA for the token given."""
    token = await whatsapp_number(stack)
    other_token = f"wa-system-user-{secrets.token_hex(24)}"
    await stack.whatsapp_number("106540352249999", "102290129349999", other_token)
    wa = await WhatsApp.start(stack)
    await wa.step("sign-agreement")
    await wa.step("accept-terms")
    await wa.step("submit-details", DETAILS)
    # the victim's WABA with a number of the caller's (and the caller's own token)
    mismatch = await wa.step(
        "account-created",
        {"phone_number_id": "106540352249999", "waba_id": WABA_ID, "access_token": token},
        status=422,
    )
    assert (mismatch["code"], mismatch["field"]) == ("WABA_NUMBER_MISMATCH", "phone_number_id")
    # a WABA the token cannot manage
    foreign = await wa.step(
        "account-created",
        {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": other_token},
        status=422,
    )
    assert (foreign["code"], foreign["field"]) == ("WABA_NOT_ACCESSIBLE", "waba_id")
    [listed, *_] = stack.recorder.matching(f"/{WABA_ID}/phone_numbers")
    assert listed.method == "GET"
    assert (await wa.get())["step"] == "details_submitted"
    assert await stack.service.stores.whatsapp_token(wa.id) is None
    assert await stack.waba_holder(WABA_ID) is None
    assert await stack.call("GET", "/channels") == []
    accepted = await wa.step(
        "account-created", {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}
    )
    assert accepted["step"] == "account_created"


async def test_a_waba_claimed_by_one_tenant_cannot_be_claimed_by_another(stack: Stack) -> None:
    """Security #13 finding 7: one WABA belongs to one tenant (a unique claim document)."""
    token = await whatsapp_number(stack)
    account = {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token}
    first = await WhatsApp.start(stack)
    for action in ("sign-agreement", "accept-terms"):
        await first.step(action)
    await first.step("submit-details", DETAILS)
    await first.step("account-created", account)

    created = await stack.call(
        "POST", "/whatsapp/onboardings", status=201, headers=stack.admin("usr-globex-admin", OTHER_TENANT)
    )
    second = WhatsApp(stack, created["id"])
    globex_admin = stack.admin("usr-globex-admin", OTHER_TENANT)
    for action in ("sign-agreement", "accept-terms"):
        await second.step(action, headers=globex_admin)
    await second.step("submit-details", DETAILS, headers=globex_admin)
    refused = await second.step(
        "account-created", account, status=409, headers=stack.operator(tenant=OTHER_TENANT)
    )
    assert (refused["code"], refused["field"]) == ("WABA_CLAIMED_ELSEWHERE", "waba_id")
    assert await stack.service.stores.whatsapp_token(second.id) is None
    assert await stack.waba_holder(WABA_ID) == TENANT
    # the same tenant may onboard the WABA again (a second onboarding, or a retry)
    again = await WhatsApp.start(stack)
    for action in ("sign-agreement", "accept-terms"):
        await again.step(action)
    await again.step("submit-details", DETAILS)
    assert (await again.step("account-created", account))["step"] == "account_created"


async def test_concurrent_wrong_codes_reach_meta_at_most_five_times_and_a_resend_keeps_the_count(
    stack: Stack,
) -> None:
    """Security #13 finding 12: each attempt is counted (a unique insert) before Meta is asked."""
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    await wa.to_business_verified(token)
    await wa.step("request-code")
    code = await last_code(stack)

    async def attempt() -> httpx.Response:
        return await stack.api.post(
            f"/v1/whatsapp/onboardings/{wa.id}/verify-code", json={"code": wrong(code)}, headers=stack.admin()
        )

    answers = await asyncio.gather(*(attempt() for _ in range(10)))
    assert len(stack.recorder.matching("/verify_code")) == 5
    assert sorted(a.json()["code"] for a in answers) == ["TOO_MANY_ATTEMPTS"] * 5 + ["WRONG_CODE"] * 5
    assert all(a.status_code == 422 for a in answers)
    assert (await wa.get())["code_attempts"] == 5

    # a resend keeps the count; the new code has five tries of its own, and the right one works
    stack.clock.advance(seconds=61)
    resent = await wa.step("request-code")
    assert (resent["step"], resent["code_attempts"]) == ("code_sent", 5)
    code = await last_code(stack)
    refused = await wa.step("verify-code", {"code": wrong(code)}, status=422)
    assert (refused["code"], refused["attempts_left"]) == ("WRONG_CODE", 4)
    assert (await wa.get())["code_attempts"] == 6
    assert (await wa.step("verify-code", {"code": code}))["step"] == "activated"
    assert len(stack.recorder.matching("/verify_code")) == 7


async def test_a_meta_outage_does_not_use_up_the_whatsapp_code_attempts(stack: Stack) -> None:
    """Review P2-3: an attempt Meta did not judge (a 500) is given back, and a resend numbers the
    new code after every claimed attempt, so failures cannot block the onboarding for good."""
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    await wa.to_business_verified(token)
    await wa.step("request-code")
    code = await last_code(stack)
    await stack.sandbox_admin(
        "POST", "/faults", {"path_contains": f"/{PHONE_ID}/verify_code", "status": 500, "times": 6}
    )
    for _ in range(6):
        failed = await wa.step("verify-code", {"code": code}, status=502)
        assert failed["code"] == "PROVIDER_RETRYABLE"
    assert len(stack.recorder.matching("/verify_code")) == 6
    assert await stack.service.stores.highest_code_attempt(wa.id) == 0  # none kept
    assert (await wa.get())["code_attempts"] == 0

    # claims left behind by a service that stopped while Meta was asked: the code's five numbers
    now = stack.clock()
    for n in range(1, 6):
        assert await stack.service.stores.claim_code_attempt(wa.id, range(n, n + 1), now) == n
    blocked = await wa.step("verify-code", {"code": code}, status=422)
    assert blocked["code"] == "TOO_MANY_ATTEMPTS"
    # a new code gets numbers after them and works
    stack.clock.advance(seconds=61)
    await wa.step("request-code")
    assert (await wa.step("verify-code", {"code": await last_code(stack)}))["step"] == "activated"


async def onboard_number(
    stack: Stack, phone_id: str, token: str, tenant: str, *, verify: bool = True
) -> WhatsApp:
    """One onboarding of ``phone_id`` (under WABA_ID) in ``tenant``: to activation, or to business
    verified when not ``verify``."""
    admin = stack.admin("usr-wa-admin", tenant)
    created = await stack.call("POST", "/whatsapp/onboardings", status=201, headers=admin)
    wa = WhatsApp(stack, created["id"])
    for action, body in [
        ("sign-agreement", None),
        ("accept-terms", None),
        ("submit-details", DETAILS),
        ("account-created", {"phone_number_id": phone_id, "waba_id": WABA_ID, "access_token": token}),
        ("approve-business-manager", None),
        ("business-verified", None),
    ]:
        await wa.step(
            action, body, headers=stack.operator(tenant=tenant) if action in OPERATOR_STEPS else admin
        )
    if verify:
        await wa.step("request-code", headers=admin)
        code = await stack.sandbox_admin("GET", f"/whatsapp/numbers/{phone_id}/last-code")
        assert (await wa.step("verify-code", {"code": code["code"]}, headers=admin))["step"] == "activated"
    return wa


async def test_a_waba_is_released_when_its_tenants_last_channel_on_it_disconnects(stack: Stack) -> None:
    """Review P2-6: the WABA claim goes with the tenant's last channel on the WABA, so the WABA can
    move to another tenant; an onboarding of the old tenant still under way claims it again at
    verify-code and is refused once another tenant holds it."""
    token = await whatsapp_number(stack)
    second_phone = "106540352242923"
    await stack.whatsapp_number(second_phone, WABA_ID, token)
    first = await onboard_number(stack, PHONE_ID, token, TENANT)
    second = await onboard_number(stack, second_phone, token, TENANT)
    pending_phone = "106540352242925"
    await stack.whatsapp_number(pending_phone, WABA_ID, token)
    pending = await onboard_number(stack, pending_phone, token, TENANT, verify=False)
    admin = stack.admin("usr-wa-admin", TENANT)

    # another channel of the tenant still uses the WABA: the claim stays
    await stack.call("DELETE", f"/channels/{(await first.get())['channel_id']}", headers=admin)
    assert await stack.waba_holder(WABA_ID) == TENANT
    await stack.call("DELETE", f"/channels/{(await second.get())['channel_id']}", headers=admin)
    assert await stack.waba_holder(WABA_ID) is None

    # another tenant may now onboard the WABA (a number Parley never registered: a registered
    # one keeps its two-step PIN at Meta)
    third_phone = "106540352242924"
    await stack.whatsapp_number(third_phone, WABA_ID, token)
    moved = await onboard_number(stack, third_phone, token, OTHER_TENANT)
    assert await stack.waba_holder(WABA_ID) == OTHER_TENANT
    other_admin = stack.admin("usr-wa-admin", OTHER_TENANT)
    onboarded = await stack.call("GET", f"/whatsapp/onboardings/{moved.id}", headers=other_admin)
    assert onboarded["step"] == "activated"
    # and the old tenant's onboarding under way cannot activate on it
    await pending.step("request-code", headers=admin)
    asked = len(stack.recorder.matching("/verify_code"))
    code = await stack.sandbox_admin("GET", f"/whatsapp/numbers/{pending_phone}/last-code")
    refused = await pending.step("verify-code", {"code": code["code"]}, status=409, headers=admin)
    assert (refused["code"], refused["field"]) == ("WABA_CLAIMED_ELSEWHERE", "waba_id")
    assert len(stack.recorder.matching("/verify_code")) == asked
    assert (await pending.get())["channel_id"] is None


async def test_whatsapp_details_are_checked_steps_keep_order_and_landlines_get_a_call(stack: Stack) -> None:
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    for action, body in [
        ("business-verified", None),
        ("accept-terms", None),
        ("verify-code", {"code": "123456"}),
    ]:
        refused = await wa.step(action, body, status=409)
        assert (refused["code"], refused["current_step"]) == ("INVALID_TRANSITION", "started")
    unknown = await wa.step("skip-to-the-end", status=404)
    assert unknown["code"] == "UNKNOWN_STEP"
    await wa.step("sign-agreement")
    await wa.step("accept-terms")
    for name in ("WhatsApp Deals", "Visit acme.com", "ACME SUPPORT DESK", "Acme!!"):
        refused = await wa.step("submit-details", {**DETAILS, "display_name": name}, status=422)
        assert (refused["code"], refused["field"]) == ("INVALID_DISPLAY_NAME", "display_name"), name
    refused = await wa.step("submit-details", {**DETAILS, "phone_number": "4155550123"}, status=422)
    assert (refused["code"], refused["field"]) == ("INVALID_PHONE_NUMBER", "phone_number")
    assert (await wa.get())["step"] == "terms_accepted"
    await wa.step("submit-details", {**DETAILS, "phone_number": "+14155550199", "landline": True})
    missing = await wa.step("account-created", {"phone_number_id": PHONE_ID, "waba_id": WABA_ID}, status=422)
    assert missing["code"] == "MISSING_FIELDS"
    await wa.step("account-created", {"phone_number_id": PHONE_ID, "waba_id": WABA_ID, "access_token": token})
    out_of_order = await wa.step("request-code", status=409)
    assert (out_of_order["code"], out_of_order["current_step"]) == ("INVALID_TRANSITION", "account_created")
    await wa.step("approve-business-manager")
    await wa.step("business-verified")
    sent = await wa.step("request-code")
    assert (sent["step"], sent["landline"]) == ("code_sent", True)
    [requested] = stack.recorder.matching(f"/{PHONE_ID}/request_code")
    assert requested.json()["code_method"] == "VOICE"

    steps = of_type(await stack.events(topics.CHANNEL_EVENTS), WA_STEP, onboarding_id=wa.id)
    assert sorted(e["step"] for e in steps) == sorted(step for step, _, _ in STEPS[:7])


# --------------------------------------------------------------------------- tokens


async def test_a_page_token_is_never_warned_about_and_a_rejected_one_is_reconnected_with_settings_intact(
    stack: Stack,
) -> None:
    channels = await stack.connect_pages("meta-user-4", [{"id": PAGE_A, "name": "Acme"}])
    channel = channels[PAGE_A]
    channel_id = channel["id"]
    # the login's user token lasts 60 days, the Page token taken with it does not expire
    assert channel["token_expires_at"] is None
    await stack.call(
        "PATCH", f"/channels/{channel_id}/settings", {"display_name": "Acme Support", "auto_ownership": False}
    )
    # six days before the login's 60 days end: nothing to warn about, the Page token still works
    stack.clock.advance(days=54)
    stack.sandbox.advance(54 * 86400)
    assert await stack.service.check_token_expiry() == 0
    assert (await stack.call("POST", f"/channels/{channel_id}/check"))["status"] == "active"
    assert of_type(await stack.events(topics.CHANNEL_EVENTS), TOKEN_EXPIRING) == []

    # the Page token is revoked at Meta: the check marks the channel for a reconnect
    await stack.sandbox_admin("POST", f"/meta/tokens/{stack.page_token(PAGE_A)}/revoke", {"subcode": 460})
    checked = await stack.call("POST", f"/channels/{channel_id}/check")
    assert checked["status"] == "reauth_required"
    assert (await stack.call("GET", f"/channels/{channel_id}"))["status"] == "reauth_required"
    assert (await stack.call("POST", f"/channels/{channel_id}/check"))["revision"] == checked["revision"]
    events = await stack.events(topics.CHANNEL_EVENTS)
    [reauth] = of_type(events, REAUTH)
    assert (reauth["channel_id"], reauth["_key"], reauth["provider_code"]) == (channel_id, channel_id, 190)
    assert reauth["reason"]
    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT, channel_id=channel_id)
    assert max(snapshots, key=lambda s: s["revision"])["status"] == "reauth_required"

    # the reconnect is the same flow: same channel, active again, settings as they were
    started = await stack.start_meta(await stack.meta_code("meta-user-4"))
    [page] = started["pages"]
    assert page["page_id"] == PAGE_A
    [restored] = await stack.activate(started["connection_id"], [PAGE_A])
    assert restored["id"] == channel_id
    assert restored["status"] == "active"
    assert restored["display_name"] == "Acme Support"
    assert restored["settings"]["auto_ownership"] is False
    assert restored["revision"] > checked["revision"]
    assert (await stack.call("POST", f"/channels/{channel_id}/check"))["status"] == "active"
    assert [c["id"] for c in await stack.call("GET", "/channels")] == [channel_id]

    events = await stack.events(topics.CHANNEL_EVENTS)
    [reconnected] = of_type(events, RECONNECTED)
    assert (reconnected["channel_id"], reconnected["actor_id"]) == (channel_id, ADMIN)
    assert of_type(events, TOKEN_EXPIRING) == []
    assert len(of_type(events, CONNECTED)) == 1
    latest = max(
        of_type(await stack.events(topics.CHANNELS), SNAPSHOT, channel_id=channel_id),
        key=lambda s: s["revision"],
    )
    assert (latest["revision"], latest["status"], latest["display_name"], latest["auto_ownership"]) == (
        restored["revision"],
        "active",
        "Acme Support",
        False,
    )


async def test_an_expiring_token_is_warned_about_once(stack: Stack) -> None:
    # an X grant without offline.access: no refresh token, so its end is news (one with a refresh
    # token is renewed by the refresh job and never warned about: tests/unit/test_x_token_refresh.py)
    scopes = ["tweet.read", "tweet.write", "users.read", "dm.read", "dm.write"]
    code, verifier = await stack.x_code("1500000000000000009", "acme_expiring", scopes)
    body = {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    channel = await stack.call("POST", "/connections/x", body)
    expires = datetime.fromisoformat(channel["token_expires_at"])
    assert expires - datetime.now(UTC) <= timedelta(seconds=stack.settings.token_expiry_lead_s)
    renewed_code, renewed_verifier = await stack.x_code("1500000000000000010", "acme_renewed")
    body = {"code": renewed_code, "redirect_uri": X_REDIRECT, "code_verifier": renewed_verifier}
    renewed = await stack.call("POST", "/connections/x", body)
    assert await stack.service.check_token_expiry() == 1
    assert await stack.service.check_token_expiry() == 0
    assert of_type(await stack.events(topics.CHANNEL_EVENTS), TOKEN_EXPIRING, channel_id=renewed["id"]) == []
    [warning] = of_type(await stack.events(topics.CHANNEL_EVENTS), TOKEN_EXPIRING, channel_id=channel["id"])
    # the store keeps milliseconds
    assert abs(datetime.fromisoformat(warning["expires_at"]) - expires) < timedelta(milliseconds=1)


async def test_reauth_required_names_the_providers_code_and_subcode(stack: Stack) -> None:
    channels = await stack.connect_pages("meta-user-7", [{"id": PAGE_A, "name": "Acme"}])
    await stack.sandbox_admin("POST", f"/meta/tokens/{stack.page_token(PAGE_A)}/revoke", {"subcode": 460})
    await stack.call("POST", f"/channels/{channels[PAGE_A]['id']}/check")
    [reauth] = of_type(await stack.events(topics.CHANNEL_EVENTS), REAUTH)
    assert (reauth["provider_code"], reauth["provider_subcode"], reauth["reason"]) == (
        190,
        460,
        "password_changed",
    )


# --------------------------------------------------------------------------- Instagram Login

IG_LOGIN = "17841400000000077"
REFRESH = "/instagram/refresh_access_token"


async def instagram_login(stack: Stack, **spec: Any) -> dict[str, Any]:
    """An Instagram professional account logged in with Business Login; its channel."""
    body = {"id": IG_LOGIN, "username": "acme.shop", "redirect_uri": REDIRECT, **spec}
    code = (await stack.sandbox_admin("POST", "/instagram/accounts", body))["code"]
    channel: dict[str, Any] = await stack.call(
        "POST", "/connections/instagram", {"code": code, "redirect_uri": REDIRECT}
    )
    return channel


def login_token(stack: Stack) -> str:
    """The newest Instagram-login token the sandbox issued (the one the channel holds)."""
    issued = [t for t in stack.sandbox.tokens.values() if t.kind == "instagram" and t.long_lived]
    return max(issued, key=lambda t: t.issued_at).value


def refresh_calls(stack: Stack) -> list[int]:
    return [call.status for call in stack.sandbox.calls if call.path == REFRESH]


async def test_instagram_login_connects_a_profile_without_a_page_and_refreshes_its_token(
    stack: Stack,
) -> None:
    channel = await instagram_login(stack)
    assert (channel["provider"], channel["account_id"]) == ("instagram", IG_LOGIN)
    assert (channel["connect_path"], channel["business_account_id"], channel["display_name"]) == (
        "instagram_login",
        None,
        "acme.shop",
    )
    expires = datetime.fromisoformat(channel["token_expires_at"])
    assert timedelta(days=59) < expires - datetime.now(UTC) <= timedelta(days=60)
    assert stack.sandbox.instagram_accounts[IG_LOGIN].subscribed_fields  # its webhooks reach Parley
    [connected] = of_type(await stack.events(topics.CHANNEL_EVENTS), CONNECTED, channel_id=channel["id"])
    assert connected["account_id"] == IG_LOGIN

    # far from its end: nothing; 14 days (the lead) before it: refreshed once, at Instagram
    assert await stack.service.refresh_login_tokens() == 0
    assert refresh_calls(stack) == []
    held = login_token(stack)
    stack.clock.advance(days=47)
    stack.sandbox.advance(47 * 86400)
    assert await stack.service.refresh_login_tokens() == 1
    assert refresh_calls(stack) == [200]
    assert login_token(stack) != held
    refreshed = await stack.call("GET", f"/channels/{channel['id']}")
    assert refreshed["status"] == "active"
    assert datetime.fromisoformat(refreshed["token_expires_at"]) > expires
    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT, channel_id=channel["id"])
    assert max(s["revision"] for s in snapshots) == refreshed["revision"]
    # the channel's credential (sealed in the store) is the new token
    credential = await stack.service.stores.credential(channel["id"])
    assert credential is not None and credential.access_token == login_token(stack)


async def test_a_revoked_login_token_is_not_refreshed_and_the_channel_awaits_a_reconnect(
    stack: Stack,
) -> None:
    channel = await instagram_login(stack)
    await stack.sandbox_admin("POST", f"/meta/tokens/{login_token(stack)}/revoke", {"subcode": 460})
    stack.clock.advance(days=50)
    stack.sandbox.advance(50 * 86400)
    assert await stack.service.refresh_login_tokens() == 0
    assert refresh_calls(stack) == [400]
    assert (await stack.call("GET", f"/channels/{channel['id']}"))["status"] == "reauth_required"
    [reauth] = of_type(await stack.events(topics.CHANNEL_EVENTS), REAUTH, channel_id=channel["id"])
    assert (reauth["provider_code"], reauth["provider_subcode"], reauth["reason"]) == (
        190,
        460,
        "password_changed",
    )
    # logging in again is the reconnect: the same channel, active on a new token
    again = await instagram_login(stack)
    assert (again["id"], again["status"], again["connect_path"]) == (
        channel["id"],
        "active",
        "instagram_login",
    )


@pytest.fixture
async def refresh_always_near(infra: Infra, namespace: str, store_url: str) -> AsyncIterator[Stack]:
    """A stack whose refresh lead is longer than a token's life: every token is near its end."""
    async with onboarding_stack(infra, namespace, store_url, instagram_token_refresh_lead_s=61 * 86400) as s:
        yield s


async def test_a_login_token_younger_than_24_hours_is_not_offered_to_instagram(
    refresh_always_near: Stack,
) -> None:
    stack = refresh_always_near
    await instagram_login(stack)
    stack.clock.advance(hours=23)
    stack.sandbox.advance(23 * 3600)
    assert await stack.service.refresh_login_tokens() == 0
    assert refresh_calls(stack) == []  # Instagram would refuse it: the job does not ask
    stack.clock.advance(hours=1, seconds=30)
    stack.sandbox.advance(3630)
    assert await stack.service.refresh_login_tokens() == 1
    assert refresh_calls(stack) == [200]


# --------------------------------------------------------------------------- webhook subscriptions


async def test_fields_meta_dropped_from_a_page_are_restored_and_announced_for_its_channels(
    stack: Stack,
) -> None:
    channels = await stack.connect_pages("meta-user-8", acme_pages())
    page_a, profile = channels[PAGE_A], channels[IG_A]
    subscribed = (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE_A}"))["subscribed_fields"]
    assert await stack.service.check_subscriptions() == 0  # every Page whole: nothing to say

    # Meta drops two fields of Page A after failed deliveries; the hourly check restores them
    await stack.sandbox_admin("POST", f"/meta/pages/{PAGE_A}/unsubscribe", {"fields": ["feed", "messages"]})
    assert await stack.service.check_subscriptions() == 1
    assert sorted((await stack.sandbox_admin("GET", f"/meta/pages/{PAGE_A}"))["subscribed_fields"]) == sorted(
        subscribed
    )
    repaired = of_type(await stack.events(topics.CHANNEL_EVENTS), SUBSCRIPTION_REPAIRED)
    assert sorted(e["channel_id"] for e in repaired) == sorted([page_a["id"], profile["id"]])
    assert all(e["restored"] == ["feed", "messages"] and e["actor_id"] is None for e in repaired)

    # an admin asks about Page B after Meta dropped all of it: same repair, the admin named
    await stack.sandbox_admin("POST", f"/meta/pages/{PAGE_B}/unsubscribe", {})
    checked = await stack.call("POST", f"/channels/{channels[PAGE_B]['id']}/subscription-check")
    assert (checked["outcome"], checked["missing"]) == ("repaired", sorted(subscribed))
    [by_admin] = of_type(
        await stack.events(topics.CHANNEL_EVENTS), SUBSCRIPTION_REPAIRED, channel_id=channels[PAGE_B]["id"]
    )
    assert by_admin["actor_id"] == ADMIN


async def test_fields_dropped_from_an_instagram_login_account_are_restored_on_its_host(stack: Stack) -> None:
    channel = await instagram_login(stack)
    subscribed = (await stack.sandbox_admin("GET", f"/instagram/accounts/{IG_LOGIN}"))["subscribed_fields"]
    assert subscribed and await stack.service.check_subscriptions() == 0

    # Meta drops the account's subscription after failed deliveries: the check on
    # graph.instagram.com (the account's own token, no Page) subscribes it again
    await stack.sandbox_admin("POST", f"/instagram/accounts/{IG_LOGIN}/unsubscribe", {})
    assert (await stack.sandbox_admin("GET", f"/instagram/accounts/{IG_LOGIN}"))["subscribed_fields"] == []
    checked = await stack.call("POST", f"/channels/{channel['id']}/subscription-check")
    assert (checked["outcome"], checked["missing"]) == ("repaired", sorted(subscribed))
    after = (await stack.sandbox_admin("GET", f"/instagram/accounts/{IG_LOGIN}"))["subscribed_fields"]
    assert sorted(after) == sorted(subscribed)
    [repaired] = of_type(
        await stack.events(topics.CHANNEL_EVENTS), SUBSCRIPTION_REPAIRED, channel_id=channel["id"]
    )
    assert (repaired["restored"], repaired["actor_id"]) == (sorted(subscribed), ADMIN)
    reads = [c for c in stack.sandbox.calls if c.method == "GET" and c.path.endswith("/me/subscribed_apps")]
    assert reads and all(c.path.startswith("/instagram/") for c in reads)


async def test_a_subscription_meta_will_not_restore_is_announced_lost(stack: Stack) -> None:
    channels = await stack.connect_pages("meta-user-9", [{"id": PAGE_A, "name": "Acme"}])
    channel_id = channels[PAGE_A]["id"]
    await stack.sandbox_admin("POST", f"/meta/pages/{PAGE_A}/unsubscribe", {"fields": ["feed"]})
    # Meta refuses the re-subscription: the admin's Page access no longer allows it
    await stack.sandbox_admin(
        "POST",
        "/faults",
        {"path_contains": f"/{PAGE_A}/subscribed_apps", "method": "POST", "status": 403, "code": 200},
    )
    checked = await stack.call("POST", f"/channels/{channel_id}/subscription-check")
    assert (checked["outcome"], checked["missing"]) == ("lost", ["feed"])
    [lost] = of_type(await stack.events(topics.CHANNEL_EVENTS), SUBSCRIPTION_LOST, channel_id=channel_id)
    assert (lost["missing"], lost["reason"], lost["provider_code"]) == (["feed"], "permission_missing", 200)
    assert "feed" not in (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE_A}"))["subscribed_fields"]
    # only administrators may ask
    refused = await stack.call(
        "POST", f"/channels/{channel_id}/subscription-check", headers=stack.agent(), status=403
    )
    assert refused["code"] == "ADMIN_REQUIRED"


# --------------------------------------------------------------------------- settings, access, teams


async def test_settings_access_and_teams(stack: Stack) -> None:
    channels = await stack.connect_pages("meta-user-5", [{"id": PAGE_A, "name": "Acme"}])
    channel_id = channels[PAGE_A]["id"]
    path = f"/channels/{channel_id}/settings"

    too_long = await stack.call("PATCH", path, {"display_name": "x" * 256}, status=422)
    assert too_long["code"] == "VALIDATION_ERROR"
    assert [f["field"] for f in too_long["fields"]] == ["body.display_name"]
    blank = await stack.call("PATCH", path, {"display_name": "   "}, status=422)
    assert (blank["code"], blank["field"]) == ("INVALID_DISPLAY_NAME", "display_name")
    short = await stack.call("PATCH", path, {"auto_resolve_new_s": 30}, status=422)
    assert (short["code"], short["field"]) == ("INVALID_SETTING", "auto_resolve_new_s")
    unknown = await stack.call("PATCH", path, {"colour": "red"}, status=422)
    assert unknown["code"] == "VALIDATION_ERROR"
    assert (await stack.call("GET", f"/channels/{channel_id}"))["revision"] == 1

    changes = {
        "display_name": "N" * 255,
        "auto_ownership": False,
        "auto_resolve_new_s": 0,
        "auto_resolve_pending_s": 3600,
        "human_agent_tag": True,
        "text_limit": 500,
    }
    patched = await stack.call("PATCH", path, changes)
    assert patched["display_name"] == "N" * 255
    assert patched["settings"] == {
        "auto_ownership": False,
        "auto_resolve_new_s": None,
        "auto_resolve_pending_s": 3600,
        "human_agent_tag": True,
        "text_limit": 500,
        "business_hours": None,
        "away_message": None,
        "mark_read_on_open": False,  # off unless an admin turns it on
    }
    assert patched["revision"] == 2

    team = await stack.call("POST", "/teams", {"name": "Billing"}, status=201)
    access = {
        "user_access": {"usr-ana": "viewer"},
        "team_access": {team["id"]: "contributor"},
        "all_users_role": "viewer",
    }
    granted = await stack.call("PUT", f"/channels/{channel_id}/access", access)
    assert granted["access"] == {**access, "all_teams_role": None}
    unknown_team = await stack.call(
        "PUT", f"/channels/{channel_id}/access", {"team_access": {"team_nope": "viewer"}}, status=422
    )
    assert (unknown_team["code"], unknown_team["field"]) == ("UNKNOWN_TEAM", "team_access")

    await stack.call("PATCH", f"/teams/{team['id']}", {"name": "Billing EU"})
    await stack.call("PUT", f"/teams/{team['id']}/members/usr-ana")
    await stack.call("PUT", f"/teams/{team['id']}/members/usr-ben")
    await stack.call("PUT", f"/teams/{team['id']}/members/usr-ana")  # already a member: no change
    removed = await stack.call("DELETE", f"/teams/{team['id']}/members/usr-ben")
    assert (removed["name"], removed["members"]) == ("Billing EU", ["usr-ana"])
    assert await stack.call("GET", "/teams", headers=stack.agent()) == [removed]
    assert await stack.call("DELETE", f"/teams/{team['id']}", status=204) is None
    assert await stack.call("GET", "/teams") == []
    gone = await stack.call("PATCH", f"/teams/{team['id']}", {"name": "Back"}, status=404)
    assert gone["code"] == "TEAM_NOT_FOUND"
    after = await stack.call("GET", f"/channels/{channel_id}")
    assert after["access"] == {**access, "team_access": {}, "all_teams_role": None}
    assert after["display_name"] == "N" * 255

    teams = of_type(await stack.events(topics.TEAMS), TEAM)
    assert all(t["_key"] == team["id"] and t["tenant_id"] == TENANT for t in teams)
    assert [(t["revision"], t["name"], t["members"], t["deleted"]) for t in teams] == [
        (1, "Billing", [], False),
        (2, "Billing EU", [], False),
        (3, "Billing EU", ["usr-ana"], False),
        (4, "Billing EU", ["usr-ana", "usr-ben"], False),
        (5, "Billing EU", ["usr-ana"], False),
        (6, "Billing EU", ["usr-ana"], True),
    ]
    snapshots = sorted(
        of_type(await stack.events(topics.CHANNELS), SNAPSHOT, channel_id=channel_id),
        key=lambda s: s["revision"],
    )
    assert [s["revision"] for s in snapshots] == [1, 2, 3, 4]
    assert (snapshots[1]["display_name"], snapshots[1]["auto_resolve_new_s"], snapshots[1]["text_limit"]) == (
        "N" * 255,
        None,
        500,
    )
    assert snapshots[2]["team_access"] == {team["id"]: "contributor"}
    assert snapshots[2]["user_access"] == {"usr-ana": "viewer"}
    assert snapshots[2]["all_users_role"] == "viewer"
    assert snapshots[3]["team_access"] == {}
    assert snapshots[3]["user_access"] == {"usr-ana": "viewer"}
    changed = sorted(
        of_type(await stack.events(topics.CHANNEL_EVENTS), SETTINGS_CHANGED), key=lambda e: e["event_id"]
    )
    assert [sorted(e["changed"]) for e in changed] == [
        sorted(changes),
        ["all_users_role", "team_access", "user_access"],
        ["team_access"],
    ]


async def test_business_hours_are_validated_stored_and_published_with_the_snapshot(stack: Stack) -> None:
    channels = await stack.connect_pages("meta-user-hours", [{"id": PAGE_A, "name": "Acme"}])
    channel_id = channels[PAGE_A]["id"]
    path = f"/channels/{channel_id}/settings"

    bad_zone = {"business_hours": {"time_zone": "Mars/Olympus", "intervals": []}}
    refused = await stack.call("PATCH", path, bad_zone, status=422)
    assert refused["fields"][0]["field"].startswith("body.business_hours.time_zone")
    crossing = {
        "business_hours": {
            "time_zone": "UTC",
            "intervals": [{"day": "mon", "start": "22:00", "end": "02:00"}],
        }
    }
    refused = await stack.call("PATCH", path, crossing, status=422)
    assert refused["fields"][0]["field"].startswith("body.business_hours.intervals")
    too_long = await stack.call("PATCH", path, {"away_message": "x" * 2001}, status=422)
    assert (too_long["code"], too_long["field"]) == ("INVALID_SETTING", "away_message")

    hours = {
        "time_zone": "Europe/Berlin",
        "intervals": [{"day": "mon", "start": "09:00", "end": "17:00"}],
        "holidays": ["2026-12-25"],
    }
    await stack.call("PATCH", path, {"business_hours": hours, "away_message": "Back at nine."})
    read = await stack.call("GET", f"/channels/{channel_id}")
    assert read["settings"]["business_hours"] == hours
    assert read["settings"]["away_message"] == "Back at nine."
    assert read["hours_open"] in (True, False)  # announced at once, whatever the hour of the test

    snapshots = sorted(
        of_type(await stack.events(topics.CHANNELS), SNAPSHOT, channel_id=channel_id),
        key=lambda s: s["revision"],
    )
    assert snapshots[-1]["business_hours"] == hours
    assert snapshots[-1]["away_message"] == "Back at nine."
    events = await stack.events(topics.CHANNEL_EVENTS)
    [announced] = of_type(events, "parley.channel.hours_changed.v1", channel_id=channel_id)
    assert announced["open"] is read["hours_open"]

    # a team's schedule: the channel takes it once its own is removed
    team = await stack.call("POST", "/teams", {"name": "Night shift"}, status=201)
    night = {
        "time_zone": "UTC",
        "intervals": [{"day": "mon", "start": "22:00", "end": "24:00"}],
        "holidays": [],
    }
    refused = await stack.call(
        "PUT", f"/teams/{team['id']}/business-hours", {"business_hours": {"time_zone": "Nowhere"}}, status=422
    )
    assert refused["fields"][0]["field"].startswith("body.business_hours.time_zone")
    named = await stack.call("PUT", f"/teams/{team['id']}/business-hours", {"business_hours": night})
    assert named["business_hours"] == night
    await stack.call("PUT", f"/channels/{channel_id}/access", {"team_access": {team["id"]: "contributor"}})
    await stack.call("PATCH", path, {"business_hours": None})
    snapshots = sorted(
        of_type(await stack.events(topics.CHANNELS), SNAPSHOT, channel_id=channel_id),
        key=lambda s: s["revision"],
    )
    assert snapshots[-1]["business_hours"] == night


async def test_teams_per_tenant_are_capped(infra: Infra, namespace: str, store_url: str) -> None:
    """Security #13 finding 14c: team creation is bounded per tenant; deleted teams free their place."""
    async with onboarding_stack(infra, namespace, store_url, max_teams_per_tenant=3) as stack:
        made = [await stack.call("POST", "/teams", {"name": f"Team {n}"}, status=201) for n in range(3)]
        refused = await stack.call("POST", "/teams", {"name": "One too many"}, status=409)
        assert (refused["code"], refused["limit"]) == ("TEAM_LIMIT_REACHED", 3)
        assert "3 teams" in refused["message"]
        assert len(await stack.call("GET", "/teams")) == 3
        # another tenant has its own allowance
        other = stack.admin("usr-other", OTHER_TENANT)
        await stack.call("POST", "/teams", {"name": "Globex"}, headers=other, status=201)
        # deleting a team frees its place
        await stack.call("DELETE", f"/teams/{made[0]['id']}", status=204)
        await stack.call("POST", "/teams", {"name": "Replacement"}, status=201)
        await stack.call("POST", "/teams", {"name": "Again too many"}, status=409)
        names = [e["name"] for e in await stack.events(topics.TEAMS) if e.get("tenant_id") == TENANT]
        assert "One too many" not in names and "Again too many" not in names


async def test_null_for_a_yes_no_setting_is_refused_naming_the_field(stack: Stack) -> None:
    channels = await stack.connect_pages("meta-user-10", [{"id": PAGE_A, "name": "Acme"}])
    channel_id = channels[PAGE_A]["id"]
    for name in ("auto_ownership", "human_agent_tag"):
        refused = await stack.api.patch(
            f"/v1/channels/{channel_id}/settings", json={name: None}, headers=stack.admin()
        )
        assert refused.status_code == 422, refused.text
        assert name in refused.text
    assert (await stack.call("GET", f"/channels/{channel_id}"))["revision"] == 1


# --------------------------------------------------------------------------- tenancy and roles


async def test_every_route_is_tenant_scoped_admin_only_for_writes_and_needs_a_token(stack: Stack) -> None:
    code = await stack.meta_user("meta-user-8", acme_pages())
    started = await stack.start_meta(code)
    [channel] = await stack.activate(started["connection_id"], [PAGE_A])
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
    object_ids = {"channel_id", "connection_id", "team_id", "onboarding_id"}
    # reads that ask the provider on the channel's token: admins only, like the channel's settings
    admin_reads = {"GET /channels/{channel_id}/templates", "GET /channels/{channel_id}/profile"}
    spec = (await stack.api.get("/v1/openapi.json")).json()
    forged = {"authorization": f"Bearer {issue_dev_token('x' * 32, ADMIN, TENANT, ['admin'])}"}
    checked = await assert_auth_enforced(stack.api, spec, ids, forged)
    outsider_admin = stack.admin("usr-globex-admin", OTHER_TENANT)
    outsider = stack.agent("usr-globex", OTHER_TENANT)
    for operation in checked:
        method, url, required, body = request_for(spec, operation, ids)
        route = operation.label

        async def call(
            headers: dict[str, str], *, m: str = method, u: str = url, b: Any = body, h: Any = required
        ) -> Any:
            return await stack.api.request(m, u, json=b, headers={**h, **headers})

        if set(operation.path_names) & object_ids:
            for headers in (outsider_admin, outsider):
                response = await call(headers)
                if (method != "GET" or route in admin_reads) and headers is outsider:
                    assert response.status_code in (403, 404), (route, response.text)
                else:
                    assert response.status_code == 404, (route, response.text)
        if method == "GET" and route not in admin_reads:
            assert (await call(stack.agent())).status_code == 200, route
        else:
            refused = await call(stack.agent())
            assert refused.status_code == 403, (route, refused.text)
            assert refused.json()["code"] == "ADMIN_REQUIRED", route
    assert len(checked) >= 17

    # lists are the caller's tenant's only; nothing above changed this tenant's objects
    assert await stack.call("GET", "/channels", headers=outsider) == []
    assert await stack.call("GET", "/teams", headers=outsider) == []
    assert await stack.call("GET", f"/channels/{channel['id']}") == channel
    assert await stack.call("GET", "/teams") == [{**team, "members": ["usr-ana"]}]
    assert (await stack.call("GET", f"/whatsapp/onboardings/{onboarding['id']}"))["step"] == "started"
    assert (await stack.sandbox_admin("GET", f"/meta/pages/{PAGE_B}"))["subscribed_fields"] == []


async def test_a_page_active_in_one_tenant_cannot_be_activated_in_another(stack: Stack) -> None:
    await stack.connect_pages("meta-user-11", [{"id": PAGE_A, "name": "Acme"}])
    outsider = stack.admin("usr-globex-admin", OTHER_TENANT)
    started = await stack.start_meta(await stack.meta_code("meta-user-11"), headers=outsider)
    response = await stack.api.post(
        f"/v1/connections/meta/{started['connection_id']}/activate",
        json={"page_ids": [PAGE_A], "instagram_account_ids": []},
        headers=outsider,
    )
    assert response.status_code in (409, 422), response.text
    assert await stack.call("GET", "/channels", headers=outsider) == []
    snapshots = of_type(await stack.events(topics.CHANNELS), SNAPSHOT, account_id=PAGE_A)
    assert {s["tenant_id"] for s in snapshots} == {TENANT}


# --------------------------------------------------------------------------- secrets


async def test_no_credential_leaks_into_answers_events_or_logs(
    infra: Infra,
    namespace: str,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with onboarding_stack(infra, namespace, store_url, log_format="json", log_level="debug") as stack:
        # Meta: connect, a refused reuse of the code, a provider failure, revoke, check, reconnect
        code = await stack.meta_user("meta-user-9", acme_pages())
        started = await stack.start_meta(code)
        reused = await stack.call(
            "POST", "/connections/meta", {"code": code, "redirect_uri": REDIRECT}, status=422
        )
        assert reused["code"] == "PROVIDER_INVALID_REQUEST"
        await stack.sandbox_admin(
            "POST", "/faults", {"path_contains": f"/{PAGE_B}/subscribed_apps", "status": 500, "times": 1}
        )
        failed = await stack.activate(started["connection_id"], [PAGE_B], status=502)
        assert failed["code"] == "PROVIDER_RETRYABLE"
        channels = await stack.activate(started["connection_id"], [PAGE_A, PAGE_B], [IG_A])
        page_a = next(c for c in channels if c["account_id"] == PAGE_A)
        # Instagram Login: connect, a subscription repair, then a refresh of its token 47 days on
        await instagram_login(stack)
        await stack.sandbox_admin("POST", f"/meta/pages/{PAGE_A}/unsubscribe", {"fields": ["feed"]})
        assert await stack.service.check_subscriptions() == 1
        stack.clock.advance(days=47)
        stack.sandbox.advance(47 * 86400)
        assert await stack.service.refresh_login_tokens() == 1
        # the expiry check runs over every channel (Page channels have no expiry to warn about)
        stack.clock.advance(days=8)
        await stack.service.check_token_expiry()
        await stack.sandbox_admin("POST", f"/meta/tokens/{stack.page_token(PAGE_A)}/revoke", {"subcode": 463})
        assert (await stack.call("POST", f"/channels/{page_a['id']}/check"))["status"] == "reauth_required"
        again = await stack.start_meta(await stack.meta_code("meta-user-9"))
        await stack.activate(again["connection_id"], [PAGE_A])
        # X
        x_code, verifier = await stack.x_code("1500000000000000009", "acme")
        body = {"code": x_code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
        await stack.call("POST", "/connections/x", body)
        await stack.call("POST", "/connections/x", body, status=422)  # the code works once
        # WhatsApp up to an active channel, with a wrong code on the way
        token = await whatsapp_number(stack)
        wa = await WhatsApp.start(stack)
        await wa.to_business_verified(token)
        await wa.step("request-code")
        await wa.step("verify-code", {"code": wrong(await last_code(stack))}, status=422)
        await wa.step("verify-code", {"code": await last_code(stack)})
        for channel in await stack.call("GET", "/channels"):
            await stack.call("POST", f"/channels/{channel['id']}/check")
            await stack.call("GET", f"/channels/{channel['id']}", headers=stack.agent())
        await stack.call("GET", f"/whatsapp/onboardings/{wa.id}")

        issued = [*stack.sandbox.tokens, *stack.sandbox.x_refresh_tokens]
        kinds = {t.kind for t in stack.sandbox.tokens.values()}
        assert kinds == {"user", "page", "system", "x", "instagram"}
        assert token in issued
        secret_values = {
            **{f"token {value[:8]}...": value for value in issued},
            "meta app secret": stack.sandbox.meta_app_secret,
            "instagram app secret": stack.sandbox.instagram_app_secret,
            "x client secret": stack.sandbox.x_client_secret,
            "encryption key": stack.encryption_key,
            "jwt secret": stack.jwt_secret,
        }
        answers = list(stack.responses)
        events = await stack.raw_events()
        stored = [json.dumps(record, default=str) for _, _, record in await stack.every_record()]
    assert len(answers) > 30
    assert len(events) > 20
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert '"event": "started"' in logs or '"event":"started"' in logs  # the JSON log was captured
    places = {"API answers": answers, "events": events, "logs": [logs], "the store": stored}
    leaks = [
        f"{what} in {where}"
        for where, texts in places.items()
        for what, value in secret_values.items()
        if any(value in text for text in texts)
    ]
    assert leaks == []


# ------------------------------------------------------------- secrets at rest (security #13 finding 8)


async def sealed_values(stack: Stack) -> list[tuple[str, str, dict[str, str]]]:
    """Every ciphertext anywhere in the store, whatever the table or collection or the field: each
    nested ``{key_id, nonce, ciphertext}`` as (table or collection, record key, sealed value).
    Review P3-11: the test looks everywhere, not only where rotation looks (SEALED_FIELDS)."""
    found: list[tuple[str, str, dict[str, str]]] = []

    def walk(value: Any, collection: str, doc_id: str) -> None:
        if isinstance(value, dict):
            if {"key_id", "nonce", "ciphertext"} <= value.keys():
                found.append((collection, doc_id, value))
                return
            for item in value.values():
                walk(item, collection, doc_id)
        elif isinstance(value, list):
            for item in value:
                walk(item, collection, doc_id)

    for table, key, record in await stack.every_record():
        walk(record, table, key)
    return found


async def onboard_whatsapp(stack: Stack) -> WhatsApp:
    token = await whatsapp_number(stack)
    wa = await WhatsApp.start(stack)
    await wa.to_business_verified(token)
    await wa.step("request-code")
    assert (await wa.step("verify-code", {"code": await last_code(stack)}))["step"] == "activated"
    return wa


async def test_rotation_re_encrypts_every_kind_of_secret(stack: Stack) -> None:
    """Channel tokens, X refresh tokens, WhatsApp tokens and PINs, and started connections' Page
    tokens all move to the new key; none is left on the old one and all decrypt with it alone."""
    await stack.connect_pages("meta-user-rotate", acme_pages())
    code, verifier = await stack.x_code("1500000000000000009", "acme_rotate")
    await stack.call(
        "POST", "/connections/x", {"code": code, "redirect_uri": X_REDIRECT, "code_verifier": verifier}
    )
    wa = await onboard_whatsapp(stack)
    started = await stack.start_meta(await stack.meta_code("meta-user-rotate"))  # left unactivated
    before = await sealed_values(stack)
    assert {collection for collection, _, _ in before} == {"channel_credentials", "meta_connections"}
    assert {collection for collection, _, _ in before} <= {collection for collection, _ in SEALED_FIELDS}
    ids = {doc_id for _, doc_id, _ in before}
    assert {f"whatsapp:{wa.id}", f"whatsapp-pin:{wa.id}", started["connection_id"]} <= ids
    x_channel = channel_id_for(TENANT, Provider.X, "1500000000000000009")
    x_credential = await stack.stored("channel_credentials", x_channel)
    assert x_credential is not None and x_credential["refresh"]["key_id"] == "k1"
    assert {sealed["key_id"] for _, _, sealed in before} == {"k1"}

    new_key = base64.b64encode(secrets.token_bytes(32)).decode()
    keys = f"k2:{new_key},k1:{stack.encryption_key}"
    rotated, documents = await rotate_credentials(
        stack.settings.model_copy(update={"encryption_keys": SecretStr(keys)})
    )
    after = await sealed_values(stack)
    assert (rotated, len(after)) == (len(before), len(before))
    assert documents == len(ids)
    only_new = TokenVault(parse_keys(f"k2:{new_key}"))
    for collection, doc_id, sealed in after:
        assert sealed["key_id"] == "k2", (collection, doc_id)
        assert only_new.decrypt(sealed, doc_id)
    # nothing left to do: a second run changes nothing
    assert await rotate_credentials(
        stack.settings.model_copy(update={"encryption_keys": SecretStr(keys)})
    ) == (
        0,
        0,
    )


async def test_a_disconnect_purges_the_channels_secrets_everywhere(stack: Stack) -> None:
    wa = await onboard_whatsapp(stack)
    channel_id = (await wa.get())["channel_id"]
    for key in (channel_id, f"whatsapp:{wa.id}", f"whatsapp-pin:{wa.id}"):
        assert await stack.stored("channel_credentials", key) is not None
    assert await stack.count_stored("whatsapp_code_attempts", onboarding_id=wa.id) > 0
    await stack.call("DELETE", f"/channels/{channel_id}")
    for key in (channel_id, f"whatsapp:{wa.id}", f"whatsapp-pin:{wa.id}"):
        assert await stack.stored("channel_credentials", key) is None, key
    assert await stack.count_stored("whatsapp_code_attempts", onboarding_id=wa.id) == 0

    # a started connection still holding the Page's token goes with the Page's channel
    channels = await stack.connect_pages("meta-user-purge", acme_pages())
    pending = await stack.start_meta(await stack.meta_code("meta-user-purge"))
    assert await stack.stored("meta_connections", pending["connection_id"]) is not None
    await stack.call("DELETE", f"/channels/{channels[PAGE_A]['id']}")
    assert await stack.stored("meta_connections", pending["connection_id"]) is None
    assert await stack.stored("channel_credentials", channels[PAGE_B]["id"]) is not None  # others stay


async def test_meta_connections_keep_no_user_token_and_go_on_activation_or_expiry(stack: Stack) -> None:
    code = await stack.meta_user("meta-user-ttl", acme_pages())
    started = await stack.start_meta(code)
    doc = await stack.stored("meta_connections", started["connection_id"])
    assert doc is not None and "user_token" not in doc
    assert doc["expires_at"] - doc["created_at"] == timedelta(seconds=stack.settings.connection_ttl_s)
    await stack.activate(started["connection_id"], [PAGE_B])
    assert await stack.stored("meta_connections", started["connection_id"]) is None
    gone = await stack.activate(started["connection_id"], [PAGE_A], status=404)
    assert gone["code"] == "CONNECTION_NOT_FOUND"

    # an expired one is refused and deleted on read, and the timer deletes those nobody reads
    read = (await stack.start_meta(await stack.meta_code("meta-user-ttl")))["connection_id"]
    unread = (await stack.start_meta(await stack.meta_code("meta-user-ttl")))["connection_id"]
    stack.clock.advance(seconds=stack.settings.connection_ttl_s + 1)
    expired = await stack.activate(read, [PAGE_A], status=422)
    assert expired["code"] == "CONNECTION_EXPIRED"
    assert await stack.stored("meta_connections", read) is None
    assert await stack.stored("meta_connections", unread) is not None
    assert await stack.service.prune_connections() == 1
    assert await stack.count_stored("meta_connections") == 0
