"""The ops CLI as operators run it: a real process, real broker and store, reliable exit codes."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from parley_events import ChannelSnapshot, qualify, topics
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


async def test_channels_register_creates_an_active_channel_and_publishes_it(
    infra: Infra, namespace: str, database_url: str
) -> None:
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_MONGODB_URL": database_url,
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

    client: MongoClient[dict[str, Any]] = MongoClient(database_url)
    try:
        stored = client.get_default_database()["channel_credentials"].find_one({"_id": channel_id})
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
        again = client.get_default_database()["channel_credentials"].find_one({"_id": channel_id})
        assert again is not None
        assert again["token"]["key_id"] == "k2"
        assert again["token"]["ciphertext"] != stored["token"]["ciphertext"]
        client.drop_database(client.get_default_database().name)
    finally:
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
