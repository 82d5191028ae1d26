"""The topic catalog: public names are a contract; DLQs and namespaces follow one rule."""

from __future__ import annotations

import pytest
from parley_events import all_topics, dlq_name, qualify, topics

pytestmark = pytest.mark.unit

PUBLIC_NAMES = {
    "parley.webhooks.raw.v1",
    "parley.messages.inbound.v1",
    "parley.conversations.v1",
    "parley.channels.v1",
    "parley.replies.v1",
    "parley.teams.v1",
    "parley.channel-events.v1",
    "parley.reply-windows.v1",
}


def test_the_public_topics_are_exactly_the_published_contract() -> None:
    public = [t.name for t in all_topics() if t.public]
    assert sorted(public) == sorted(PUBLIC_NAMES)


def test_every_primary_topic_is_public() -> None:
    assert {t.name for t in topics.PRIMARY_TOPICS} == PUBLIC_NAMES


def test_all_topics_has_no_duplicate_names() -> None:
    names = [t.name for t in all_topics()]
    assert len(names) == len(set(names))


def test_every_topic_that_has_a_dlq_gets_one_named_topic_dot_dlq() -> None:
    names = {t.name for t in all_topics()}
    with_dlq = [t for t in topics.PRIMARY_TOPICS if t.has_dlq]

    assert with_dlq, "at least the raw webhook topic has a DLQ"
    for t in with_dlq:
        assert f"{t.name}.dlq" in names
    for t in topics.PRIMARY_TOPICS:
        if not t.has_dlq:
            assert f"{t.name}.dlq" not in names


def test_the_non_public_topics_are_exactly_the_dlqs() -> None:
    private = {t.name for t in all_topics() if not t.public}
    assert private == {f"{t.name}.dlq" for t in topics.PRIMARY_TOPICS if t.has_dlq}


def test_dlq_name_appends_dot_dlq() -> None:
    assert dlq_name("parley.webhooks.raw.v1") == "parley.webhooks.raw.v1.dlq"


def test_a_dlq_keeps_the_partitioning_of_its_topic_and_is_never_compacted() -> None:
    for t in topics.PRIMARY_TOPICS:
        dlq = t.dlq()
        assert dlq.name == dlq_name(t.name)
        assert dlq.partitions == t.partitions
        assert dlq.key == t.key
        assert dlq.cleanup == "delete"
        assert dlq.kafka_config()["cleanup.policy"] == "delete"
        assert not dlq.public
        assert not dlq.has_dlq


def test_the_channels_topic_is_compacted_and_kept_forever() -> None:
    config = topics.CHANNELS.kafka_config()
    assert topics.CHANNELS.name == "parley.channels.v1"
    assert config["cleanup.policy"] == "compact"
    assert "retention.ms" not in config


def test_only_the_state_topics_are_compacted() -> None:
    compacted = sorted(t.name for t in all_topics() if t.cleanup == "compact")
    assert compacted == ["parley.channels.v1", "parley.teams.v1"]


def test_delete_topics_carry_their_retention() -> None:
    config = topics.WEBHOOKS_RAW.kafka_config()
    assert config["cleanup.policy"] == "delete"
    assert config["retention.ms"] == str(14 * 24 * 60 * 60 * 1000)


def test_qualify_without_namespace_is_the_public_name() -> None:
    assert qualify("parley.conversations.v1") == "parley.conversations.v1"
    assert qualify("parley.conversations.v1", "") == "parley.conversations.v1"
    assert topics.CONVERSATIONS.qualified() == "parley.conversations.v1"


def test_qualify_with_namespace_prefixes_the_name() -> None:
    assert qualify("parley.conversations.v1", "staging") == "staging.parley.conversations.v1"
    assert topics.CONVERSATIONS.qualified("test1") == "test1.parley.conversations.v1"


def test_a_qualified_dlq_is_the_dlq_of_the_qualified_topic() -> None:
    raw = topics.WEBHOOKS_RAW
    assert raw.dlq().qualified("ns") == dlq_name(raw.qualified("ns"))


# which bootstrap wires each consuming process (the normalizer is wired in ingest's)
CONSUMER_BOOTSTRAPS = {
    "normalizer": "services/ingest/src/parley_ingest/bootstrap.py",
    "routing": "services/routing/src/parley_routing/bootstrap.py",
    "policy": "services/policy/src/parley_policy/bootstrap.py",
    "onboarding": "services/onboarding/src/parley_onboarding/bootstrap.py",
}


def topics_read_by(bootstrap: str) -> set[str]:
    """The catalog topics a bootstrap names: it names a topic only to subscribe to it or to read it
    into a read model (publishing goes by each event's own topic)."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[2] / bootstrap).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "topics":
            spec = getattr(topics, node.attr)
            found.add(spec.name)
    return found


def test_the_catalog_names_every_parley_consumer_and_only_those() -> None:
    """The catalog once had policy reading conversations.v1 (it never did) and lacked policy on
    replies.v1 and onboarding on messages.inbound.v1."""
    for service, bootstrap in CONSUMER_BOOTSTRAPS.items():
        declared = {t.name for t in topics.PRIMARY_TOPICS if service in t.consumers}
        assert declared == topics_read_by(bootstrap), service
    assert not any("ingest" in t.consumers for t in topics.PRIMARY_TOPICS)
