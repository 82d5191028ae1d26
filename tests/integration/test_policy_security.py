"""Policy's defences of security issue #13, against the real broker and store and the sandbox.

Who may reply and as what (finding 2): automated replies are for service principals (the
``parley:automation`` scope) only, every approved reply records who asked, and a conversation the
caller cannot see answers exactly as one that does not exist.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parley_events import ChannelRole, MessageKind, Provider, topics
from parley_shared.auth import AUTOMATION_SCOPE, issue_dev_token

from tests.conftest import Infra
from tests.support.kafka import eventually
from tests.support.policy import (
    APPROVED,
    GRAPH,
    JWT,
    OTHER_TENANT,
    REQUESTED,
    SENT,
    TENANT,
    Sandbox,
    channel,
    inbound,
    of_type,
    policy_stack,
    policy_stores,
)

pytestmark = pytest.mark.integration

PAGE = "104512345678901"
PSID = "2400000000000001"


def start_time() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def bearer(
    user: str, tenant: str = TENANT, roles: tuple[str, ...] = (), service: bool = False
) -> dict[str, str]:
    token = issue_dev_token(JWT, user, tenant, list(roles), scopes=[AUTOMATION_SCOPE] if service else None)
    return {"authorization": f"Bearer {token}", "Idempotency-Key": secrets.token_hex(8)}


async def test_only_service_principals_send_automated_replies_and_every_reply_records_who_asked(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    messenger = channel(
        "ch-m",
        Provider.MESSENGER,
        PAGE,
        user_access={"vera": ChannelRole.VIEWER, "ana": ChannelRole.CONTRIBUTOR},
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE))]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))
        automated = {"text": "Your order shipped", "sender_type": "automated"}

        # a person's token asking for automated is refused, whatever their role, before any lookup
        refusals = []
        for user, roles, conversation in [
            ("vera", (), "conv-1"),  # a Viewer
            ("nobody", (), "conv-1"),  # no role on the channel
            ("ana", (), "conv-1"),  # a Contributor is still a person
            ("boss", ("admin",), "conv-1"),  # so is a tenant admin
            ("nobody", (), "conv-unknown"),  # and the answer says nothing about existence
        ]:
            for path in ("replies", "replies:check"):
                response = await stack.api.post(
                    f"/v1/conversations/{conversation}/{path}",
                    json=automated,
                    headers=bearer(user, roles=roles),
                )
                assert response.status_code == 403, (user, path, response.text)
                assert response.json()["code"] == "AUTOMATION_SCOPE_REQUIRED"
                refusals.append(response.json())
        assert all(r == refusals[0] for r in refusals)

        # a service principal of the tenant may, with no role on the channel
        checked = await stack.api.post(
            "/v1/conversations/conv-1/replies:check", json=automated, headers=bearer("bot-1", service=True)
        )
        assert checked.status_code == 200, checked.text
        assert checked.json()["approved"] is True
        bot = await stack.api.post(
            "/v1/conversations/conv-1/replies", json=automated, headers=bearer("bot-1", service=True)
        )
        assert bot.status_code == 202, bot.text
        # ...but not in another tenant
        elsewhere = await stack.api.post(
            "/v1/conversations/conv-1/replies",
            json=automated,
            headers=bearer("bot-2", OTHER_TENANT, service=True),
        )
        assert elsewhere.status_code == 404, elsewhere.text
        person = await stack.reply("conv-1", {"text": "Ana here"}, "ana")
        assert person.status_code == 202, person.text

        bot_id, person_id = bot.json()["decision_id"], person.json()["decision_id"]
        events = await stack.events(
            topics.REPLIES,
            lambda evs: bool(of_type(evs, SENT, reply_id=bot_id) and of_type(evs, SENT, reply_id=person_id)),
        )
        for event_type in (REQUESTED, APPROVED, SENT):
            (by_bot,) = of_type(events, event_type, reply_id=bot_id)
            assert (by_bot["sender_type"], by_bot["agent_id"], by_bot["requested_by"]) == (
                "automated",
                None,
                "bot-1",
            )
            (by_ana,) = of_type(events, event_type, reply_id=person_id)
            assert (by_ana["sender_type"], by_ana["agent_id"], by_ana["requested_by"]) == (
                "human",
                "ana",
                "ana",
            )
        # the refused attempts left no trace; the stored decisions name who asked
        assert {e["requested_by"] for e in of_type(events, REQUESTED)} == {"bot-1", "ana"}
        async with policy_stores(stack.store_url) as (decisions, _):
            assert (await decisions.decision(bot_id))["requested_by"] == "bot-1"  # type: ignore[index]
            assert (await decisions.decision(person_id))["requested_by"] == "ana"  # type: ignore[index]
        assert len(await stack.sandbox.accepted(f"/{PAGE}/messages")) == 2


async def test_check_answers_no_access_exactly_as_no_such_conversation(
    infra: Infra, namespace: str, store_url: str
) -> None:
    t0 = start_time()
    messenger = channel("ch-m", Provider.MESSENGER, PAGE, user_access={"ana": ChannelRole.CONTRIBUTOR})

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, None)]

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        await stack.customer_message(inbound(messenger, "conv-1", PSID, t0))
        text = {"text": "hi"}
        answers = []
        for user, tenant, conversation in [
            ("nobody", TENANT, "conv-1"),  # exists, no role
            ("nobody", TENANT, "conv-unknown"),  # does not exist
            ("ana", OTHER_TENANT, "conv-1"),  # another tenant's
        ]:
            for path in ("replies:check", "replies"):
                response = await stack.api.post(
                    f"/v1/conversations/{conversation}/{path}", json=text, headers=bearer(user, tenant)
                )
                answers.append((response.status_code, response.headers["content-type"], response.content))
        assert answers[0][0] == 404
        assert all(a == answers[0] for a in answers), answers
        # the same conversation is there for a Contributor
        assert (await stack.check("conv-1", text, "ana")).json()["approved"] is True


async def test_a_public_reply_answers_only_a_comment_or_post_of_its_conversation(
    infra: Infra, namespace: str, store_url: str
) -> None:
    """Finding 9: any comment_id was accepted, so a Contributor could post as the brand anywhere."""
    t0 = start_time()
    messenger = channel("ch-m", Provider.MESSENGER, PAGE, user_access={"ana": ChannelRole.CONTRIBUTOR})
    x = channel("ch-x", Provider.X, "1500000000000000001", user_access={"ana": ChannelRole.CONTRIBUTOR})
    ig = channel(
        "ch-ig", Provider.INSTAGRAM, "17841400000000001", user_access={"ana": ChannelRole.CONTRIBUTOR}
    )

    async def setup(sandbox: Sandbox) -> list[Any]:
        return [(messenger, await sandbox.page(PAGE)), (x, None), (ig, None)]

    def public(snapshot: Any, conversation: str, item: str, kind: MessageKind) -> Any:
        message = inbound(snapshot, conversation, "2400000000000009", t0)
        return message.model_copy(
            update={"kind": kind, "provider_message_id": item, "event_id": f"msg_{item}"}
        )

    async with policy_stack(infra, namespace, store_url, setup, now=t0 + timedelta(minutes=1)) as stack:
        await stack.publish(
            public(messenger, "conv-post-1", "post1_c1", MessageKind.COMMENT),
            public(messenger, "conv-post-2", "post2_c9", MessageKind.COMMENT),
            public(x, "conv-x-1", "1790000000000000001", MessageKind.MENTION),
            # ingest names an Instagram mention "mention:<comment id>"; the reply names the comment
            public(ig, "conv-ig-1", "mention:17900000000000042", MessageKind.MENTION),
        )
        answer = {"kind": "comment", "text": "Thanks!", "comment_id": "post1_c1"}
        mention = {"kind": "mention", "text": "On it!", "comment_id": "1790000000000000001"}

        async def recorded() -> bool:
            comment = await stack.check("conv-post-1", answer, "ana")
            tweet = await stack.check("conv-x-1", mention, "ana")
            other = await stack.check("conv-post-2", {**answer, "comment_id": "post2_c9"}, "ana")
            instagram = await stack.check("conv-ig-1", {**answer, "comment_id": "17900000000000042"}, "ana")
            return all(
                r.status_code == 200 and r.json()["approved"] for r in (comment, tweet, other, instagram)
            )

        await eventually(recorded)

        for conversation, body in [
            ("conv-post-1", {**answer, "comment_id": "post2_c9"}),  # another conversation's comment
            ("conv-post-1", {**answer, "comment_id": "1234567890_987654321"}),  # any post on Facebook
            ("conv-x-1", {**mention, "comment_id": "1790000000000000999"}),  # any tweet
        ]:
            refused = await stack.reply(conversation, body, "ana")
            assert refused.status_code == 422, refused.text
            assert refused.json()["code"] == "COMMENT_NOT_FOUND"
        accepted = await stack.reply("conv-post-1", answer, "ana")
        assert accepted.status_code == 202, accepted.text
        reply_id = accepted.json()["decision_id"]
        await stack.events(topics.REPLIES, lambda evs: bool(of_type(evs, SENT, reply_id=reply_id)))
        calls = await stack.sandbox.accepted("/comments")
        assert [c["path"] for c in calls] == [f"/{GRAPH}/post1_c1/comments"], calls


async def test_a_policy_started_on_a_graph_version_near_its_end_exports_the_days_left_and_warns(
    infra: Infra, namespace: str, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from parley_providers.meta.versions import GRAPH_API_VERSIONS

    from tests.support.apps import scrape_metrics

    ends_on = GRAPH_API_VERSIONS["v21.0"].available_until
    assert ends_on is not None

    async def setup(sandbox: Sandbox) -> list[Any]:
        return []

    async with policy_stack(
        infra,
        namespace,
        store_url,
        setup,
        now=start_time(),
        graph_api_version="v21.0",
        log_level="info",
    ) as stack:
        metrics = await scrape_metrics(stack.apps[0])
    days_left = (ends_on - datetime.now(UTC).date()).days
    line = (
        f'parley_provider_api_version_days_left{{api="graph",provider="meta",version="v21.0"}} {days_left}.0'
    )
    assert line in metrics
    if days_left <= 90:  # within the warning's reach (or past the end): said at start
        assert "v21.0" in capsys.readouterr().out
