"""Topic creation from the catalog is idempotent."""

from __future__ import annotations

import pytest
from parley_events import all_topics
from parley_shared.admin import delete_namespace, describe_topics, ensure_topics

from tests.conftest import Infra

pytestmark = pytest.mark.integration


async def test_creating_topics_twice_creates_them_once(infra: Infra, unique: str) -> None:
    ns = f"topics{unique}"
    created = await ensure_topics(infra.kafka, ns, partitions=2)
    assert sorted(created) == sorted(spec.qualified(ns) for spec in all_topics())
    assert await ensure_topics(infra.kafka, ns, partitions=2) == []
    states = await describe_topics(infra.kafka, ns)
    assert {s.name for s in states} == {spec.qualified(ns) for spec in all_topics()}
    assert all(s.partitions == 2 for s in states)
    deleted = await delete_namespace(infra.kafka, ns)
    assert sorted(deleted) == sorted(spec.qualified(ns) for spec in all_topics())
    with pytest.raises(ValueError, match="default namespace"):
        await delete_namespace(infra.kafka, "")
