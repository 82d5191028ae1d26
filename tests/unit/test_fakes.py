"""Each port's in-memory fake keeps the port's contract: the same methods with the same parameters
as the Protocol the service is typed against and as the production adapter (a fake that drifts
would let a unit test pass against behaviour production does not have)."""

from __future__ import annotations

import inspect

import pytest
from parley_policy.adapters.postgres import PostgresPolicyStore
from parley_policy.adapters.stores import PolicyStore, PolicyStorePort
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.repository import ConversationRepository, MongoConversationRepository
from parley_routing.service import ChannelRoles
from parley_shared.channels import DirectoryRoles

from tests.support.fakes.policy import FakePolicyStore
from tests.support.fakes.routing import FakeChannelRoles, FakeRepository

pytestmark = pytest.mark.unit

PORTS = [
    (ConversationRepository, FakeRepository, MongoConversationRepository),
    (ConversationRepository, FakeRepository, PostgresConversationRepository),
    (PolicyStorePort, FakePolicyStore, PolicyStore),
    (PolicyStorePort, FakePolicyStore, PostgresPolicyStore),
    (ChannelRoles, FakeChannelRoles, DirectoryRoles),
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


def test_the_port_declares_every_repository_method_the_service_and_the_api_call() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "services/routing/src/parley_routing"
    called: set[str] = set()
    for path in (root / "service.py", root / "entrypoints/api.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "repository"
            ):
                called.add(node.attr)
    assert called
    assert called <= set(protocol_methods(ConversationRepository))


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
