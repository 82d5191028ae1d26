"""WhatsApp Conversation Routing end to end against the real broker and store, with the provider
sandbox: Meta's signed webhooks go through ingest and the normalizer; a ``control_taken``
handover (another responder took the thread) reaches routing as the same handover event
Messenger's give, and policy then refuses a reply and the typing indicator with
NOT_THREAD_OWNER; a ``control_passed`` handover gives the thread back and the reply goes out; an
agent then takes and releases the thread through policy's API (WhatsApp's thread control API). A
``standby`` delivery (Meta Business Agent answering while Parley's app listens) joins the history
marked and tells routing Parley no longer answers the thread."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import ChannelRole, Provider
from parley_ingest.bootstrap import create_ingest_app, create_normalizer_app
from parley_ingest.domain.normalize.events import conversation_id
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually
from tests.support.policy import JWT, Sandbox, auth, channel, of_type, policy_stack

pytestmark = pytest.mark.integration

SECRET = "wa-routing-test-secret"
NUMBER = "106540352242923"
CUSTOMER = "15550124444"
THREAD_CONTROL_CHANGED = "parley.conversation.thread_control_changed.v1"


def signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"content-type": "application/json", "x-hub-signature-256": signature}


def change(field: str, value: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "id": "waba-routing",
        "time": int(datetime.now(UTC).timestamp()),
        "changes": [{"field": field, "value": value}],
    }
    return {"object": "whatsapp_business_account", "entry": [entry]}


def handover(kind: str, at: datetime) -> dict[str, Any]:
    return change(
        "messaging_handovers",
        {
            "messaging_product": "whatsapp",
            "recipient": {"display_phone_number": "15550002222", "phone_number_id": NUMBER},
            "sender": {"phone_number": CUSTOMER},
            "timestamp": str(int(at.timestamp())),
            "type": kind,
            kind: {"metadata": "test"},
        },
    )


async def test_a_thread_taken_on_whatsapp_refuses_replies_until_it_is_passed_back(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    whatsapp = channel("ch-wa-rt", Provider.WHATSAPP, NUMBER, user_access={"ana": ChannelRole.CONTRIBUTOR})
    conversation = conversation_id(whatsapp.tenant_id, whatsapp.channel_id, f"dm:{CUSTOMER}")

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(whatsapp, await sandbox.whatsapp_number(NUMBER))]

    routing_settings = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
        log_level="warning",
    )
    ingest_settings = IngestSettings(
        kafka_bootstrap_servers=infra.kafka,
        topic_namespace=namespace,
        meta_app_secrets=SECRET,
        meta_verify_token="t",
    )
    normalizer_settings = NormalizerSettings(
        kafka_bootstrap_servers=infra.kafka, topic_namespace=namespace, consumer_group_prefix=namespace
    )
    async with (
        policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=2)) as stack,
        running(create_routing_app(routing_settings)) as routing,
        running(create_ingest_app(ingest_settings)) as ingest,
        running(create_normalizer_app(normalizer_settings)),
    ):

        async def post(body: dict[str, Any]) -> None:
            raw, headers = signed(body)
            assert (await ingest.post("/webhooks/meta", content=raw, headers=headers)).status_code == 200

        await post(
            change(
                "messages",
                {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550002222", "phone_number_id": NUMBER},
                    "contacts": [{"profile": {"name": "Rui"}, "wa_id": CUSTOMER}],
                    "messages": [
                        {
                            "from": CUSTOMER,
                            "id": "wamid.RT1",
                            "timestamp": str(int(t0.timestamp())),
                            "type": "text",
                            "text": {"body": "I need help"},
                        }
                    ],
                },
            )
        )

        async def history(changes: int) -> list[dict[str, Any]] | None:
            response = await routing.get(f"/v1/conversations/{conversation}", headers=auth("ana"))
            if response.status_code != 200:
                return None
            found = of_type(response.json()["history"], THREAD_CONTROL_CHANGED)
            return found if len(found) >= changes else None

        async def known() -> bool | None:
            response = await routing.get(f"/v1/conversations/{conversation}", headers=auth("ana"))
            return True if response.status_code == 200 else None

        await eventually(known)
        # another responder (Meta's AI agent, say) takes the thread: WhatsApp tells Parley's app
        await post(handover("control_taken", t0 + timedelta(seconds=30)))
        [taken] = await eventually(lambda: history(1))
        assert (taken["parley_active"], taken["reason"]) == (False, "taken")

        async def refused() -> dict[str, Any] | None:
            response = await stack.check(conversation, {"text": "Hello"}, "ana")
            codes = [r["code"] for r in response.json()["reasons"]]
            return dict(response.json()) if "NOT_THREAD_OWNER" in codes else None

        await eventually(refused)
        response = await stack.reply(conversation, {"text": "Hello"}, "ana", idempotency_key="while-taken")
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "NOT_THREAD_OWNER"
        typing = await stack.api.post(
            f"/v1/conversations/{conversation}/read", json={"typing": True}, headers=auth("ana")
        )
        assert typing.status_code == 409, typing.text
        assert typing.json()["code"] == "NOT_THREAD_OWNER"
        assert await stack.sandbox.sent("/messages") == []

        # the thread is passed back to Parley: replies go out again
        await post(handover("control_passed", t0 + timedelta(seconds=60)))
        changes = await eventually(lambda: history(2))
        assert (changes[-1]["parley_active"], changes[-1]["reason"]) == (True, "passed")

        async def allowed() -> dict[str, Any] | None:
            response = await stack.check(conversation, {"text": "Hello"}, "ana")
            return dict(response.json()) if response.json()["approved"] else None

        await eventually(allowed)
        response = await stack.reply(
            conversation, {"text": "Hello, a person here"}, "ana", idempotency_key="after"
        )
        assert response.status_code == 202, response.text

        async def sent() -> list[dict[str, Any]] | None:
            calls = await stack.sandbox.accepted("/messages")
            return calls or None

        [delivered] = await eventually(sent)
        assert delivered["body"]["to"] == CUSTOMER

        # Meta Business Agent answers the thread again: Parley's app hears it on standby (the
        # customer's message and the agent's reply), the history shows both marked, and Parley no
        # longer answers the thread
        await post(
            change(
                "standby",
                {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550002222", "phone_number_id": NUMBER},
                    "standby": {
                        "messages": [
                            {
                                "from": CUSTOMER,
                                "id": "wamid.RT2",
                                "timestamp": str(int((t0 + timedelta(seconds=90)).timestamp())),
                                "type": "text",
                                "text": {"body": "Actually, one more question"},
                            }
                        ],
                        "message_echoes": [
                            {
                                "from": "15550002222",
                                "to": CUSTOMER,
                                "id": "wamid.RT3",
                                "timestamp": str(int((t0 + timedelta(seconds=95)).timestamp())),
                                "type": "text",
                                "text": {"body": "Sure, ask away"},
                            }
                        ],
                    },
                },
            )
        )
        changes = await eventually(lambda: history(3))
        assert (changes[-1]["parley_active"], changes[-1]["reason"]) == (False, "standby_message")

        async def standby_messages() -> list[dict[str, Any]] | None:
            response = await routing.get(f"/v1/conversations/{conversation}", headers=auth("ana"))
            found = [e for e in response.json()["history"] if e.get("standby")]
            return found if len(found) >= 2 else None

        marked = await eventually(standby_messages)
        assert [(m["provider_message_id"], m["direction"]) for m in marked] == [
            ("wamid.RT2", "inbound"),
            ("wamid.RT3", "outbound"),
        ]
        await eventually(refused)

        # an agent takes the thread through policy (WhatsApp's thread control API), then releases it
        taken_by_agent = await stack.api.post(
            f"/v1/conversations/{conversation}/thread-control:take", headers=auth("ana")
        )
        assert taken_by_agent.status_code == 200, taken_by_agent.text
        number = stack.sandbox.state.whatsapp_numbers[NUMBER]
        assert number.thread_owners == {CUSTOMER: stack.sandbox.state.meta_app_id}
        released = await stack.api.post(
            f"/v1/conversations/{conversation}/thread-control:release", headers=auth("ana")
        )
        assert released.status_code == 200, released.text
        assert released.json() == {"conversation_id": conversation, "parley_active": False}
        assert number.thread_owners == {}
