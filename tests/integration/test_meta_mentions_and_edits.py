"""Instagram mentions and Page comment edits and removals end to end: the provider sandbox delivers
signed webhooks to ingest, the normalizer (real broker, the channel's token from the vault on the
real store) fetches the mention's text and author from the sandbox's Graph API, and routing shows
them in the conversation's history; an edited comment shows its new text under its own id, and a
removed one stays, marked deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from parley_events import ChannelRole, Provider
from parley_ingest.bootstrap import create_normalizer_app
from parley_ingest.domain.normalize import conversation_id
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_routing.bootstrap import create_routing_app
from parley_routing.settings import RoutingSettings

from tests.conftest import Infra
from tests.support.apps import running, served_ingest
from tests.support.kafka import eventually, publish_events
from tests.support.policy import JWT, KEYS, TENANT, auth, channel, store_token
from tests.support.sandbox import GRAPH_VERSION, Sandbox, acme_pages

pytestmark = pytest.mark.integration

PAGE = "104512345678901"
IG = "17841400000000001"  # Acme's Instagram profile, linked to the Page (acme_pages)
POST = f"{PAGE}_122109876543210987"
COMMENT = "122109876543210987_990011223344556"
ADDED = "parley.conversation.message_added.v1"


@asynccontextmanager
async def pipeline(infra: Infra, namespace: str, store_url: str, sandbox: Sandbox) -> AsyncIterator[Any]:
    """Ingest served over HTTP (the sandbox posts to it), the normalizer and routing."""
    ingest = IngestSettings(
        kafka_bootstrap_servers=infra.kafka,
        topic_namespace=namespace,
        meta_app_secrets=sandbox.state.meta_app_secret,
        meta_verify_token="verify",
        log_level="warning",
    )
    normalizer = NormalizerSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        encryption_keys=KEYS,
        graph_base_url=sandbox.url,
        graph_api_version=GRAPH_VERSION,
        instagram_graph_base_url=f"{sandbox.url}/instagram",
        content_lookup_backoff_s=0.01,
        log_level="warning",
    )
    routing = RoutingSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
        log_level="warning",
    )
    async with (
        served_ingest(ingest) as x_url,
        running(create_normalizer_app(normalizer)),
        running(create_routing_app(routing)) as api,
    ):
        yield x_url.removesuffix("/x") + "/meta", api


async def deliver(sandbox: Sandbox, url: str, body: dict[str, Any]) -> None:
    """The sandbox signs the delivery with the Meta app's secret and posts it, as Meta does."""
    answer = await sandbox.admin("POST", "/meta/deliver", {"url": url, "body": body})
    assert answer == {"status": 200}


def history_of(api: Any, conversation: str) -> Any:
    async def read() -> list[dict[str, Any]] | None:
        response = await api.get(f"/v1/conversations/{conversation}", headers=auth("ana"))
        return list(response.json()["history"]) if response.status_code == 200 else None

    return read


def feed(verb: str, at: int, message: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "from": {"id": "8812345067712390", "name": "Marta Silva"},
        "post_id": POST,
        "comment_id": COMMENT,
        "parent_id": POST,
        "created_time": at,
        "item": "comment",
        "verb": verb,
    }
    if message is not None:
        value["message"] = message
    return {
        "object": "page",
        "entry": [{"id": PAGE, "time": at, "changes": [{"field": "feed", "value": value}]}],
    }


async def test_a_mention_shows_the_customers_words_and_a_comment_edit_then_removal_show_in_the_history(
    infra: Infra, namespace: str, store_url: str, sandbox: Sandbox
) -> None:
    _, _, pages = await sandbox.connect_meta(user_id="10158000000000077", pages=acme_pages())
    acme = pages[0]
    viewer = {"ana": ChannelRole.VIEWER}
    instagram = channel("ch-ig", Provider.INSTAGRAM, IG, connect_path="page", user_access=viewer)
    messenger = channel("ch-fb", Provider.MESSENGER, PAGE, user_access=viewer)
    await publish_events(infra.kafka, namespace, instagram, messenger)
    await store_token(store_url, "ch-ig", acme.access_token)  # onboarding's write, on connect

    async with pipeline(infra, namespace, store_url, sandbox) as (webhook, api):
        # someone @mentions Acme in a comment: Meta's webhook carries the ids only
        mention = await sandbox.admin(
            "POST",
            "/instagram/mentions",
            {
                "account_id": IG,
                "media_id": "18066677788899900",
                "comment_id": "17988877766655544",
                "text": "@acme do you ship to Porto?",
                "username": "rui.p",
            },
        )
        await deliver(sandbox, webhook, mention["webhook"])

        mentioned = conversation_id(TENANT, "ch-ig", "media:18066677788899900")
        history = await eventually(history_of(api, mentioned), timeout=60)
        [added] = [h for h in history if h["type"] == ADDED]
        assert added["content"]["text"] == "@acme do you ship to Porto?"
        assert added["content"].get("unavailable") is None
        assert added["author"]["name"] == "rui.p"
        lookups = [c for c in sandbox.state.calls if c.method == "GET" and c.path.endswith(f"/{IG}")]
        assert [c.path for c in lookups] == [f"/{GRAPH_VERSION}/{IG}"]  # with the Page's token

        # a customer comments on the Page's post, edits the comment, then removes it
        now = int(datetime.now(UTC).timestamp())
        await deliver(sandbox, webhook, feed("add", now - 120, "Are these back in stock in size 38?"))
        thread = conversation_id(TENANT, "ch-fb", f"post:{POST}")

        async def commented() -> list[dict[str, Any]] | None:
            found = await history_of(api, thread)()
            return found if found and any(h["type"] == ADDED for h in found) else None

        await eventually(commented, timeout=60)
        await deliver(sandbox, webhook, feed("edited", now - 60, "Are these back in stock in size 37?"))

        async def edited() -> dict[str, Any] | None:
            found = await history_of(api, thread)() or []
            shown = [h for h in found if h["type"] == ADDED]
            return shown[0] if shown and shown[0]["content"]["text"].endswith("size 37?") else None

        shown = await eventually(edited, timeout=60)
        assert shown["provider_message_id"] == COMMENT
        assert shown["content"]["deleted"] is False
        message_id = shown["message_event_id"]

        await deliver(sandbox, webhook, feed("remove", now))

        async def removed() -> list[dict[str, Any]] | None:
            found = await history_of(api, thread)() or []
            return found if any(h["type"].endswith("message_deleted.v1") for h in found) else None

        final = await eventually(removed, timeout=60)
        [kept] = [h for h in final if h["type"] == ADDED]  # not dropped, not duplicated
        assert kept["message_event_id"] == message_id
        assert kept["content"]["text"] == "Are these back in stock in size 37?"
        assert kept["content"]["deleted"] is True
        assert [h["type"].rsplit(".", 2)[-2] for h in final] == [
            "created",
            "message_added",
            "message_edited",
            "message_deleted",
        ]


async def test_a_mention_graph_cannot_read_is_still_shown_marked_with_why(
    infra: Infra, namespace: str, store_url: str, sandbox: Sandbox
) -> None:
    _, _, pages = await sandbox.connect_meta(user_id="10158000000000078", pages=acme_pages())
    instagram = channel(
        "ch-ig2", Provider.INSTAGRAM, IG, connect_path="page", user_access={"ana": ChannelRole.VIEWER}
    )
    await publish_events(infra.kafka, namespace, instagram)
    await store_token(store_url, "ch-ig2", pages[0].access_token)
    # the media was deleted before Parley asked: Graph answers its unknown-object error
    gone = {"media_id": "18066677788899977"}
    body = {
        "object": "instagram",
        "entry": [{"id": IG, "time": 1718003600, "changes": [{"field": "mentions", "value": gone}]}],
    }

    async with pipeline(infra, namespace, store_url, sandbox) as (webhook, api):
        await deliver(sandbox, webhook, body)

        history = await eventually(
            history_of(api, conversation_id(TENANT, "ch-ig2", "media:18066677788899977")), timeout=60
        )

    [added] = [h for h in history if h["type"] == ADDED]
    assert added["content"]["unavailable"] == "not_found"
    assert added["content"]["text"] is None
    lookups = [c for c in sandbox.state.calls if c.method == "GET" and c.path.endswith(f"/{IG}")]
    assert [c.status for c in lookups] == [400]  # not retried: it cannot succeed
