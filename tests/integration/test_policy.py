"""Policy against the real broker and store, with the provider sandbox served over HTTP.

Each test connects its channels in the sandbox (a Page through the Login flow, WhatsApp numbers
with a system token), stores their tokens encrypted as onboarding does, publishes the channel
snapshots and the customers' messages, and runs policy with a frozen clock. Outcomes are checked
in API answers, on ``parley.replies.v1``, ``parley.reply-windows.v1`` and
``parley.channel-events.v1``, and in what the sandbox received.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from parley_events import ChannelRole, Provider, topics
from parley_policy.bootstrap import create_policy_app
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings
from parley_shared.auth import AUTOMATION_SCOPE, issue_dev_token
from starlette.applications import Starlette

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually
from tests.support.policy import (
    APPROVED,
    CLOSED,
    CLOSING,
    FAILED,
    GRAPH,
    HUMAN_CLOSED,
    JWT,
    OPENED,
    OTHER_TENANT,
    REAUTH,
    REJECTED,
    REQUESTED,
    SENT,
    TENANT,
    Sandbox,
    Stack,
    auth,
    channel,
    event_of,
    inbound,
    of_type,
    policy_settings,
    policy_stack,
)

pytestmark = pytest.mark.integration

PAGE = "104512345678901"
PAGE_2 = "104512345678902"
PSID = "2400000000000001"
NUMBER = "105500000000001"
NUMBER_2 = "105500000000002"
WA_ID = "15551230001"
WA_ID_2 = "15551230002"
CONTRIBUTOR = ChannelRole.CONTRIBUTOR
OWNER_ASSIGNED = "parley.conversation.owner_assigned.v1"


def start_time() -> datetime:
    """The customer's message time: recent (routing's idle sweeps never see it), whole seconds."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def of_reply(events: list[dict[str, Any]], reply_id: str, event_type: str) -> list[dict[str, Any]]:
    return of_type(events, event_type, reply_id=reply_id)


async def wait_sent(stack: Stack, reply_id: str, count: int = 1) -> list[dict[str, Any]]:
    return await stack.events(
        topics.REPLIES,
        lambda evs: len(of_reply(evs, reply_id, SENT)) >= count or bool(of_reply(evs, reply_id, FAILED)),
    )


async def wait_outcome(stack: Stack, reply_id: str) -> list[dict[str, Any]]:
    return await stack.events(
        topics.REPLIES,
        lambda evs: bool(of_reply(evs, reply_id, SENT) or of_reply(evs, reply_id, FAILED)),
    )


# --------------------------------------------------------------------------- sending


async def test_an_approved_messenger_reply_is_announced_and_sent(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    messenger = channel("ch-m", Provider.MESSENGER, PAGE, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=5)) as stack:
        window = await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))
        assert window["window_open"] is True
        assert datetime.fromisoformat(window["window_closes_at"]) == t0 + timedelta(hours=24)

        response = await stack.reply("conv-1", {"text": "Hello from Parley"}, "ana")
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "approved"
        assert body["messaging_type"] == "RESPONSE"
        reply_id = body["decision_id"]

        events = await wait_sent(stack, reply_id)
        mine = [e for e in events if e.get("reply_id") == reply_id]
        assert [e["type"] for e in mine] == [REQUESTED, APPROVED, SENT]
        requested, approved, sent = mine
        assert requested["text"] == "Hello from Parley"
        assert requested["agent_id"] == "ana"
        assert approved["provider"] == "messenger"
        assert approved["account_id"] == PAGE
        assert approved["recipient_id"] == PSID
        assert approved["messaging_type"] == "RESPONSE"
        assert sent["conversation_id"] == "conv-1"
        assert sent["agent_id"] == "ana"
        assert sent["sender_type"] == "human"
        assert sent["text"] == "Hello from Parley"

        (call,) = await stack.sandbox.sent(f"/{PAGE}/messages")
        assert call["status"] == 200
        assert sent["provider_message_id"] == call["result_id"]
        assert call["body"] == {
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Hello from Parley"},
        }
        assert not of_type(events, FAILED)


# --------------------------------------------------------------------------- windows


async def test_the_24_hour_window_and_the_human_agent_tag_at_their_boundaries(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    tagged = channel(
        "ch-tag", Provider.MESSENGER, PAGE, human_agent_tag=True, user_access={"ana": CONTRIBUTOR}
    )
    untagged = channel("ch-plain", Provider.MESSENGER, PAGE_2, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(tagged, await sandbox.page(PAGE)), (untagged, await sandbox.page(PAGE_2))]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        await stack.customer_message(inbound(tagged, "conv-tag", PSID, t0))
        await stack.customer_message(inbound(untagged, "conv-plain", PSID, t0))
        text = {"text": "Still there?"}

        stack.clock.now = t0 + timedelta(hours=24, seconds=-1)
        inside = await stack.check("conv-tag", text, "ana")
        assert inside.status_code == 200, inside.text
        assert inside.json()["approved"] is True
        assert inside.json()["messaging_type"] == "RESPONSE"
        assert datetime.fromisoformat(inside.json()["window_closes_at"]) == t0 + timedelta(hours=24)
        assert datetime.fromisoformat(inside.json()["human_agent_window_closes_at"]) == t0 + timedelta(days=7)

        stack.clock.now = t0 + timedelta(hours=24)  # exactly 24 hours is still inside
        assert (await stack.check("conv-tag", text, "ana")).json()["approved"] is True

        # inside the window the human-agent tag is dropped: the reply goes as a plain RESPONSE
        in_day = await stack.reply("conv-tag", {"text": "A person, same day", "tag": "HUMAN_AGENT"}, "ana")
        assert in_day.status_code == 202, in_day.text
        assert (in_day.json()["messaging_type"], in_day.json()["tag"]) == ("RESPONSE", None)
        await wait_sent(stack, in_day.json()["decision_id"])
        (plain,) = await stack.sandbox.sent(f"/{PAGE}/messages")
        assert plain["body"]["messaging_type"] == "RESPONSE"
        assert "tag" not in plain["body"]
        assert plain["version"] == GRAPH
        retired = await stack.reply("conv-tag", {"text": "Shipped", "tag": "POST_PURCHASE_UPDATE"}, "ana")
        assert retired.status_code == 422, retired.text
        assert retired.json()["code"] == "TAG_RETIRED"

        stack.clock.now = t0 + timedelta(hours=24, seconds=1)
        window = await stack.window("conv-tag", t0)
        assert window["window_open"] is False
        assert window["human_agent_tag_enabled"] is True
        closed = await stack.reply("conv-tag", text, "ana")
        assert closed.status_code == 422, closed.text
        assert closed.json()["code"] == "WINDOW_CLOSED"
        rejected_id = closed.json()["decision_id"]
        events = await stack.events(topics.REPLIES, lambda evs: bool(of_reply(evs, rejected_id, REJECTED)))
        (rejected,) = of_reply(events, rejected_id, REJECTED)
        assert [r["code"] for r in rejected["reasons"]] == ["WINDOW_CLOSED"]
        assert rejected["agent_id"] == "ana"
        assert not of_reply(events, rejected_id, APPROVED)

        # the HUMAN_AGENT tag: only where the channel enables it, only within 7 days
        human = {"text": "A person here, following up", "tag": "HUMAN_AGENT"}
        not_enabled = await stack.check("conv-plain", human, "ana")
        assert not_enabled.json()["approved"] is False
        assert "HUMAN_AGENT_NOT_ENABLED" in [r["code"] for r in not_enabled.json()["reasons"]]
        service_token = issue_dev_token(JWT, "bot-1", TENANT, [], scopes=[AUTOMATION_SCOPE])
        bot = await stack.api.post(
            "/v1/conversations/conv-tag/replies:check",
            json={**human, "sender_type": "automated"},
            headers={"authorization": f"Bearer {service_token}"},
        )
        assert "HUMAN_AGENT_FOR_HUMANS_ONLY" in [r["code"] for r in bot.json()["reasons"]]

        stack.clock.now = t0 + timedelta(days=7, seconds=-1)
        tagged_reply = await stack.reply("conv-tag", human, "ana")
        assert tagged_reply.status_code == 202, tagged_reply.text
        assert tagged_reply.json()["messaging_type"] == "MESSAGE_TAG"
        assert tagged_reply.json()["tag"] == "HUMAN_AGENT"
        reply_id = tagged_reply.json()["decision_id"]
        events = await wait_sent(stack, reply_id)
        (sent,) = of_reply(events, reply_id, SENT)
        _, call = await stack.sandbox.sent(f"/{PAGE}/messages")
        assert call["status"] == 200
        assert call["result_id"] == sent["provider_message_id"]
        assert call["body"]["messaging_type"] == "MESSAGE_TAG"
        assert call["body"]["tag"] == "HUMAN_AGENT"
        assert call["body"]["message"] == {"text": "A person here, following up"}

        stack.clock.now = t0 + timedelta(days=7, seconds=1)
        late = await stack.check("conv-tag", human, "ana")
        assert late.json()["approved"] is False
        assert [r["code"] for r in late.json()["reasons"]] == ["WINDOW_CLOSED"]


async def test_window_notices_are_published_once_each_as_the_clock_moves(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    lead = 3600
    messenger = channel("ch-m", Provider.MESSENGER, PAGE)
    whatsapp = channel("ch-wa", Provider.WHATSAPP, NUMBER, business_account_id=f"waba-{NUMBER}")

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, None), (whatsapp, None)]

    async with policy_stack(
        infra,
        namespace,
        store_url,
        setup,
        now=t0 + timedelta(minutes=1),
        window_closing_lead_s=lead,
        window_sweep_interval_s=3600,  # only the sweeps this test runs
    ) as stack:
        await stack.customer_message(inbound(messenger, "conv-m", PSID, t0))
        await stack.customer_message(inbound(whatsapp, "conv-wa", WA_ID, t0))
        events = await stack.events(topics.REPLY_WINDOWS, lambda evs: len(of_type(evs, OPENED)) >= 2)
        (opened,) = of_type(events, OPENED, conversation_id="conv-m")
        assert datetime.fromisoformat(opened["closes_at"]) == t0 + timedelta(hours=24)
        service = stack.service()

        async def sweep() -> int:
            return await service.sweep_windows(timedelta(seconds=lead))

        assert await sweep() == 0  # nothing is due yet

        stack.clock.now = t0 + timedelta(hours=24, seconds=1 - lead)
        assert await sweep() == 2  # closing soon, both conversations
        assert await sweep() == 0
        stack.clock.now = t0 + timedelta(hours=24, seconds=1)
        assert await sweep() == 2  # closed, both
        assert await sweep() == 0
        stack.clock.now = t0 + timedelta(days=7, seconds=1)
        assert await sweep() == 1  # the human agent window: Messenger only
        before = await stack.count(topics.REPLY_WINDOWS)
        assert await sweep() == 0
        await asyncio.sleep(0.5)
        assert await stack.count(topics.REPLY_WINDOWS) == before

        events = await stack.events(topics.REPLY_WINDOWS, lambda evs: len(evs) >= before)
        by_conversation = {
            conversation: sorted(e["type"] for e in events if e["conversation_id"] == conversation)
            for conversation in ("conv-m", "conv-wa")
        }
        assert by_conversation == {
            "conv-m": sorted([OPENED, CLOSING, CLOSED, HUMAN_CLOSED]),
            "conv-wa": sorted([OPENED, CLOSING, CLOSED]),
        }
        (closing,) = of_type(events, CLOSING, conversation_id="conv-m")
        assert datetime.fromisoformat(closing["closes_at"]) == t0 + timedelta(hours=24)
        (closed,) = of_type(events, CLOSED, conversation_id="conv-m")
        assert datetime.fromisoformat(closed["closes_at"]) == t0 + timedelta(hours=24)
        (human,) = of_type(events, HUMAN_CLOSED, conversation_id="conv-m")
        assert datetime.fromisoformat(human["closes_at"]) == t0 + timedelta(days=7)
        assert datetime.fromisoformat(human["last_customer_message_at"]) == t0


async def test_window_notices_reach_every_conversation_when_many_are_recent(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    messenger = channel("ch-m", Provider.MESSENGER, PAGE)
    x = channel("ch-x", Provider.X, "1500000000000000001")

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, None), (x, None)]

    async with policy_stack(
        infra,
        namespace,
        store_url,
        setup,
        now=t0 + timedelta(hours=25),
        window_sweep_interval_s=3600,
    ) as stack:
        service = stack.service()
        # a thousand X direct messages of the last days (X has no window: nothing to announce),
        # recorded as policy records every inbound message (straight into its store, for speed)
        busy = [
            inbound(x, f"conv-x-{n}", str(1600000000000000000 + n), t0 - timedelta(days=2))
            for n in range(1000)
        ]
        for start in range(0, len(busy), 250):
            await asyncio.gather(*(service.store.record_inbound(m) for m in busy[start : start + 250]))
        await stack.customer_message(inbound(messenger, "conv-m", PSID, t0))
        # the Messenger window closed an hour ago: closing and closed are due
        assert await service.sweep_windows(timedelta(hours=1)) == 2


# --------------------------------------------------------------------------- roles


async def test_viewers_are_refused_and_strangers_see_nothing(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    messenger = channel(
        "ch-m", Provider.MESSENGER, PAGE, user_access={"vera": ChannelRole.VIEWER, "ana": CONTRIBUTOR}
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))
        text = {"text": "hi"}

        viewer = await stack.reply("conv-1", text, "vera")
        assert viewer.status_code == 422, viewer.text
        assert viewer.json()["code"] == "ROLE_FORBIDDEN"
        # a Viewer still sees the conversation's window
        seen = await stack.api.get("/v1/conversations/conv-1/reply-window", headers=auth("vera"))
        assert seen.status_code == 200

        for path in ("replies", "replies:check"):
            nobody = await stack.api.post(
                f"/v1/conversations/conv-1/{path}",
                json=text,
                headers={**auth("nobody"), "Idempotency-Key": "n"},
            )
            assert nobody.status_code == 404, nobody.text
            assert nobody.json()["code"] == "CONVERSATION_NOT_FOUND"
            stranger = await stack.api.post(
                f"/v1/conversations/conv-1/{path}",
                json=text,
                headers={**auth("ana", OTHER_TENANT, ["admin"]), "Idempotency-Key": "o"},
            )
            assert stranger.status_code == 404, stranger.text
            anonymous = await stack.api.post(
                f"/v1/conversations/conv-1/{path}", json=text, headers={"Idempotency-Key": "a"}
            )
            assert anonymous.status_code == 401
            assert anonymous.json()["code"] == "UNAUTHORIZED"
        assert (
            await stack.api.get("/v1/conversations/conv-1/reply-window", headers=auth("nobody"))
        ).status_code == 404
        assert (await stack.api.get("/v1/conversations/conv-1/reply-window")).status_code == 401
        assert (await stack.reply("conv-unknown", text, "ana")).status_code == 404

        # a tenant admin without a channel role acts as a Supervisor; a Contributor may reply
        assert (await stack.check("conv-1", text, "boss", roles=["admin"])).json()["approved"] is True
        allowed = await stack.reply("conv-1", text, "ana")
        assert allowed.status_code == 202, allowed.text
        # one partition per conversation: once the allowed reply is sent, the refusals are there
        events = await wait_sent(stack, allowed.json()["decision_id"])
        (refused,) = of_type(events, REJECTED, reply_id=viewer.json()["decision_id"])
        assert [r["code"] for r in refused["reasons"]] == ["ROLE_FORBIDDEN"]
        # the invisible and anonymous attempts left no trace
        assert {e["agent_id"] for e in of_type(events, REQUESTED)} == {"vera", "ana"}
        assert len(await stack.sandbox.accepted(f"/{PAGE}/messages")) == 1


# --------------------------------------------------------------------------- delivery errors


async def test_throttling_is_retried_and_permanent_errors_are_not(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    access = {"ana": CONTRIBUTOR}
    throttled = channel("ch-throttled", Provider.MESSENGER, PAGE, user_access=access)
    revoked = channel("ch-revoked", Provider.MESSENGER, PAGE_2, user_access=access)
    wa_throttled = channel("ch-wa-throttled", Provider.WHATSAPP, NUMBER, user_access=access)
    wa_closed = channel("ch-wa-closed", Provider.WHATSAPP, NUMBER_2, user_access=access)
    tokens: dict[str, str] = {}

    async def setup(sandbox: Sandbox) -> list[Any]:
        tokens["revoked"] = await sandbox.page(PAGE_2)
        return [
            (throttled, await sandbox.page(PAGE)),
            (revoked, tokens["revoked"]),
            (wa_throttled, await sandbox.whatsapp_number(NUMBER)),
            # the sandbox refuses free-form sends outside its own record of the window
            (wa_closed, await sandbox.whatsapp_number(NUMBER_2, enforce_window=True)),
        ]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        for snapshot, conversation, customer in (
            (throttled, "conv-throttled", PSID),
            (revoked, "conv-revoked", PSID),
            (wa_throttled, "conv-wa-throttled", WA_ID),
            (wa_closed, "conv-wa-closed", WA_ID_2),
        ):
            await stack.customer_message(inbound(snapshot, conversation, customer, t0))
        sandbox = stack.sandbox
        await sandbox.fault(path_contains=f"/{PAGE}/messages", status=429, code=4, times=2)
        await sandbox.fault(path_contains=f"/{NUMBER}/messages", status=400, code=130429, times=2)
        await sandbox.admin("POST", f"/meta/tokens/{tokens['revoked']}/revoke", {"subcode": 460})

        ids = {}
        for conversation in ("conv-throttled", "conv-wa-throttled", "conv-wa-closed", "conv-revoked"):
            response = await stack.reply(conversation, {"text": f"reply on {conversation}"}, "ana")
            assert response.status_code == 202, response.text
            ids[conversation] = response.json()["decision_id"]
        events = await stack.events(
            topics.REPLIES,
            lambda evs: all(of_reply(evs, i, SENT) or of_reply(evs, i, FAILED) for i in ids.values()),
        )

        # throttled twice, then accepted: sent once, announced once, never failed
        for conversation, path, throttle in (
            ("conv-throttled", f"/{PAGE}/messages", 429),
            ("conv-wa-throttled", f"/{NUMBER}/messages", 400),
        ):
            reply_id = ids[conversation]
            assert not of_reply(events, reply_id, FAILED), conversation
            (sent,) = of_reply(events, reply_id, SENT)
            calls = await sandbox.sent(path)
            assert [c["status"] for c in calls] == [throttle, throttle, 200], conversation
            assert sent["provider_message_id"] == calls[2]["result_id"]
            assert len({str(c["body"]) for c in calls}) == 1  # the same message each time

        # outside WhatsApp's window (131047): failed at the first attempt, no retry
        (failed,) = of_reply(events, ids["conv-wa-closed"], FAILED)
        assert failed["error_kind"] == "window_closed"
        assert failed["attempts"] == 1
        assert failed["error"]["code"] == 131047
        assert not of_reply(events, ids["conv-wa-closed"], SENT)
        assert [c["status"] for c in await sandbox.sent(f"/{NUMBER_2}/messages")] == [400]

        # a revoked token (190): failed without retrying, and the channel needs a reconnect
        (failed,) = of_reply(events, ids["conv-revoked"], FAILED)
        assert failed["error_kind"] == "reauth_required"
        assert failed["attempts"] == 1
        assert failed["error"]["code"] == 190
        assert failed["error"]["subcode"] == 460
        assert [c["status"] for c in await sandbox.sent(f"/{PAGE_2}/messages")] == [400]
        channel_events = await stack.events(topics.CHANNEL_EVENTS, lambda evs: bool(of_type(evs, REAUTH)))
        (reauth,) = of_type(channel_events, REAUTH)
        assert reauth["channel_id"] == "ch-revoked"
        assert reauth["tenant_id"] == revoked.tenant_id
        assert reauth["provider"] == "messenger"
        assert reauth["provider_code"] == 190
        assert reauth["provider_subcode"] == 460


def conversations_on_both_partitions(prefix: str) -> tuple[str, str]:
    """Two conversation ids whose replies land on different partitions (the tests' topics have 2)."""
    partitioner = DefaultPartitioner()
    by_partition: dict[int, str] = {}
    n = 0
    while len(by_partition) < 2:
        conversation = f"{prefix}-{n}"
        by_partition.setdefault(partitioner(conversation.encode(), [0, 1], [0, 1]), conversation)
        n += 1
    return by_partition[0], by_partition[1]


async def test_a_provider_outage_longer_than_a_few_tries_delays_the_reply_and_no_other_partition(
    infra: Infra, namespace: str, store_url: str
) -> None:
    """429 for 6 s, then 500 for 6 s: the reply goes out once when the provider is back.

    Twelve seconds is beyond the five tries (about 7.5 s) delivery once gave up after. Meanwhile a
    reply in a conversation on the other partition is sent at once: it has a consumer of its own.
    """
    t0 = start_time()
    access = {"ana": CONTRIBUTOR}
    down = channel("ch-down", Provider.MESSENGER, PAGE, user_access=access)
    up = channel("ch-up", Provider.MESSENGER, PAGE_2, user_access=access)
    held, other = conversations_on_both_partitions("conv-outage")

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(down, await sandbox.page(PAGE)), (up, await sandbox.page(PAGE_2))]

    async with policy_stack(
        infra,
        namespace,
        store_url,
        setup,
        now=t0 + timedelta(minutes=1),
        delivery_backoff_s=0.2,
        delivery_backoff_max_s=1.0,
    ) as stack:
        await stack.customer_message(inbound(down, held, PSID, t0))
        await stack.customer_message(inbound(up, other, PSID, t0))
        sandbox = stack.sandbox
        sends = f"/{PAGE}/messages"
        await sandbox.fault(path_contains=sends, status=429, code=4, times=1_000_000)
        outage_started = time.monotonic()
        response = await stack.reply(held, {"text": "through the outage"}, "ana")
        assert response.status_code == 202, response.text
        reply_id = response.json()["decision_id"]
        await eventually(lambda: sandbox.sent(sends))

        response = await stack.reply(other, {"text": "not held back"}, "ana")
        assert response.status_code == 202, response.text
        other_id = response.json()["decision_id"]
        events = await wait_sent(stack, other_id)
        assert of_reply(events, other_id, SENT)
        assert not of_reply(events, reply_id, SENT) and not of_reply(events, reply_id, FAILED)

        await asyncio.sleep(max(0.0, outage_started + 6 - time.monotonic()))
        await sandbox.admin("DELETE", "/faults")
        await sandbox.fault(path_contains=sends, status=500, code=2, times=1_000_000)
        await asyncio.sleep(max(0.0, outage_started + 12 - time.monotonic()))
        await sandbox.admin("DELETE", "/faults")

        events = await wait_sent(stack, reply_id)
        assert not of_reply(events, reply_id, FAILED)
        (sent,) = of_reply(events, reply_id, SENT)
        calls = await sandbox.sent(sends)
        statuses = [c["status"] for c in calls]
        assert statuses[-1] == 200 and statuses.count(200) == 1, statuses
        assert 429 in statuses and 500 in statuses
        assert len(statuses) - 1 > 5  # more failed tries than the old bound
        assert sent["provider_message_id"] == calls[-1]["result_id"]
        assert len({str(c["body"]) for c in calls}) == 1


async def test_a_stop_during_a_retry_wait_is_prompt_and_the_successor_sends_once(
    infra: Infra, namespace: str, store_url: str
) -> None:
    """The provider asks for a minute; policy stops meanwhile, well within its shutdown timeout.

    The approval was not committed, so the next policy process delivers it: one send in all.
    """
    t0 = start_time()
    messenger = channel("ch-m", Provider.MESSENGER, PAGE, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    async with policy_stack(
        infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1), replicas=0
    ) as stack:
        sandbox = stack.sandbox
        sends = f"/{PAGE}/messages"

        def policy_app() -> Starlette:
            settings = policy_settings(infra, namespace, store_url, sandbox.url, shutdown_timeout_s=30)
            return create_policy_app(settings, clock=stack.clock)

        first = policy_app()
        async with running(first) as client:
            stack.apps.append(first)
            stack.clients.append(client)
            await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))
            # Meta's usage header: access regained in a minute
            await sandbox.fault(path_contains=sends, status=429, code=4, times=1_000, retry_after_s=60)
            response = await stack.reply("conv-1", {"text": "after a restart"}, "ana")
            assert response.status_code == 202, response.text
            reply_id = response.json()["decision_id"]
            await eventually(lambda: sandbox.sent(sends))
            await asyncio.sleep(0.5)  # waiting out the provider's minute now
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 5  # not the minute, nor the 30 s shutdown timeout
        assert [c["status"] for c in await sandbox.sent(sends)] == [429]
        events = await stack.events(topics.REPLIES, lambda evs: bool(of_reply(evs, reply_id, APPROVED)))
        assert not of_reply(events, reply_id, SENT) and not of_reply(events, reply_id, FAILED)

        await sandbox.admin("DELETE", "/faults")
        second = policy_app()
        async with running(second) as client:
            stack.clients[0] = client
            events = await wait_sent(stack, reply_id)
            assert not of_reply(events, reply_id, FAILED)
            (sent,) = of_reply(events, reply_id, SENT)
            calls = await sandbox.sent(sends)
            assert [c["status"] for c in calls] == [429, 200]
            assert sent["provider_message_id"] == calls[1]["result_id"]


# --------------------------------------------------------------------------- idempotency


async def test_a_retried_request_and_a_redelivered_approval_send_once(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    messenger = channel("ch-m", Provider.MESSENGER, PAGE, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))
        first = await stack.reply("conv-1", {"text": "once"}, "ana", idempotency_key="k-1")
        again = await stack.reply("conv-1", {"text": "once"}, "ana", idempotency_key="k-1")
        assert first.status_code == again.status_code == 202, (first.text, again.text)
        reply_id = first.json()["decision_id"]
        assert again.json()["decision_id"] == reply_id
        assert again.json()["messaging_type"] == "RESPONSE"

        events = await wait_sent(stack, reply_id)
        (sent,) = of_reply(events, reply_id, SENT)
        assert len(of_reply(events, reply_id, REQUESTED)) == 1
        assert len(of_reply(events, reply_id, APPROVED)) == 1

        # the approval redelivered as it was (a consumer crash before its commit)
        records = await stack.records(topics.REPLIES, lambda evs: bool(of_reply(evs, reply_id, APPROVED)))
        (approval,) = [r for r in records if event_of(r)["type"] == APPROVED]
        await stack.republish(approval)
        events = await wait_sent(stack, reply_id, count=2)
        resent = of_reply(events, reply_id, SENT)
        assert len(resent) == 2
        assert {e["provider_message_id"] for e in resent} == {sent["provider_message_id"]}
        assert {e["ce_id"] for e in resent} == {f"{reply_id}:sent"}
        calls = await stack.sandbox.sent(f"/{PAGE}/messages")
        assert len(calls) == 1
        assert calls[0]["result_id"] == sent["provider_message_id"]


async def test_a_decision_stored_but_not_announced_is_announced_when_the_request_is_retried(
    infra: Infra, namespace: str, store_url: str
) -> None:
    """A crash (or a broker timeout) between storing the decision and publishing the approval.

    The client's retry with the same key must not answer 202 for a reply nobody will deliver.
    """
    t0 = start_time()
    messenger = channel("ch-m", Provider.MESSENGER, PAGE, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))
        service = stack.service()
        publish = service.publish

        async def broker_gone_after_the_request(event: Any, event_id: str) -> None:
            if event_id.endswith(":approved"):
                raise TimeoutError("the broker did not acknowledge")
            await publish(event, event_id)

        service.publish = broker_gone_after_the_request
        with pytest.raises(TimeoutError):
            await stack.reply("conv-1", {"text": "announce me"}, "ana", idempotency_key="k-1")
        service.publish = publish

        retried = await stack.reply("conv-1", {"text": "announce me"}, "ana", idempotency_key="k-1")
        assert retried.status_code == 202, retried.text
        reply_id = retried.json()["decision_id"]
        events = await wait_sent(stack, reply_id)
        # the first attempt got as far as "requested": announced again under the same event id
        assert {e["ce_id"] for e in of_reply(events, reply_id, REQUESTED)} == {f"{reply_id}:requested"}
        assert len(of_reply(events, reply_id, APPROVED)) == 1
        (sent,) = of_reply(events, reply_id, SENT)
        calls = await stack.sandbox.accepted(f"/{PAGE}/messages")
        assert [c["result_id"] for c in calls] == [sent["provider_message_id"]]
        assert calls[0]["body"]["message"]["text"] == "announce me"

        # once announced, a further retry announces nothing
        again = await stack.reply("conv-1", {"text": "announce me"}, "ana", idempotency_key="k-1")
        assert again.status_code == 202
        await asyncio.sleep(1)
        assert await stack.count(topics.REPLIES) == len(events)


# --------------------------------------------------------------------------- send rates


async def test_two_policy_replicas_share_the_whatsapp_send_rate(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    whatsapp = channel("ch-wa", Provider.WHATSAPP, NUMBER, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(whatsapp, await sandbox.whatsapp_number(NUMBER))]

    async with policy_stack(
        infra,
        namespace,
        store_url,
        setup,
        now=t0 + timedelta(minutes=1),  # frozen: every request falls in the same second
        replicas=2,
        whatsapp_throughput_per_s=5,
    ) as stack:
        await stack.customer_message(inbound(whatsapp, "conv-1", WA_ID, t0))
        responses = await asyncio.gather(
            *(
                stack.reply("conv-1", {"text": f"burst {n}"}, "ana", client=stack.clients[n % 2])
                for n in range(20)
            )
        )
        approved = [r for r in responses if r.status_code == 202]
        limited = [r for r in responses if r.status_code == 422]
        assert len(approved) == 5, [r.text for r in responses]
        assert len(limited) == 15
        for response in limited:
            assert response.json()["code"] == "RATE_LIMITED"
            assert response.headers["Retry-After"] == "1"

        ids = {r.json()["decision_id"] for r in approved}
        events = await stack.events(
            topics.REPLIES, lambda evs: all(of_reply(evs, i, SENT) or of_reply(evs, i, FAILED) for i in ids)
        )
        assert not [e for e in of_type(events, FAILED) if e["reply_id"] in ids]
        await asyncio.sleep(0.5)
        accepted = await stack.sandbox.accepted(f"/{NUMBER}/messages")
        assert len(accepted) == 5

        # the next second has a fresh budget
        stack.clock.advance(seconds=1)
        later = await stack.reply("conv-1", {"text": "next second"}, "ana")
        assert later.status_code == 202, later.text


async def test_a_retried_request_uses_no_send_slot(infra: Infra, namespace: str, store_url: str) -> None:
    t0 = start_time()
    whatsapp = channel("ch-wa", Provider.WHATSAPP, NUMBER, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(whatsapp, await sandbox.whatsapp_number(NUMBER))]

    async with policy_stack(
        infra,
        namespace,
        store_url,
        setup,
        now=t0 + timedelta(minutes=1),
        whatsapp_throughput_per_s=2,
    ) as stack:
        await stack.customer_message(inbound(whatsapp, "conv-1", WA_ID, t0))
        for _ in range(2):  # one reply, retried: one message to send
            retried = await stack.reply("conv-1", {"text": "first"}, "ana", idempotency_key="k-a")
            assert retried.status_code == 202, retried.text
        other = await stack.reply("conv-1", {"text": "second"}, "ana", idempotency_key="k-b")
        assert other.status_code == 202, other.text


async def test_a_rate_limited_request_retried_after_retry_after_is_decided_again(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    whatsapp = channel("ch-wa", Provider.WHATSAPP, NUMBER, user_access={"ana": CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(whatsapp, await sandbox.whatsapp_number(NUMBER))]

    async with policy_stack(
        infra,
        namespace,
        store_url,
        setup,
        now=t0 + timedelta(minutes=1),
        whatsapp_throughput_per_s=1,
    ) as stack:
        await stack.customer_message(inbound(whatsapp, "conv-1", WA_ID, t0))
        assert (await stack.reply("conv-1", {"text": "a"}, "ana", idempotency_key="k-a")).status_code == 202
        limited = await stack.reply("conv-1", {"text": "b"}, "ana", idempotency_key="k-b")
        assert limited.status_code == 422
        assert limited.json()["code"] == "RATE_LIMITED"
        stack.clock.advance(seconds=float(limited.headers["Retry-After"]))
        retried = await stack.reply("conv-1", {"text": "b"}, "ana", idempotency_key="k-b")
        assert retried.status_code == 202, retried.text


# --------------------------------------------------------------------------- with routing


async def test_a_sent_reply_makes_the_agent_the_owner_in_routing(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    messenger = channel(
        "ch-m", Provider.MESSENGER, PAGE, auto_ownership=True, user_access={"ana": CONTRIBUTOR}
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    routing_settings = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
        log_level="warning",
    )
    async with (
        policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack,
        running(create_routing_app(routing_settings)) as routing,
    ):
        await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))

        async def conversation() -> dict[str, Any] | None:
            response = await routing.get("/v1/conversations/conv-1", headers=auth("ana"))
            return dict(response.json()) if response.status_code == 200 else None

        before = await eventually(conversation)
        assert before["owner_id"] is None

        response = await stack.reply("conv-1", {"text": "I'll take this"}, "ana")
        assert response.status_code == 202, response.text
        reply_id = response.json()["decision_id"]
        events = await wait_sent(stack, reply_id)
        assert of_reply(events, reply_id, SENT)

        async def owned() -> dict[str, Any] | None:
            current = await conversation()
            history = [h["type"] for h in current["history"]] if current else []
            return current if current and OWNER_ASSIGNED in history else None

        after = await eventually(owned)
        assert after["owner_id"] == "ana"
        (outbound,) = [h for h in after["history"] if h.get("direction") == "outbound"]
        assert outbound["provider_message_id"] == of_reply(events, reply_id, SENT)[0]["provider_message_id"]
        (assigned,) = [h for h in after["history"] if h["type"] == OWNER_ASSIGNED]
        assert assigned["owner_id"] == "ana"
        assert assigned["reason"] == "auto_ownership"
