"""Each process's ``build(settings, adapters)`` with in-memory fakes: its router on FastStream's
in-memory broker reaches its service, what the service publishes is declared on the router, its
API is mounted on the same service, and its start and stop work reaches its adapters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError
from parley_events import (
    ChannelRole,
    ChannelSnapshot,
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    ConversationCreated,
    ConversationMessageAdded,
    ConversationOwnerAssigned,
    Direction,
    MessageReceived,
    Provider,
    ReplyApproved,
    ReplyRequested,
    ReplySent,
    ReplyWindowOpened,
    SenderType,
    TemplateStatusChanged,
    WebhookReceived,
)
from parley_ingest.bootstrap import IngestAdapters, NormalizerAdapters, build_ingest, build_normalizer
from parley_ingest.domain import deliveries
from parley_ingest.service import UnprocessableDelivery
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_onboarding.bootstrap import OnboardingAdapters
from parley_onboarding.bootstrap import build as build_onboarding
from parley_onboarding.settings import OnboardingSettings
from parley_policy.bootstrap import PolicyAdapters
from parley_policy.bootstrap import build as build_policy
from parley_policy.domain.decision import TemplateInfo
from parley_policy.service import DeliveryInterrupted
from parley_policy.settings import PolicySettings
from parley_providers.base import Connector
from parley_routing.bootstrap import RoutingAdapters
from parley_routing.bootstrap import build as build_routing
from parley_routing.settings import RoutingSettings
from parley_shared.auth import issue_dev_token
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory
from parley_shared.kafka import RetryPolicy, RetryThenDeadLetter, declared_events
from parley_shared.runtime import Wiring
from parley_shared.vault import Credential
from starlette.applications import Starlette

from tests.support.aliases import empty_aliases
from tests.support.fakes.bus import FakePublisher, on_test_broker
from tests.support.fakes.onboarding import (
    FakeAccountConnector,
    FakeNumberConnector,
    FakeOnboardingStore,
    FakePageConnector,
)
from tests.support.fakes.policy import FakeCredentials, FakePolicyStore, FakeTemplates
from tests.support.fakes.routing import FakeRepository
from tests.unit.factories import PAGE_ID, T0, channel, message, messaging_text, page_delivery, page_entry

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-of-at-least-32-bytes"
NOW = T0 + timedelta(minutes=5)
# no namespace from the environment: the tests publish to the plain catalog names
PLAIN: dict[str, Any] = {"topic_namespace": "", "consumer_group_prefix": "parley"}


def directory(*snapshots: ChannelSnapshot) -> KafkaChannelDirectory:
    """The channel read model, fed by hand (never started: no consumer)."""
    channels = KafkaChannelDirectory("unused:9092", "parley.channels.v1")
    for snapshot in snapshots:
        channels.apply(snapshot.channel_id.encode(), snapshot.model_dump_json().encode())
    return channels


def teams() -> KafkaTeamDirectory:
    return KafkaTeamDirectory("unused:9092", "parley.teams.v1")


def visible_channel() -> ChannelSnapshot:
    return channel().model_copy(update={"all_users_role": ChannelRole.CONTRIBUTOR})


async def call(wiring: Wiring, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request to the routes the wiring mounts."""
    app = Starlette(routes=list(wiring.routes))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        return await client.request(method, path, **kwargs)


def bearer(user: str = "ana", tenant: str = "ten_acme") -> dict[str, str]:
    return {"authorization": f"Bearer {issue_dev_token(SECRET, user, tenant, [])}"}


def admin_bearer(tenant: str = "ten_acme") -> dict[str, str]:
    return {"authorization": f"Bearer {issue_dev_token(SECRET, 'boss', tenant, ['admin'])}"}


def template_review() -> TemplateStatusChanged:
    return TemplateStatusChanged(
        event_id="evt_tpl_1",
        tenant_id="ten_acme",
        business_account_id="waba_1",
        template_name="order_update",
        language="en",
        status="APPROVED",
        provider_timestamp=T0,
        delivery_id="dlv_1",
    )


def sent(reply_id: str = "rpl_1") -> ReplySent:
    return ReplySent(
        reply_id=reply_id,
        conversation_id="conv_1",
        tenant_id="ten_acme",
        channel_id="chn_1",
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        provider_message_id="m_reply_1",
        text="On it",
        sent_at=NOW,
    )


def approved(reply_id: str = "rpl_2") -> ReplyApproved:
    return ReplyApproved(
        event_id=f"{reply_id}:approved",
        reply_id=reply_id,
        conversation_id="conv_1",
        tenant_id="ten_acme",
        channel_id="chn_1",
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        occurred_at=NOW,
        provider=Provider.MESSENGER,
        account_id=PAGE_ID,
        recipient_id="psid",
        kind="text",
        text="not sent yet",
        messaging_type="RESPONSE",
    )


# --- routing -------------------------------------------------------------------------------------


def routing(repository: FakeRepository, publisher: FakePublisher) -> Any:
    adapters = RoutingAdapters(
        repository=repository,
        channels=directory(visible_channel()),
        teams=teams(),
        publisher=publisher,
        retry=RetryThenDeadLetter(None, RetryPolicy(max_attempts=1)),
    )
    return build_routing(RoutingSettings(jwt_hs256_secret=SECRET, **PLAIN), adapters, clock=lambda: NOW)


async def test_routing_applies_messages_and_sent_replies_from_its_router_and_skips_the_rest() -> None:
    repository, publisher = FakeRepository(), FakePublisher()
    wiring = routing(repository, publisher)

    async with on_test_broker(wiring.router, publisher) as bus:
        await bus.publish(message(1))
        await bus.publish(template_review())  # same topic, not a conversation change
        await bus.publish(sent())
        await bus.publish(approved())  # same topic: only a sent reply changes a conversation

    assert [type(e) for e in publisher.published] == [
        ConversationCreated,
        ConversationMessageAdded,
        ConversationMessageAdded,
        ConversationOwnerAssigned,  # the channel in the read model has auto-ownership on
    ]
    added = publisher.of(ConversationMessageAdded)
    assert [e.direction for e in added] == [Direction.INBOUND, Direction.OUTBOUND]
    assert repository.stored("conv_1").id == "conv_1"


async def test_routing_serves_its_api_from_the_service_its_router_feeds() -> None:
    repository, publisher = FakeRepository(), FakePublisher()
    wiring = routing(repository, publisher)
    async with on_test_broker(wiring.router, publisher) as bus:
        await bus.publish(message(1))

    response = await call(wiring, "GET", "/v1/conversations/conv_1", headers=bearer())

    assert response.status_code == 200, response.text
    assert response.json()["id"] == "conv_1"
    assert response.json()["sequence"] == 2


async def test_routing_starts_with_indexes_and_runs_its_read_models_and_background_work() -> None:
    repository = FakeRepository()
    wiring = routing(repository, FakePublisher())

    await wiring.prepare()  # before the broker starts: nothing is consumed before the tables exist
    assert repository.indexed
    await wiring.start()

    assert [m.source.name for m in wiring.read_models] == ["parley.channels.v1", "parley.teams.v1"]
    assert [p.name for p in wiring.periodic] == ["auto-resolve", "outbox-relay", "seen-messages-prune"]


# --- policy --------------------------------------------------------------------------------------


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[ReplyApproved] = []

    async def send(self, reply: ReplyApproved, token: str) -> str:
        assert token == "page-token"
        self.sent.append(reply)
        return f"m_sent_{len(self.sent)}"


def policy(
    store: FakePolicyStore, templates: FakeTemplates, sender: FakeSender, publisher: FakePublisher
) -> Any:
    adapters = PolicyAdapters(
        store=store,
        templates=templates,
        credentials=FakeCredentials(Credential("chn_1", "page-token", None)),  # type: ignore[arg-type]
        senders={Provider.MESSENGER: sender},
        channels=directory(visible_channel()),
        teams=teams(),
        publisher=publisher,
        retry=RetryThenDeadLetter(None, RetryPolicy(max_attempts=1)),
    )
    settings = PolicySettings(
        jwt_hs256_secret=SECRET,
        encryption_keys="k1:unused",
        meta_app_id="app",
        meta_app_secret="unused",
        **PLAIN,
    )
    return build_policy(settings, adapters, clock=lambda: NOW)


async def test_policy_opens_windows_approves_through_its_api_and_delivers_from_its_router() -> None:
    store, sender, publisher = FakePolicyStore(), FakeSender(), FakePublisher()
    wiring = policy(store, FakeTemplates(), sender, publisher)

    async with on_test_broker(wiring.router, publisher) as bus:
        await bus.publish(message(1))
        [opened] = publisher.of(ReplyWindowOpened)
        assert opened.conversation_id == "conv_1"

        response = await call(
            wiring,
            "POST",
            "/v1/conversations/conv_1/replies",
            json={"text": "On it"},
            headers={**bearer(), "Idempotency-Key": "k1"},
        )
        assert response.status_code in (200, 201, 202), response.text
        [requested], [approval] = publisher.of(ReplyRequested), publisher.of(ReplyApproved)
        assert requested.reply_id == approval.reply_id

        await bus.publish(approval)

    assert sender.sent == [approval]
    [delivered] = publisher.of(ReplySent)
    assert (delivered.reply_id, delivered.provider_message_id) == (approval.reply_id, "m_sent_1")


async def test_policy_records_template_reviews_from_its_router_and_loads_them_on_start() -> None:
    approved = TemplateInfo(status="APPROVED")
    templates = FakeTemplates({"chn_9": {("welcome", "en"): approved}})
    store = FakePolicyStore()
    wiring = policy(store, templates, FakeSender(), FakePublisher())

    # before the broker starts: the first reply judged already has its channel's templates
    await wiring.prepare()
    assert store.indexed
    assert templates.of("chn_9") == {("welcome", "en"): approved}
    await wiring.start()
    async with on_test_broker(wiring.router) as bus:
        await bus.publish(
            ChannelTemplateStatusChanged(
                event_id="evt_1",
                tenant_id="ten_acme",
                channel_id="chn_1",
                provider=Provider.WHATSAPP,
                template_name="order_update",
                language="en",
                status="APPROVED",
                occurred_at=NOW,
                parameter_count=2,
            )
        )
        await bus.publish(
            ChannelTemplateCategoryChanged(
                event_id="evt_2",
                tenant_id="ten_acme",
                channel_id="chn_1",
                provider=Provider.WHATSAPP,
                template_name="order_update",
                language="en",
                category="AUTHENTICATION",
                occurred_at=NOW,
            )
        )
        await bus.publish(
            ChannelTemplateQualityChanged(
                event_id="evt_3",
                tenant_id="ten_acme",
                channel_id="chn_1",
                provider=Provider.WHATSAPP,
                template_name="order_update",
                language="en",
                quality="RED",
                occurred_at=NOW,
            )
        )

    assert store.indexed
    assert templates.of("chn_9") == {("welcome", "en"): approved}
    assert templates.of("chn_1") == {
        ("order_update", "en"): TemplateInfo("APPROVED", 2, "AUTHENTICATION", "RED")
    }


async def test_policy_stops_its_delivery_first() -> None:
    sender = FakeSender()
    wiring = policy(FakePolicyStore(), FakeTemplates(), sender, FakePublisher())

    await wiring.stop()

    with pytest.raises(DeliveryInterrupted):  # its record stays uncommitted for the next owner
        await wiring.delivery.deliver(approved())
    assert sender.sent == []
    assert [p.name for p in wiring.periodic] == ["window-sweep"]


# --- onboarding ----------------------------------------------------------------------------------


async def test_onboarding_publishes_template_reviews_from_its_router_serves_its_api_and_starts() -> None:
    store = FakeOnboardingStore()
    publisher = FakePublisher()
    connectors: dict[Provider, Connector] = {
        Provider.MESSENGER: FakePageConnector(),
        Provider.INSTAGRAM: FakePageConnector(),
        Provider.X: FakeAccountConnector(),
        Provider.WHATSAPP: FakeNumberConnector(),
    }
    settings = OnboardingSettings(
        encryption_keys="k1:" + "A" * 43 + "=",
        meta_app_id="parley-test-app",
        meta_app_secret="app-secret",
        jwt_hs256_secret=SECRET,
        **PLAIN,
    )
    wiring = build_onboarding(
        settings,
        OnboardingAdapters(store=store, connectors=connectors, publisher=publisher),
        clock=lambda: NOW,
    )
    await wiring.prepare()
    await wiring.start()
    number = await wiring.service.register(
        tenant_id="ten_acme",
        provider=Provider.WHATSAPP,
        account_id="pn_1",
        display_name=None,
        business_account_id="waba_1",
        access_token=None,
        actor_id=None,
    )

    async with on_test_broker(wiring.router, publisher) as bus:
        await bus.publish(template_review())
        await bus.publish(message(1))  # another type on the topic it reads: acknowledged, no effect

    assert store.indexed
    [review] = publisher.of(ChannelTemplateStatusChanged)
    assert (review.channel_id, review.template_name, review.status) == (number.id, "order_update", "APPROVED")
    listed = await call(wiring, "GET", "/v1/channels", headers=admin_bearer())
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == [number.id]
    assert [p.name for p in wiring.periodic] == [
        "token-expiry",
        "business-hours",
        "connection-prune",
        "subscription-check",
        "x-subscription-check",
        "login-token-refresh",
        "x-token-refresh",
        "business-portfolios",
    ]


# --- ingest and the normalizer -------------------------------------------------------------------


def normalizer_on(publisher: FakePublisher, dead_letter: Any) -> Any:
    """The normalizer wired to one Page channel, publishing to ``publisher``."""
    return build_normalizer(
        NormalizerSettings(**PLAIN),
        NormalizerAdapters(
            channels=directory(channel()),
            aliases=empty_aliases(),
            publisher=publisher,
            dead_letter=dead_letter,
            retry=RetryThenDeadLetter(dead_letter, RetryPolicy(max_attempts=1)),
        ),
    )


async def test_the_normalizer_publishes_what_its_router_takes_and_dead_letters_a_bad_item() -> None:
    publisher = FakePublisher()
    letters: list[tuple[Any, BaseException]] = []

    async def dead_letter(record: Any, error: BaseException, attempts: int) -> None:
        letters.append((record, error))

    wiring = normalizer_on(publisher, dead_letter)
    no_sender = messaging_text("m_bad")
    del no_sender["sender"]
    delivery = page_delivery(page_entry([messaging_text("m_good"), no_sender]))
    raw = deliveries.archive_record("meta", orjson.dumps(delivery), {}, NOW, delivery)

    async with on_test_broker(wiring.router, publisher) as bus:
        await bus.publish(raw, event_id=raw.delivery_id)

    [published] = publisher.published
    assert isinstance(published, MessageReceived)
    assert (published.provider_message_id, published.account_id) == ("m_good", PAGE_ID)
    [(record, error)] = letters
    assert dict(record.headers)["parley_dlq_delivery_id"] == raw.delivery_id.encode()
    assert isinstance(error, UnprocessableDelivery)
    assert dict(record.headers)["parley_dlq_item"] == b"entry[0].messaging[1]"
    assert [m.source.name for m in wiring.read_models] == ["parley.channels.v1", "parley.customer-aliases.v1"]


async def test_a_batch_the_broker_did_not_acknowledge_publishes_its_events_again_when_redelivered() -> None:
    publisher = FakePublisher()

    async def dead_letter(record: Any, error: BaseException, attempts: int) -> None:
        raise AssertionError(f"nothing here is bad: {error!r}")

    wiring = normalizer_on(publisher, dead_letter)
    delivery = page_delivery(page_entry([messaging_text("m_1"), messaging_text("m_2")]))
    raw = deliveries.archive_record("meta", orjson.dumps(delivery), {}, NOW, delivery)
    publisher.refuse_confirms = 1

    async with on_test_broker(wiring.router, publisher) as bus:
        # the events were handed over but never acknowledged: the batch is not committed
        with pytest.raises(KafkaTimeoutError):
            await bus.publish(raw, event_id=raw.delivery_id)
        # and comes again; its events are not passed over as repeats of what was never confirmed
        await bus.publish(raw, event_id=raw.delivery_id)
        # once confirmed, a third delivery of the same record is a repeat
        await bus.publish(raw, event_id=raw.delivery_id)

    assert [e.provider_message_id for e in publisher.of(MessageReceived)] == ["m_1", "m_2", "m_1", "m_2"]
    assert publisher.confirmed == 4


def test_the_webhook_process_declares_what_its_routes_publish_and_subscribes_to_nothing() -> None:
    settings = IngestSettings(meta_app_secrets="app-secret", meta_verify_token="verify", **PLAIN)

    wiring = build_ingest(settings, IngestAdapters(publisher=FakePublisher()))

    assert list(declared_events(wiring.router)) == [WebhookReceived.event_type]
    assert wiring.router.subscribers == []
    assert {getattr(route, "path", None) for route in wiring.routes} >= {"/webhooks/meta"}
