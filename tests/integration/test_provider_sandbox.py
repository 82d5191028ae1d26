"""The provider sandbox itself: its admin API, its reset, its command line and its defaults.

What Parley's clients and senders do against it is in tests/providers/<provider>/ (the contract
tests); here is what those tests rely on the sandbox for.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time

import httpx
import pytest
from parley_providers.meta.client import GraphClient
from parley_sandbox import build_parser, state_from_args

from tests.conftest import ROOT
from tests.support.sandbox import GRAPH_VERSION, REDIRECT, Sandbox, acme_pages

pytestmark = pytest.mark.integration


async def test_reset_forgets_all_but_credentials_and_admin_validates(sandbox: Sandbox) -> None:
    await sandbox.connect_meta(pages=acme_pages())
    await sandbox.whatsapp_number()
    token = await sandbox.x_connect()
    await sandbox.admin("POST", "/x/webhooks", {"webhook_id": "4242"})
    await sandbox.x.subscribe_account_activity(token.access_token, "4242")
    await sandbox.admin("POST", "/faults", {"path_contains": "/x", "status": 500})
    await sandbox.admin("POST", "/clock", {"advance_s": 100})
    assert (await sandbox.admin("GET", "/clock"))["offset_s"] == 100
    assert await sandbox.admin("POST", "/reset") == {"reset": True}
    state = sandbox.state
    assert (state.meta_users, state.tokens, state.whatsapp_numbers, state.faults, state.sent) == (
        {},
        {},
        {},
        [],
        [],
    )
    assert state.clock_offset_s == 0 and state.meta_app_id == "dev-meta-app"
    assert state.x_webhooks == {"4242": []}  # app configuration stays, subscriptions go
    assert (await sandbox.admin("GET", "/health"))["status"] == "ok"

    assert await sandbox.admin_status("POST", "/meta/users", {"pages": [{"name": "no id"}]}) == 400
    assert await sandbox.admin_status("POST", "/meta/users", {"granted": "pages_messaging"}) == 400
    assert await sandbox.admin_status("POST", "/whatsapp/numbers", {"phone_number_id": "1"}) == 400
    assert await sandbox.admin_status("POST", "/x/users", {"id": "abc", "username": "u"}) == 400
    assert await sandbox.admin_status("POST", "/meta/users/nobody/remove-page-access/1") == 404
    response = await sandbox.http.post(f"{sandbox.url}/_sandbox/meta/users", content=b"not json")
    assert response.status_code == 400


async def test_fault_switches_are_listed_counted_down_cleared_and_validated(sandbox: Sandbox) -> None:
    fault = await sandbox.fault(path_contains="/messages", status=400, code=130429, times=2)
    assert fault["times"] == 2
    assert (await sandbox.admin("GET", "/faults"))["data"][0]["code"] == 130429
    sandbox.state.take_fault("POST", "/v1.0/1/messages")
    assert (await sandbox.admin("GET", "/faults"))["data"][0]["times"] == 1
    await sandbox.fault(path_contains="/subscribed_apps", status=500, times=5)
    assert await sandbox.admin("DELETE", "/faults") == {"deleted": 2}
    assert sandbox.state.faults == []

    assert await sandbox.admin_status("POST", "/faults", {"status": 302}) == 400
    assert await sandbox.admin_status("POST", "/faults", {"status": 500, "times": 0}) == 400


async def test_parley_sandbox_command_serves_with_its_arguments() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "parley_sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--meta-app-id",
        "cli-app",
        "--meta-app-secret",
        "cli-secret",
        "--x-webhook-id",
        "1500000000000000001",
        "--log-level",
        "warning",
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await http.get(f"{url}/_sandbox/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.returncode is not None:
                    assert process.stderr is not None
                    pytest.fail("parley-sandbox exited: " + (await process.stderr.read()).decode())
                assert time.monotonic() < deadline, "the sandbox did not start in time"
                await asyncio.sleep(0.1)
            created = (await http.post(f"{url}/_sandbox/meta/users", json={"pages": acme_pages()})).json()
            graph = GraphClient(http, url, "cli-app", "cli-secret", GRAPH_VERSION)
            token = await graph.exchange_code(created["code"], REDIRECT)
            assert len(await graph.pages(token.access_token)) == 2
            webhook = await http.get(f"{url}/_sandbox/x/webhooks/1500000000000000001")
            assert webhook.json() == {"webhook_id": "1500000000000000001", "subscriptions": []}
            # --x-webhook-id replaces the development default
            assert (await http.get(f"{url}/_sandbox/x/webhooks/dev-x-webhook")).status_code == 404
        # the answers came from this process, not from another server that took the port after it
        # was probed free: a sandbox that could not bind it has exited
        assert process.returncode is None, "parley-sandbox exited while it was being tested"
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


def test_the_default_configuration_matches_the_development_stack() -> None:
    devenv = (ROOT / "scripts" / "devenv.py").read_text()
    state = state_from_args(build_parser().parse_args([]))
    values = (state.meta_app_id, state.meta_app_secret, state.x_client_id, state.x_client_secret)
    for value in (*values, state.x_bearer_token):
        assert f'"{value}"' in devenv
    assert list(state.x_webhooks) == ["dev-x-webhook", "1000000000000000001"]
    assert '"PARLEY_X_WEBHOOK_ID": "dev-x-webhook"' in devenv
    assert '"PARLEY_X_ACTIVITY_WEBHOOK_ID": "1000000000000000001"' in devenv
    # the Login dialog opened with this configuration is Embedded Signup's window (the console's)
    assert f'"PARLEY_WHATSAPP_EMBEDDED_SIGNUP_CONFIG_ID": "{state.whatsapp_signup_config_id}"' in devenv
