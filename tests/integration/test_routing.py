"""Routing against the real broker and store: streams in, rules applied, events out, API scoped."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from aiokafka import AIOKafkaProducer
from parley_events import (
    Author,
    ChannelRole,
    ChannelSnapshot,
    ChannelStatus,
    Content,
    Direction,
    MessageReceived,
    Provider,
    Queue,
    ReplySent,
    SenderType,
    TeamSnapshot,
    qualify,
    topics,
)
from parley_routing.adapters.postgres import PostgresConversationRepository
from parley_routing.adapters.stores import (
    MAX_DOCUMENT_BYTES,
    DocumentTooLarge,
    MongoConversationRepository,
)
from parley_routing.bootstrap import create_routing_app
from parley_routing.domain.model import (
    MAX_LABEL_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_NOTES,
    MAX_TAGS,
    MAX_TOPICS,
    REOPEN_GRACE,
    SEEN_MESSAGES_LIMIT,
)
from parley_routing.service import ConversationService
from parley_routing.settings import RoutingSettings
from parley_shared import mongo
from parley_shared.auth import issue_dev_token
from parley_shared.kafka import dlq_name, encode_event
from psycopg_pool import PoolTimeout

from tests.conftest import Infra
from tests.support.apps import app_of, running, runtime_of
from tests.support.kafka import count_records, eventually, publish_events, read_records

pytestmark = pytest.mark.integration

JWT = "routing-test-secret-of-at-least-32-bytes"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def token(user: str, tenant: str = "tenant-a", roles: list[str] | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_dev_token(JWT, user, tenant, roles or [])}"}


def settings(infra: Infra, namespace: str, store_url: str, **extra: Any) -> RoutingSettings:
    """Routing's settings on ``store_url`` (PostgreSQL or MongoDB, by its scheme)."""
    return RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
        **extra,
    )


def channel(channel_id: str, tenant: str = "tenant-a", **access: Any) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id=channel_id,
        tenant_id=tenant,
        provider=Provider.MESSENGER,
        account_id=f"page-{channel_id}",
        status=ChannelStatus.ACTIVE,
        revision=1,
        **access,
    )


def message(
    n: int, conversation: str, channel_id: str = "ch-1", tenant: str = "tenant-a", **extra: Any
) -> MessageReceived:
    return MessageReceived(
        event_id=f"msg_{conversation}_{n}",
        tenant_id=tenant,
        channel_id=channel_id,
        provider=Provider.MESSENGER,
        account_id=f"page-{channel_id}",
        conversation_id=conversation,
        conversation_key=f"dm:{conversation}",
        direction=extra.pop("direction", Direction.INBOUND),
        author=Author(id="customer"),
        content=Content(text=f"message {n}"),
        provider_message_id=f"m_{conversation}_{n}",
        provider_timestamp=extra.pop("at", T0 + timedelta(minutes=n)),
        delivery_id=f"d{n}",
    )


async def wait_for_sequence(
    infra: Infra, namespace: str, conversation: str, sequence: int
) -> list[dict[str, Any]]:
    records = await read_records(
        infra.kafka,
        qualify(topics.CONVERSATIONS.name, namespace),
        until=lambda rs: any(
            json.loads(r.value)["conversation_id"] == conversation
            and json.loads(r.value)["sequence"] >= sequence
            for r in rs
        ),
    )
    return [
        {"type": dict(r.headers)["ce_type"].decode(), **json.loads(r.value)}
        for r in records
        if json.loads(r.value)["conversation_id"] == conversation
    ]


async def test_routing_runs_on_the_store_its_url_names_and_is_ready_once_the_store_answers(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1"))
    async with running(create_routing_app(settings(infra, namespace, store_url))) as api:
        runtime = runtime_of(app_of(api))
        assert runtime.opened_store.kind == "postgresql"
        assert isinstance(runtime.wiring.repository, PostgresConversationRepository)

        async def ready() -> Any:
            response = await api.get("/readyz")
            return response.json() if response.status_code == 200 else None

        assert (await eventually(ready))["checks"]["store"] == "ok"


async def test_routing_does_not_start_on_a_postgresql_that_does_not_answer(
    infra: Infra, namespace: str
) -> None:
    nowhere = "postgresql://postgres@127.0.0.1:1/parley"  # nothing listens on port 1
    with pytest.raises(PoolTimeout):  # the connection errors themselves are logged as it retries
        async with running(create_routing_app(settings(infra, namespace, nowhere))):
            pass


async def test_a_duplicated_inbound_event_changes_the_conversation_once(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1", all_users_role=ChannelRole.VIEWER))
    async with running(create_routing_app(settings(infra, namespace, store_url))) as api:
        first = message(1, "conv-dup")
        await publish_events(infra.kafka, namespace, first, first, message(2, "conv-dup"), first)
        events = await wait_for_sequence(infra, namespace, "conv-dup", 3)

        async def history_complete() -> dict[str, Any] | None:
            # the history is appended right after the publish: wait for it, not only for Kafka
            response = await api.get("/v1/conversations/conv-dup", headers=token("anyone"))
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body if len(body["history"]) >= 3 else None

        detail = await eventually(history_complete)
        await publish_events(infra.kafka, namespace, first)  # one more duplicate, after everything settled
        await asyncio.sleep(1)
        settled = (await api.get("/v1/conversations/conv-dup", headers=token("anyone"))).json()
        assert settled["sequence"] == 3
        assert len(settled["history"]) == 3
    assert detail["sequence"] == 3
    assert [h["type"] for h in detail["history"]] == [
        "parley.conversation.created.v1",
        "parley.conversation.message_added.v1",
        "parley.conversation.message_added.v1",
    ]
    # duplicates may be republished with the same ids, never with new sequence numbers
    assert {e["sequence"] for e in events} == {1, 2, 3}
    assert len({e["event_id"] for e in events}) == 3


async def test_a_poison_record_in_a_batch_is_dead_lettered_alone_and_the_rest_is_applied(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1", all_users_role=ChannelRole.VIEWER))
    inbound = qualify(topics.MESSAGES_INBOUND.name, namespace)
    poison_value = b'{"event_id": "broken", "tenant_id": 42}'
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, acks="all")
    await producer.start()
    try:
        # same key (so same partition and same batch) as the good messages around it
        for event in (message(1, "conv-p"), None, message(2, "conv-p"), message(1, "conv-q")):
            value = poison_value if event is None else encode_event(event)
            headers = [("ce_type", MessageReceived.event_type.encode())]
            await producer.send(inbound, value, key=b"conv-p", headers=headers)
        await producer.flush()
    finally:
        await producer.stop()

    async with running(create_routing_app(settings(infra, namespace, store_url, consumer_max_attempts=2))):
        p_events = await wait_for_sequence(infra, namespace, "conv-p", 3)
        q_events = await wait_for_sequence(infra, namespace, "conv-q", 2)
        dead = await read_records(infra.kafka, dlq_name(inbound), until=lambda rs: len(rs) >= 1)
        await asyncio.sleep(1)
        dead_count = await count_records(infra.kafka, dlq_name(inbound))

    assert dead_count == 1
    assert [r.value for r in dead] == [poison_value]
    assert dict(dead[0].headers)["parley_dlq_error"].decode().startswith("ValidationError")
    assert sorted(e["sequence"] for e in p_events) == [1, 2, 3]
    assert sorted(e["sequence"] for e in q_events) == [1, 2]


async def test_auto_ownership_on_and_off_and_resolving_clears_the_owner(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(
        infra.kafka,
        namespace,
        channel("ch-on", auto_ownership=True, user_access={"ana": ChannelRole.CONTRIBUTOR}),
        channel("ch-off", auto_ownership=False, user_access={"ana": ChannelRole.CONTRIBUTOR}),
    )

    def reply(conversation: str, channel_id: str, n: int) -> ReplySent:
        return ReplySent(
            reply_id=f"r-{conversation}-{n}",
            conversation_id=conversation,
            tenant_id="tenant-a",
            channel_id=channel_id,
            sender_type=SenderType.HUMAN,
            agent_id="ana",
            provider_message_id=f"sent-{conversation}-{n}",
            text="on it",
            sent_at=T0 + timedelta(hours=1),
        )

    async with running(create_routing_app(settings(infra, namespace, store_url))) as api:
        await publish_events(
            infra.kafka, namespace, message(1, "conv-on", "ch-on"), message(1, "conv-off", "ch-off")
        )
        await wait_for_sequence(infra, namespace, "conv-on", 2)
        await wait_for_sequence(infra, namespace, "conv-off", 2)
        await publish_events(
            infra.kafka, namespace, reply("conv-on", "ch-on", 1), reply("conv-off", "ch-off", 1)
        )
        on_events = await wait_for_sequence(infra, namespace, "conv-on", 4)
        off_events = await wait_for_sequence(infra, namespace, "conv-off", 3)
        assert [e["type"] for e in on_events][-2:] == [
            "parley.conversation.message_added.v1",
            "parley.conversation.owner_assigned.v1",
        ]
        assert on_events[-1]["owner_id"] == "ana"
        assert on_events[-1]["reason"] == "auto_ownership"
        assert "parley.conversation.owner_assigned.v1" not in [e["type"] for e in off_events]
        off = (await api.get("/v1/conversations/conv-off", headers=token("ana"))).json()
        assert off["owner_id"] is None

        resolved = await api.post(
            "/v1/conversations/conv-on/status",
            json={"queue": "resolved"},
            headers={**token("ana"), "Idempotency-Key": "k1"},
        )
        assert resolved.status_code == 200, resolved.text
        body = resolved.json()
        assert body["conversation"]["queue"] == "resolved"
        assert body["conversation"]["owner_id"] is None
        assert [e["type"] for e in body["events"]] == [
            "parley.conversation.status_changed.v1",
            "parley.conversation.owner_cleared.v1",
        ]
        # the same command retried with its key applies once and answers the same
        again = await api.post(
            "/v1/conversations/conv-on/status",
            json={"queue": "resolved"},
            headers={**token("ana"), "Idempotency-Key": "k1"},
        )
        assert again.json()["events"] == body["events"]
        assert again.json()["conversation"]["sequence"] == body["conversation"]["sequence"]


async def test_visibility_follows_direct_team_and_toggle_roles(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(
        infra.kafka,
        namespace,
        TeamSnapshot(team_id="team-a", tenant_id="tenant-a", name="A", members=("two-teams",), revision=1),
        TeamSnapshot(
            team_id="team-b", tenant_id="tenant-a", name="B", members=("two-teams", "b-only"), revision=1
        ),
        channel("ch-team-a", team_access={"team-a": ChannelRole.VIEWER}),
        channel("ch-team-b", team_access={"team-b": ChannelRole.CONTRIBUTOR}),
        channel("ch-everyone", all_users_role=ChannelRole.VIEWER),
        channel("ch-teams", all_teams_role=ChannelRole.VIEWER),
        channel("ch-direct", user_access={"direct": ChannelRole.SUPERVISOR}),
        channel("ch-other-tenant", tenant="tenant-b", all_users_role=ChannelRole.SUPERVISOR),
    )
    async with running(create_routing_app(settings(infra, namespace, store_url))) as api:
        for ch in ("ch-team-a", "ch-team-b", "ch-everyone", "ch-teams", "ch-direct"):
            await publish_events(infra.kafka, namespace, message(1, f"conv-{ch}", ch))
        await publish_events(
            infra.kafka, namespace, message(1, "conv-b", "ch-other-tenant", tenant="tenant-b")
        )
        for conversation in (
            "conv-ch-team-a",
            "conv-ch-team-b",
            "conv-ch-everyone",
            "conv-ch-teams",
            "conv-ch-direct",
            "conv-b",
        ):
            await wait_for_sequence(infra, namespace, conversation, 2)

        async def visible(user: str) -> set[str]:
            response = await api.get("/v1/conversations", headers=token(user))
            assert response.status_code == 200, response.text
            return {c["channel_id"] for c in response.json()["items"]}

        assert await visible("two-teams") == {"ch-team-a", "ch-team-b", "ch-everyone", "ch-teams"}
        assert await visible("b-only") == {"ch-team-b", "ch-everyone", "ch-teams"}
        assert await visible("no-team") == {"ch-everyone"}
        assert await visible("direct") == {"ch-everyone", "ch-direct"}
        assert await visible("admin-user") == {"ch-everyone"}
        admin = await api.get("/v1/conversations", headers=token("admin-user", roles=["admin"]))
        assert {c["channel_id"] for c in admin.json()["items"]} == {
            "ch-team-a",
            "ch-team-b",
            "ch-everyone",
            "ch-teams",
            "ch-direct",
        }
        # roles as seen on each conversation: the highest wins
        items = (await api.get("/v1/conversations", headers=token("two-teams"))).json()["items"]
        assert {c["channel_id"]: c["your_role"] for c in items}["ch-team-b"] == "contributor"

        # no role, or another tenant: the conversation does not exist for you
        assert (
            await api.get("/v1/conversations/conv-ch-direct", headers=token("no-team"))
        ).status_code == 404
        assert (await api.get("/v1/conversations/conv-b", headers=token("direct"))).status_code == 404
        assert (
            await api.get("/v1/conversations/conv-b", headers=token("x", tenant="tenant-b"))
        ).status_code == 200
        assert (await api.get("/v1/conversations")).status_code == 401

        # Viewer vs Contributor: a Viewer may move and tag but not take ownership
        viewer = {**token("no-team"), "Idempotency-Key": "v1"}
        assert (
            await api.post(
                "/v1/conversations/conv-ch-everyone/status", json={"queue": "pending"}, headers=viewer
            )
        ).status_code == 200
        assert (
            await api.post(
                "/v1/conversations/conv-ch-everyone/tags",
                json={"add": ["vip"]},
                headers={**viewer, "Idempotency-Key": "v2"},
            )
        ).status_code == 200
        refused = await api.post(
            "/v1/conversations/conv-ch-everyone/owner",
            json={"owner_id": "no-team"},
            headers={**viewer, "Idempotency-Key": "v3"},
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "OWNER_CANNOT_REPLY"
        contributor = {**token("b-only"), "Idempotency-Key": "c1"}
        took = await api.post(
            "/v1/conversations/conv-ch-team-b/owner", json={"owner_id": "b-only"}, headers=contributor
        )
        assert took.status_code == 200, took.text
        assert took.json()["conversation"]["owner_id"] == "b-only"
        other = await api.post(
            "/v1/conversations/conv-ch-team-b/owner",
            json={"owner_id": "two-teams"},
            headers={**contributor, "Idempotency-Key": "c2"},
        )
        assert other.status_code == 403
        assert other.json()["code"] == "ROLE_FORBIDDEN"
        missing_key = await api.post(
            "/v1/conversations/conv-ch-team-b/tags", json={"add": ["x"]}, headers=token("b-only")
        )
        assert missing_key.status_code == 422
        assert missing_key.json()["code"] == "VALIDATION_ERROR"
        assert "Idempotency-Key" in missing_key.json()["message"]


async def test_pagination_is_newest_first_and_complete(infra: Infra, namespace: str, store_url: str) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1", all_users_role=ChannelRole.VIEWER))
    async with running(create_routing_app(settings(infra, namespace, store_url))) as api:
        await publish_events(infra.kafka, namespace, *[message(n, f"conv-p{n}") for n in range(1, 8)])
        for n in range(1, 8):
            await wait_for_sequence(infra, namespace, f"conv-p{n}", 2)
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/v1/conversations", params=params, headers=token("u"))).json()
            seen.extend(c["id"] for c in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == [f"conv-p{n}" for n in range(7, 0, -1)]


async def test_two_routing_replicas_never_resolve_the_same_conversation_twice(
    infra: Infra, namespace: str, database_url: str
) -> None:
    client: Any = mongo.open_client(database_url)
    db = mongo.database(client, database_url)
    published: list[Any] = []

    async def publish(event: Any) -> None:
        published.append(event)

    later = T0 + timedelta(days=31)
    replicas = [
        ConversationService(
            MongoConversationRepository(db["conversations"], db["history"]), publish, lambda: later
        )
        for _ in range(2)
    ]
    try:
        for n in range(1, 11):
            await replicas[0].on_message(message(1, f"conv-idle-{n}"))
        await replicas[0].on_message(message(1, "conv-fresh", at=later - timedelta(days=1)))
        snapshot = channel("ch-1")  # default thresholds: 30 days for New and Pending
        published.clear()
        counts = await asyncio.gather(*(r.auto_resolve([snapshot]) for r in replicas))
        assert sum(counts) == 10
        resolutions = defaultdict(int)
        for event in published:
            if event.event_type == "parley.conversation.status_changed.v1":
                assert event.reason.value == "auto_resolve"
                resolutions[event.conversation_id] += 1
        assert resolutions == {f"conv-idle-{n}": 1 for n in range(1, 11)}
        fresh = await replicas[1].repository.get("conv-fresh")
        assert fresh is not None
        assert fresh.queue.value == "new"
        # a second sweep finds nothing left to do
        assert await replicas[1].auto_resolve([snapshot]) == 0
    finally:
        await client.close()


async def test_sequence_numbers_are_gap_free_per_conversation(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1", user_access={"sup": ChannelRole.SUPERVISOR}))
    async with running(create_routing_app(settings(infra, namespace, store_url))) as api:
        await publish_events(infra.kafka, namespace, message(1, "conv-g"))
        await wait_for_sequence(infra, namespace, "conv-g", 2)
        headers = token("sup")
        steps = [
            ("status", {"queue": "pending"}),
            ("tags", {"add": ["a", "b"]}),
            ("owner", {"owner_id": "sup"}),
            ("notes", {"text": "call back"}),
            ("topics", {"add": ["refund"]}),
            ("status", {"queue": "resolved"}),
        ]
        for i, (path, body) in enumerate(steps):
            response = await api.post(
                f"/v1/conversations/conv-g/{path}", json=body, headers={**headers, "Idempotency-Key": f"s{i}"}
            )
            assert response.status_code == 200, response.text
        # reopens: written a minute before the resolution, delivered after it (pipeline lag)
        await publish_events(
            infra.kafka, namespace, message(2, "conv-g", at=datetime.now(UTC) - timedelta(minutes=1))
        )
        events = await wait_for_sequence(infra, namespace, "conv-g", 11)
    by_sequence = {e["sequence"]: e for e in events}
    # created, message, pending, tags, owner, note, topics, resolved, owner cleared, message, reopened
    assert sorted(by_sequence) == list(range(1, 12))
    assert by_sequence[9]["type"] == "parley.conversation.owner_cleared.v1"
    assert by_sequence[11]["type"] == "parley.conversation.status_changed.v1"
    assert by_sequence[11]["reason"] == "reopened"


# --- security #13 ---------------------------------------------------------------------------------


async def test_a_viewer_flooding_labels_and_notes_is_stopped_at_the_caps_and_messages_still_land(
    infra: Infra, namespace: str, database_url: str
) -> None:
    # auto-resolve off: the flood takes over a minute on FerretDB (about 200 notes at 300 ms), and
    # the first sweep would resolve the conversation, whose message is dated long ago, midway
    viewers = channel(
        "ch-1", all_users_role=ChannelRole.VIEWER, auto_resolve_new_s=None, auto_resolve_pending_s=None
    )
    await publish_events(infra.kafka, namespace, viewers)
    async with running(create_routing_app(settings(infra, namespace, database_url))) as api:
        await publish_events(infra.kafka, namespace, message(1, "conv-flood"))
        await wait_for_sequence(infra, namespace, "conv-flood", 2)
        headers = token("viewer")
        calls = 0

        async def post(path: str, body: dict[str, Any]) -> Any:
            nonlocal calls
            calls += 1
            return await api.post(
                f"/v1/conversations/conv-flood/{path}",
                json=body,
                headers={**headers, "Idempotency-Key": f"flood-{calls}"},
            )

        # as the attack did: every request adds the longest labels and notes allowed
        for kind, cap in (("tags", MAX_TAGS), ("topics", MAX_TOPICS)):
            answers = [
                await post(kind, {"add": [f"{n:03d}".ljust(MAX_LABEL_LENGTH, "x")]}) for n in range(cap + 3)
            ]
            assert [a.status_code for a in answers] == [200] * cap + [422] * 3, answers[-1].text
            assert {a.json()["code"] for a in answers[cap:]} == {f"TOO_MANY_{kind.upper()}"}
        too_long = await post("tags", {"add": ["y" * (MAX_LABEL_LENGTH + 1)]})
        assert too_long.status_code == 422
        assert too_long.json()["code"] == "VALIDATION_ERROR"
        notes = [
            await post("notes", {"text": f"{n} ".ljust(MAX_NOTE_LENGTH, "n")}) for n in range(MAX_NOTES + 2)
        ]
        assert [a.status_code for a in notes] == [200] * MAX_NOTES + [422] * 2, notes[-1].text
        assert notes[-1].json()["code"] == "TOO_MANY_NOTES"
        listed = await api.get("/v1/conversations/conv-flood/notes", headers=headers)
        assert listed.status_code == 200
        assert len(listed.json()["items"]) == MAX_NOTES

        # the customer's next message is still applied (and reopens nothing: it is New)
        await publish_events(infra.kafka, namespace, message(2, "conv-flood"))
        last = 2 + MAX_TAGS + MAX_TOPICS + MAX_NOTES + 1
        events = await wait_for_sequence(infra, namespace, "conv-flood", last)
        assert [e["type"] for e in events if e["sequence"] == last] == [
            "parley.conversation.message_added.v1"
        ]
        assert (
            await count_records(infra.kafka, dlq_name(qualify(topics.MESSAGES_INBOUND.name, namespace))) == 0
        )

    client: Any = mongo.open_client(database_url)
    try:
        db = mongo.database(client, database_url)
        doc = await db["conversations"].find_one({"_id": "conv-flood"})
        assert doc is not None
        assert "notes" not in doc
        assert doc["note_count"] == MAX_NOTES
        assert len(bson.encode(doc)) < MAX_DOCUMENT_BYTES
        # the claims do not keep a full copy per version: only the newest ones carry the document
        claims = db["conversations_commits"]
        assert await claims.count_documents({"doc_id": "conv-flood"}) >= 20
        assert await claims.count_documents({"doc_id": "conv-flood", "doc": {"$exists": True}}) <= 11
    finally:
        await client.close()


async def test_a_conversation_document_above_the_bound_is_refused_and_nothing_is_written(
    database_url: str,
) -> None:
    client: Any = mongo.open_client(database_url)
    db = mongo.database(client, database_url)
    repository = MongoConversationRepository(db["conversations"], db["history"])
    try:
        service = ConversationService(repository, _ignore)
        await service.on_message(message(1, "conv-big"))
        conversation = await repository.get("conv-big")
        assert conversation is not None
        conversation.tags = ["x" * MAX_DOCUMENT_BYTES]  # past every cap: only the guard is left

        with pytest.raises(DocumentTooLarge):
            await repository.save(conversation)
        with pytest.raises(DocumentTooLarge):
            await repository.save_many([conversation])

        stored = await repository.get("conv-big")
        assert stored is not None
        assert (stored.version, stored.tags) == (1, [])
        assert conversation.version == 1
        assert await db["conversations_commits"].count_documents({"doc_id": "conv-big"}) == 1
    finally:
        await client.close()


async def test_notes_embedded_by_an_older_version_are_listed_and_moved_out_on_the_next_save(
    database_url: str,
) -> None:
    client: Any = mongo.open_client(database_url)
    db = mongo.database(client, database_url)
    repository = MongoConversationRepository(db["conversations"], db["history"])
    try:
        service = ConversationService(repository, _ignore)
        await service.on_message(message(1, "conv-old"))
        # the document as the previous version wrote it: notes inside, no count
        old_note = {"note_id": "note_old", "author_id": "sup", "text": "from before", "created_at": T0}
        await db["conversations"].update_one(
            {"_id": "conv-old"}, {"$set": {"notes": [old_note]}, "$unset": {"note_count": ""}}
        )
        conversation = await repository.get("conv-old")
        assert conversation is not None
        assert conversation.note_count == 1
        assert [n.note_id for n in await repository.notes_of(conversation)] == ["note_old"]

        later = T0 + timedelta(hours=1)
        await service.apply("conv-old", lambda c: c.add_note("new one", "sup", "cmd-n", later))

        doc = await db["conversations"].find_one({"_id": "conv-old"})
        assert doc is not None
        assert "notes" not in doc
        assert doc["note_count"] == 2
        assert await db["conversation_notes"].count_documents({"conversation_id": "conv-old"}) == 2
        reloaded = await repository.get("conv-old")
        assert reloaded is not None
        assert [n.text for n in await repository.notes_of(reloaded)] == ["from before", "new one"]
    finally:
        await client.close()


async def test_a_late_redelivery_is_a_duplicate_and_an_old_message_does_not_reopen(database_url: str) -> None:
    client: Any = mongo.open_client(database_url)
    db = mongo.database(client, database_url)
    published: list[Any] = []

    async def publish(event: Any) -> None:
        published.append(event)

    resolved_at = T0 + timedelta(days=1)
    repository = MongoConversationRepository(db["conversations"], db["history"])
    service = ConversationService(repository, publish, lambda: resolved_at)
    try:
        # more messages than the document remembers provider ids of
        await service.on_messages([message(n, "conv-replay") for n in range(1, SEEN_MESSAGES_LIMIT + 11)])
        await service.apply("conv-replay", lambda c: c.move(Queue.RESOLVED, "sup", "cmd-r", resolved_at))
        published.clear()

        # Meta redelivers message 1 days later, after ingest's dedupe window: a new event id
        replay = message(1, "conv-replay").model_copy(update={"event_id": "msg_conv-replay_1_again"})
        await service.on_messages([replay])
        await service.on_message(replay.model_copy(update={"event_id": "msg_conv-replay_1_again_2"}))

        assert published == []
        conversation = await repository.get("conv-replay")
        assert conversation is not None
        assert conversation.queue is Queue.RESOLVED

        # a message never seen but sent well before the resolution is recorded and reopens nothing
        old = resolved_at - REOPEN_GRACE - timedelta(minutes=1)
        await service.on_messages([message(0, "conv-replay", at=old)])
        assert [e.event_type for e in published] == ["parley.conversation.message_added.v1"]
        conversation = await repository.get("conv-replay")
        assert conversation is not None
        assert conversation.queue is Queue.RESOLVED

        # the ids are forgotten after the retention
        expired = ConversationService(repository, publish, lambda: resolved_at + timedelta(days=9))
        assert await expired.prune_seen_messages() == SEEN_MESSAGES_LIMIT + 11
        assert await db["conversation_seen_messages"].count_documents({}) == 0
    finally:
        await client.close()


async def test_commands_of_users_and_keys_with_colons_never_share_a_cause(
    infra: Infra, namespace: str, store_url: str
) -> None:
    await publish_events(infra.kafka, namespace, channel("ch-1", all_users_role=ChannelRole.VIEWER))
    async with running(create_routing_app(settings(infra, namespace, store_url))) as api:
        await publish_events(infra.kafka, namespace, message(1, "conv-colon"))
        await wait_for_sequence(infra, namespace, "conv-colon", 2)

        first = await api.post(
            "/v1/conversations/conv-colon/tags",
            json={"add": ["first"]},
            headers={**token("a:b"), "Idempotency-Key": "c"},
        )
        second = await api.post(
            "/v1/conversations/conv-colon/tags",
            json={"add": ["second"]},
            headers={**token("a"), "Idempotency-Key": "b:c"},
        )

    assert first.status_code == second.status_code == 200
    assert [e["actor_id"] for e in second.json()["events"]] == ["a"]
    assert second.json()["conversation"]["tags"] == ["first", "second"]


async def _ignore(event: Any) -> None:
    return None


async def test_only_the_newest_claims_keep_a_copy_and_a_crashed_writer_still_rolls_forward(
    database_url: str,
) -> None:
    client: Any = mongo.open_client(database_url)
    db = mongo.database(client, database_url)
    repository = MongoConversationRepository(db["conversations"], db["history"])
    service = ConversationService(repository, _ignore)
    claims = db["conversations_commits"]
    try:
        await service.on_messages([message(1, "conv-claims")])
        for n in range(2, 36):  # one save per batch
            await service.on_messages([message(n, "conv-claims")])
        await service.apply("conv-claims", lambda c: c.change_labels("tags", ["x"], [], "sup", "cmd-x", T0))

        assert await claims.count_documents({"doc_id": "conv-claims", "doc": {"$exists": True}}) <= 11
        # a writer that claimed the next version and died before the projection write
        conversation = await repository.get("conv-claims")
        assert conversation is not None
        conversation.change_labels("tags", ["y"], [], "sup", "cmd-y", T0)
        conversation.version += 1
        await claims.insert_one(
            {
                "_id": f"conv-claims:{conversation.version}",
                "doc_id": "conv-claims",
                "version": conversation.version,
                "doc": conversation.to_document(),
            }
        )
        rolled = await repository.get("conv-claims")
        assert rolled is not None
        assert (rolled.version, rolled.tags) == (conversation.version, ["x", "y"])
    finally:
        await client.close()
