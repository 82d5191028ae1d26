"""Each port's in-memory fake keeps the port's contract: the same methods with the same parameters
as the Protocol the service is typed against and as the production adapter (a fake that drifts
would let a unit test pass against behaviour production does not have)."""

from __future__ import annotations

import inspect

import pytest
from parley_onboarding.adapters.postgres import PostgresOnboardingStore
from parley_onboarding.adapters.stores import MongoOnboardingStore, OnboardingStore
from parley_policy.adapters.postgres import PostgresPolicyStore, PostgresPolicyTemplates
from parley_policy.adapters.stores import PolicyStore, PolicyStorePort, PolicyTemplates, TemplatesPort
from parley_providers.base import (
    AccountConnector,
    BusinessProfileManager,
    ContentLookup,
    LoginConnector,
    NumberConnector,
    PageConnector,
    RotatingGrant,
    SubscriptionCheck,
    SubscriptionKeeper,
    TemplateManager,
    TokenCheck,
)
from parley_providers.meta.connect import MetaConnector, MetaInstagramConnector
from parley_providers.meta.lookup import MentionLookup
from parley_providers.whatsapp.connect import WhatsAppConnector
from parley_providers.x.connect import XConnector
from parley_reports.adapters.postgres import PostgresReportStore
from parley_reports.adapters.stores import MongoReportStore, ReportStore
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import ConversationRepository, MongoConversationRepository
from parley_routing.service import ChannelRoles
from parley_shared.channels import DirectoryRoles
from parley_shared.vault import CredentialStore, MongoCredentialStore, PostgresCredentialStore

from tests.support.fakes.ingest import FakeContentLookup
from tests.support.fakes.onboarding import (
    FakeAccountConnector,
    FakeInstagramConnector,
    FakeNumberConnector,
    FakeOnboardingStore,
    FakePageConnector,
)
from tests.support.fakes.policy import FakeCredentials, FakePolicyStore, FakeTemplates
from tests.support.fakes.reports import FakeReportStore
from tests.support.fakes.routing import FakeChannelRoles, FakeRepository

pytestmark = pytest.mark.unit

PORTS = [
    (ConversationRepository, FakeRepository, MongoConversationRepository),
    (ConversationRepository, FakeRepository, PostgresConversationRepository),
    (PolicyStorePort, FakePolicyStore, PolicyStore),
    (PolicyStorePort, FakePolicyStore, PostgresPolicyStore),
    (ChannelRoles, FakeChannelRoles, DirectoryRoles),
    (OnboardingStore, FakeOnboardingStore, MongoOnboardingStore),
    (OnboardingStore, FakeOnboardingStore, PostgresOnboardingStore),
    (PageConnector, FakePageConnector, MetaConnector),
    (AccountConnector, FakeAccountConnector, XConnector),
    (SubscriptionKeeper, FakeAccountConnector, XConnector),
    (RotatingGrant, FakeAccountConnector, XConnector),
    (NumberConnector, FakeNumberConnector, WhatsAppConnector),
    (TokenCheck, FakePageConnector, MetaConnector),
    (SubscriptionCheck, FakePageConnector, MetaConnector),
    (LoginConnector, FakeInstagramConnector, MetaInstagramConnector),
    (TokenCheck, FakeNumberConnector, WhatsAppConnector),
    (TemplateManager, FakeNumberConnector, WhatsAppConnector),
    (BusinessProfileManager, FakeNumberConnector, WhatsAppConnector),
    (TemplatesPort, FakeTemplates, PolicyTemplates),
    (TemplatesPort, FakeTemplates, PostgresPolicyTemplates),
    (CredentialStore, FakeCredentials, MongoCredentialStore),
    (CredentialStore, FakeCredentials, PostgresCredentialStore),
    (ReportStore, FakeReportStore, MongoReportStore),
    (ReportStore, FakeReportStore, PostgresReportStore),
    (ContentLookup, FakeContentLookup, MentionLookup),
]


def protocol_methods(protocol: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


def parameters(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(("port", "fake", "adapter"), PORTS, ids=lambda c: c.__name__)
def test_the_fake_and_the_adapter_have_every_method_of_the_port_with_its_parameters(
    port: type, fake: type, adapter: type
) -> None:
    methods = protocol_methods(port)
    assert methods, port
    for name, signature in methods.items():
        for implementation in (fake, adapter):
            member = getattr(implementation, name, None)
            assert member is not None, f"{implementation.__name__} lacks {name}"
            assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(getattr(port, name))
            assert parameters(inspect.signature(member)) == parameters(signature), (implementation, name)


def calls_through(attribute: str, *paths: str) -> set[str]:
    """The names called on ``self.<attribute>`` (or ``<x>.<attribute>``) in these source files."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    called: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse((root / path).read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == attribute
            ):
                called.add(node.attr)
    return called


def test_the_port_declares_every_repository_method_the_service_and_the_api_call() -> None:
    routing = "services/routing/src/parley_routing"
    called = calls_through(
        "repository", f"{routing}/service.py", f"{routing}/ownership.py", f"{routing}/entrypoints/api.py"
    )
    assert called
    assert called <= set(protocol_methods(ConversationRepository))


def test_the_onboarding_port_declares_every_store_method_the_service_and_the_ops_cli_call() -> None:
    onboarding = "services/onboarding/src/parley_onboarding"
    called = calls_through(
        "stores", f"{onboarding}/service.py", f"{onboarding}/bootstrap.py", f"{onboarding}/entrypoints/cli.py"
    )
    assert {"save_channel", "claim_account", "save_connection", "ensure_indexes"} <= called
    assert called <= set(protocol_methods(OnboardingStore))


@pytest.mark.parametrize(
    ("fake", "adapter", "flow"),
    [
        (FakePageConnector, MetaConnector, PageConnector),
        (FakeAccountConnector, XConnector, AccountConnector),
        (FakeNumberConnector, WhatsAppConnector, NumberConnector),
    ],
    ids=lambda c: c.__name__,
)
def test_each_connector_is_recognized_as_its_flow_and_as_no_other(
    fake: type, adapter: type, flow: type
) -> None:
    """The service picks a provider's flow with isinstance: each connector passes for its own only."""
    flows = {PageConnector, AccountConnector, NumberConnector}
    for connector in (fake(), object.__new__(adapter)):
        assert isinstance(connector, flow), connector
        assert not any(isinstance(connector, other) for other in flows - {flow}), connector


async def test_the_fake_lists_newest_activity_first_in_keyset_pages_like_the_adapter() -> None:
    from datetime import timedelta

    from parley_routing.domain.model import Conversation

    from tests.unit.factories import T0, message

    repo = FakeRepository()
    for n in range(5):
        conversation = Conversation.open(message(n, conversation_id=f"c{n}", at=T0 + timedelta(minutes=n)))
        conversation.receive(message(n, conversation_id=f"c{n}", at=T0 + timedelta(minutes=n)))
        await repo.save(conversation)
    tenant, channel = conversation.tenant_id, conversation.channel_id
    first = await repo.list_visible(tenant, [channel], limit=2)
    assert [c.id for c in first.items] == ["c4", "c3"]
    assert first.next_cursor is not None
    second = await repo.list_visible(tenant, [channel], limit=2, after=first.next_cursor)
    assert [c.id for c in second.items] == ["c2", "c1"]
    last = await repo.list_visible(tenant, [channel], limit=2, after=second.next_cursor)
    assert ([c.id for c in last.items], last.next_cursor) == (["c0"], None)
    assert (await repo.list_visible(tenant, ["another-channel"])).items == []
