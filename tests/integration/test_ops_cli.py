"""The ops CLI as operators run it: a real process, real broker and store, reliable exit codes."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from parley_events import ChannelSnapshot, qualify, topics
from parley_shared.store import store_kind
from pymongo import MongoClient

from tests.conftest import Infra
from tests.support.kafka import read_records

pytestmark = pytest.mark.integration

PARLEY = str(Path(sys.executable).parent / "parley")


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return subprocess.run(
        [PARLEY, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def stored_credential(url: str, channel_id: str) -> dict[str, Any] | None:
    """The channel's credential as stored (sealed), on the store of ``url``."""
    if store_kind(url) == "postgresql":
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT doc FROM channel_credentials WHERE id = %s", (channel_id,)).fetchone()
        return None if row is None else dict(row[0])
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    try:
        return client.get_default_database()["channel_credentials"].find_one({"_id": channel_id})
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["postgresql", "mongodb"])
async def test_channels_register_creates_an_active_channel_and_publishes_it(
    infra: Infra, namespace: str, store_url: str, database_url: str, kind: str
) -> None:
    url = store_url if kind == "postgresql" else database_url
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_STORE_URL": url,
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_ENCRYPTION_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "PARLEY_META_APP_ID": "app",
        "PARLEY_META_APP_SECRET": "app-secret",
        "PARLEY_JWT_HS256_SECRET": "ops-cli-test-secret-of-32-bytes-or-more",
    }
    token = "page-token-that-must-never-be-printed"
    done = run(
        [
            "channels",
            "register",
            "--tenant",
            "tenant-ops",
            "--provider",
            "messenger",
            "--account-id",
            "page-ops",
            "--display-name",
            "Ops Page",
            "--access-token",
            token,
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    channel_id = done.stdout.strip().splitlines()[-1]
    assert channel_id.startswith("ch_")
    assert token not in done.stdout + done.stderr

    records = await read_records(
        infra.kafka, qualify(topics.CHANNELS.name, namespace), until=lambda rs: len(rs) >= 1
    )
    snapshot = ChannelSnapshot.model_validate_json(records[0].value)
    assert (snapshot.channel_id, snapshot.tenant_id, snapshot.account_id) == (
        channel_id,
        "tenant-ops",
        "page-ops",
    )
    assert snapshot.status.value == "active"
    assert snapshot.display_name == "Ops Page"

    try:
        stored = stored_credential(url, channel_id)
        assert stored is not None
        assert token not in str(stored)  # encrypted at rest
        assert stored["token"]["key_id"] == "k1"

        # key rotation: a new key first, the old one still listed, then rotate
        rotated_env = {
            **env,
            "PARLEY_ENCRYPTION_KEYS": "k2:"
            + base64.b64encode(os.urandom(32)).decode()
            + ","
            + env["PARLEY_ENCRYPTION_KEYS"],
        }
        rotated = run(["credentials", "rotate"], rotated_env)
        assert rotated.returncode == 0, rotated.stderr
        assert "re-encrypted 1 secret(s) in 1 document(s) with key k2" in rotated.stdout
        again = stored_credential(url, channel_id)
        assert again is not None
        assert again["token"]["key_id"] == "k2"
        assert again["token"]["ciphertext"] != stored["token"]["ciphertext"]
    finally:
        if kind == "mongodb":
            client: MongoClient[dict[str, Any]] = MongoClient(database_url)
            client.drop_database(client.get_default_database().name)
            client.close()


async def test_topics_create_and_describe_work_as_the_runbook_says(infra: Infra, unique: str) -> None:
    env = {"PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka, "PARLEY_TOPIC_NAMESPACE": f"ops{unique}"}
    created = run(["topics", "create", "--wait", "30"], env)
    assert created.returncode == 0, created.stderr
    assert f"created ops{unique}.parley.conversations.v1" in created.stdout
    again = run(["topics", "create"], env)
    assert "0 topic(s) created" in again.stdout
    described = run(["topics", "describe"], env)
    assert described.returncode == 0, described.stderr
    assert f"ops{unique}.parley.webhooks.raw.v1\tpartitions=12" in described.stdout.splitlines()
    from parley_shared.admin import delete_namespace

    await delete_namespace(infra.kafka, f"ops{unique}")


def test_usage_errors_exit_2_and_every_command_has_help() -> None:
    assert run(["channels", "register"], {}).returncode == 2
    assert run(["no-such-command"], {}).returncode == 2
    for command in (
        ["--help"],
        ["topics", "--help"],
        ["replay", "--help"],
        ["channels", "register", "--help"],
    ):
        result = run(command, {})
        assert result.returncode == 0, command
        assert "usage:" in result.stdout
