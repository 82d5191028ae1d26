"""With the broker stopped, ingest answers 503 and never a 200 without an archived record."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess

import pytest
from parley_events import WebhookReceived, qualify, topics
from parley_ingest.bootstrap import create_ingest_app
from parley_ingest.settings import IngestSettings

from tests.conftest import ROOT, Infra, require_local_infra
from tests.support.apps import running
from tests.support.kafka import read_records
from tests.support.payloads import body_of, messenger_text

pytestmark = [pytest.mark.integration, pytest.mark.serial]

SECRET = "outage-secret"


def infra_script(command: str) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), command], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def signed(body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-hub-signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


async def test_a_stopped_broker_gets_503s_and_every_200_is_archived(infra: Infra, namespace: str) -> None:
    require_local_infra(infra, "this test stops the broker")
    settings = IngestSettings(
        kafka_bootstrap_servers=infra.kafka,
        topic_namespace=namespace,
        meta_app_secrets=SECRET,
        meta_verify_token="t",
        kafka_ack_timeout_s=2,
    )
    before = body_of(messenger_text("page-o", "c1", "before the outage", mid="m.before"))
    during = body_of(messenger_text("page-o", "c1", "during the outage", mid="m.during"))
    after = body_of(messenger_text("page-o", "c1", "after the outage", mid="m.after"))
    answers: dict[str, int] = {}
    async with running(create_ingest_app(settings)) as ingest:
        answers["before"] = (
            await ingest.post("/webhooks/meta", content=before, headers=signed(before))
        ).status_code
        infra_script("stop-kafka")
        try:
            answers["during"] = (
                await ingest.post("/webhooks/meta", content=during, headers=signed(during))
            ).status_code
            ready = await ingest.get("/readyz")
        finally:
            infra_script("up")
        # the provider retries the refused delivery once the broker is back
        answers["retry"] = (
            await ingest.post("/webhooks/meta", content=during, headers=signed(during))
        ).status_code
        answers["after"] = (
            await ingest.post("/webhooks/meta", content=after, headers=signed(after))
        ).status_code
    assert answers == {"before": 200, "during": 503, "retry": 200, "after": 200}
    assert ready.status_code == 503
    records = await read_records(
        infra.kafka, qualify(topics.WEBHOOKS_RAW.name, namespace), until=lambda rs: len(rs) >= 3, timeout=60
    )
    archived = [WebhookReceived.model_validate_json(r.value) for r in records]
    bodies = {base64.b64decode(a.body_b64) for a in archived}
    # every delivery that got a 200 is archived (the 503 one may also be, harmlessly, if the
    # broker took it just before the bound: its retry then has the same delivery id)
    assert {before, during, after} <= bodies
