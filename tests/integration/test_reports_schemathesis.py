"""Bad input at the reports API, driven by its own OpenAPI document (schemathesis), as
tests/integration/test_api_schemathesis.py does for the other APIs: the real app on the real
broker and store, with a channel and a conversation in its read model."""

from __future__ import annotations

from typing import Any

import pytest
from parley_events import ChannelRole, ChannelSnapshot, ChannelStatus, Provider
from parley_reports.bootstrap import create_reports_app
from parley_reports.settings import ReportsSettings
from parley_shared.auth import issue_dev_token

from tests.conftest import Infra
from tests.support.apps import running
from tests.support.kafka import eventually, publish_events
from tests.support.openapi import assert_auth_enforced, fuzz
from tests.support.reports import CHANNEL, TENANT, Conversation

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

JWT = "schemathesis-reports-secret-of-32-bytes"
FORGED = {"authorization": f"Bearer {issue_dev_token('f' * 32, 'usr-admin', TENANT, ['admin'])}"}


async def test_reports_api_refuses_bad_input_and_answers_as_documented(
    infra: Infra, namespace: str, store_url: str
) -> None:
    channel = ChannelSnapshot(
        channel_id=CHANNEL,
        tenant_id=TENANT,
        provider=Provider.MESSENGER,
        account_id="page_1",
        status=ChannelStatus.ACTIVE,
        revision=1,
        user_access={"sam": ChannelRole.SUPERVISOR},
    )
    c = Conversation("conv_1")
    reply = c.reply(5)
    await publish_events(infra.kafka, namespace, channel, c.created(0), c.message(0), reply, c.echo(reply))
    settings = ReportsSettings(
        kafka_bootstrap_servers=infra.kafka,
        store_url=store_url,
        topic_namespace=namespace,
        consumer_group_prefix=namespace,
        jwt_hs256_secret=JWT,
        log_level="warning",
    )
    admin = {"authorization": f"Bearer {issue_dev_token(JWT, 'usr-admin', TENANT, ['admin'])}"}
    async with running(create_reports_app(settings)) as api:

        async def applied() -> bool:
            response = await api.get("/v1/reports/backlog", headers=admin, params={"channel_id": CHANNEL})
            body: dict[str, Any] = response.json()
            return response.status_code == 200 and body["open_by_queue"]["new"] == 1

        await eventually(applied, timeout=60)
        spec = (await api.get("/v1/openapi.json")).json()
        assert len(await assert_auth_enforced(api, spec, {}, FORGED)) == 3
        run = await fuzz(api, spec, admin, {}, max_examples=25)
    assert not run.failures, "\n\n".join(run.failures)
    assert len(run.calls) == 3, run.calls
