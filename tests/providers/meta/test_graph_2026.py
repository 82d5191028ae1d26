"""Meta's 2026 changes against the provider sandbox: the Graph API version comes from the settings
on every call, a Page restricted from sending (10/1893063), and the sender sends the decision's
messaging type and tag (no tag inside the 24-hour window, HUMAN_AGENT only after it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from parley_events import Provider
from parley_providers import ErrorKind
from parley_providers.meta.client import graph_client
from parley_providers.meta.outbound import MetaSender
from pydantic import SecretStr

from tests.support.sandbox import GRAPH_VERSION, REDIRECT, Sandbox, acme_pages, approved, fails

pytestmark = [pytest.mark.integration, pytest.mark.contract]


async def test_every_graph_call_names_the_version_the_settings_give(sandbox: Sandbox) -> None:
    settings = SimpleNamespace(
        graph_base_url=sandbox.url,
        graph_api_version="v27.0",
        meta_app_id=sandbox.state.meta_app_id,
        meta_app_secret=SecretStr(sandbox.state.meta_app_secret),
    )
    graph = graph_client(sandbox.http, settings)
    code = await sandbox.meta_user(pages=acme_pages())
    short = await graph.exchange_code(code, REDIRECT)
    long = await graph.long_lived_token(short.access_token)
    acme = (await graph.pages(long.access_token))[0]
    await graph.permissions(long.access_token)
    await graph.debug_token(long.access_token)
    await graph.subscribe_page(acme.id, acme.access_token, ["messages"])
    payload = {
        "recipient": {"id": "6900000000000001"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hi"},
    }
    await graph.send_message(acme.id, acme.access_token, payload)
    await graph.reply_to_comment(f"{acme.id}_1", acme.access_token, "Thanks")

    assert len(sandbox.state.calls) == 8
    assert {call.version for call in sandbox.state.calls} == {"v27.0"}
    assert [s.version for s in sandbox.state.sent] == ["v27.0", "v27.0"]
    listed = await sandbox.admin("GET", "/calls")
    assert {row["version"] for row in listed["data"]} == {"v27.0"}

    sandbox.state.calls.clear()
    unset = graph_client(sandbox.http, SimpleNamespace(**{**vars(settings), "graph_api_version": ""}))
    await unset.permissions(long.access_token)  # no version configured: the default
    assert [call.version for call in sandbox.state.calls] == [GRAPH_VERSION]


async def test_a_page_restricted_from_sending_answers_10_1893063_until_meta_lifts_it(
    sandbox: Sandbox,
) -> None:
    pages_spec = [{"id": "104512345678908", "name": "Held", "sending_restricted": True}]
    _, _, pages = await sandbox.connect_meta(pages=pages_spec)
    page = pages[0]
    response = {
        "recipient": {"id": "6900000000000008"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hi"},
    }

    error = await fails(sandbox.graph.send_message(page.id, page.access_token, response))

    assert (error.status, error.code, error.subcode) == (400, 10, 1893063)
    assert error.kind is ErrorKind.SENDING_RESTRICTED
    assert (await sandbox.admin("GET", f"/meta/pages/{page.id}"))["sending_restricted"] is True
    sandbox.state.pages[page.id].sending_restricted = False
    assert (await sandbox.graph.send_message(page.id, page.access_token, response)).startswith("m_")


async def test_the_sender_sends_the_decisions_messaging_type_and_tag_and_nothing_else(
    sandbox: Sandbox,
) -> None:
    pages_spec = [{"id": "104512345678909", "name": "Strict", "enforce_window": True}]
    _, _, pages = await sandbox.connect_meta(pages=pages_spec)
    page, psid = pages[0], "6900000000000009"
    sender = MetaSender(sandbox.graph)
    sandbox.state.open_window(page.id, psid, ago_s=3600)

    inside_window = approved(
        Provider.MESSENGER, page.id, psid, "direct", text="Hi", messaging_type="RESPONSE"
    )
    await sender.send(inside_window, page.access_token)
    sandbox.state.advance(2 * 86400)
    tagged = approved(
        Provider.MESSENGER,
        page.id,
        psid,
        "direct",
        text="Hi",
        messaging_type="MESSAGE_TAG",
        tag="HUMAN_AGENT",
    )
    await sender.send(tagged, page.access_token)

    inside, after = sandbox.state.sent
    assert (inside.status, after.status) == (200, 200)
    assert inside.body["messaging_type"] == "RESPONSE" and "tag" not in inside.body
    assert (after.body["messaging_type"], after.body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
