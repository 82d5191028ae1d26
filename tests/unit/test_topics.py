"""The topic catalog: public names are a contract; DLQs and namespaces follow one rule."""

from __future__ import annotations

import pytest
from parley_events import EVENT_TYPES, Event, all_topics, dlq_name, qualify, topics
from parley_shared.kafka import declared_events, subscribed_topics

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
INTERNAL_NAMES = {"parley.customer-aliases.v1"}  # the normalizer's own alias read model (docs/ingest.md)


def test_the_public_topics_are_exactly_the_published_contract() -> None:
    public = [t.name for t in all_topics() if t.public]
    assert sorted(public) == sorted(PUBLIC_NAMES)


def test_every_primary_topic_is_public_but_the_normalizers_alias_records() -> None:
    assert {t.name for t in topics.PRIMARY_TOPICS} == PUBLIC_NAMES | INTERNAL_NAMES
    assert all(
        not t.public and t.consumers == (t.owner,) for t in topics.PRIMARY_TOPICS if t.name in INTERNAL_NAMES
    )


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


def test_the_non_public_topics_are_exactly_the_dlqs_and_the_alias_records() -> None:
    private = {t.name for t in all_topics() if not t.public}
    assert private == {f"{t.name}.dlq" for t in topics.PRIMARY_TOPICS if t.has_dlq} | INTERNAL_NAMES


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
    assert compacted == ["parley.channels.v1", "parley.customer-aliases.v1", "parley.teams.v1"]


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


# --- the catalog against the routers ----------------------------------------------------------
# Every process wired by its own build (placeholder adapters, as scripts/gen_docs.py does): what
# its router publishes and subscribes to, and the topics its read models keep in memory.


def bus() -> dict[str, tuple[set[str], set[str]]]:
    """Process -> (topics it publishes on, topics it consumes: subscribers and read models)."""
    from scripts.gen_docs import wirings

    found: dict[str, tuple[set[str], set[str]]] = {}
    for name, wiring in wirings().items():
        published = {model.topic.name for model in declared_events(wiring.router).values()}
        consumed = subscribed_topics(wiring.router) | {model.source.name for model in wiring.read_models}
        found[name] = (published, consumed)
    return found


def test_every_topic_is_published_by_exactly_its_owner_and_co_publishers() -> None:
    """channel-events once named onboarding alone, while policy publishes reconnect prompts on it."""
    routers = bus()
    for topic in topics.PRIMARY_TOPICS:
        publishing = {name for name, (published, _) in routers.items() if topic.name in published}
        assert publishing == set(topic.publishers), topic.name


def test_the_catalog_names_every_parley_consumer_and_only_those() -> None:
    """The catalog once had policy reading conversations.v1 (it never did) and lacked policy on
    replies.v1 and onboarding on messages.inbound.v1."""
    routers = bus()
    for topic in topics.PRIMARY_TOPICS:
        consuming = {name for name, (_, consumed) in routers.items() if topic.name in consumed}
        assert consuming == {c for c in topic.consumers if c in routers}, topic.name
    consumed_anywhere = set().union(*(consumed for _, consumed in routers.values()))
    assert consumed_anywhere <= {t.name for t in topics.PRIMARY_TOPICS}


def test_every_event_type_is_published_by_some_process_on_its_own_topic() -> None:
    from scripts.gen_docs import wirings

    declared: dict[str, type[Event]] = {}
    for wiring in wirings().values():
        declared |= declared_events(wiring.router)
    assert sorted(declared) == sorted(model.event_type for model in EVENT_TYPES)


def test_every_topic_a_router_consumes_has_a_dlq() -> None:
    """Router subscribers retry, then dead-letter to ``<topic>.dlq``: a consumed topic without one
    would turn a poison record into a partition retried forever (conversations.v1 and
    channel-events.v1 were consumed that way by policy and reports)."""
    from scripts.gen_docs import wirings

    with_dlq = {t.name for t in topics.PRIMARY_TOPICS if t.has_dlq}
    for name, wiring in wirings().items():
        missing = subscribed_topics(wiring.router) - with_dlq
        assert not missing, (name, missing)
