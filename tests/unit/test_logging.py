"""Logging: no token, secret or signature ever leaves the process in a log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
import structlog
from parley_shared.logging import REDACTED, configure_logging, get_logger, redact_secrets

pytestmark = pytest.mark.unit

SIGNATURE = "sha256=" + "0123456789abcdef" * 4
META_TOKEN = "EAAGm0PX4ZCpsBAKZAq7hZBz9wZDZD1234567890abcdef"
BEARER_TOKEN = "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid"


def redact(event: dict[str, Any]) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event)))


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "access_token",
        "app_secret",
        "meta_app_secrets",
        "X-Hub-Signature-256",
        "x-hub-signature-256",
        "authorization",
        "Authorization",
        "password",
        "api_key",
        "cookie",
    ],
)
def test_values_under_secret_keys_are_removed(key: str) -> None:
    out = redact({"event": "request", key: "s3cr3t-value-not-a-pattern"})
    assert out[key] == REDACTED
    assert out["event"] == "request"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"bad signature {SIGNATURE} for delivery", SIGNATURE),
        (f"calling graph with Bearer {BEARER_TOKEN}", BEARER_TOKEN),
        (f"page token is {META_TOKEN}.", META_TOKEN),
        (
            f"GET https://graph.facebook.com/v20.0/me?fields=id&access_token={META_TOKEN}x&limit=1",
            f"{META_TOKEN}x",
        ),
        ("GET /webhooks/meta?hub.mode=subscribe&hub.verify_token=verify-me-please", "verify-me-please"),
        # any query parameter named like a token or a secret, whichever provider names it so
        ("GET /v21.0/debug_token?input_token=opaque-token-value", "opaque-token-value"),
        ("GET /oauth/access_token?fb_exchange_token=short-lived-1&x=1", "short-lived-1"),
        ("POST /token?refresh_token=rotating-refresh-2", "rotating-refresh-2"),
    ],
)
def test_secrets_inside_free_text_are_redacted(text: str, secret: str) -> None:
    out = redact({"event": text})
    assert secret not in out["event"]
    assert REDACTED in out["event"]


def test_redacting_text_keeps_the_words_around_the_secret() -> None:
    out = redact({"event": f"bad signature {SIGNATURE} for delivery d1"})
    assert out["event"] == f"bad signature {REDACTED} for delivery d1"


def test_query_redaction_keeps_the_other_parameters() -> None:
    out = redact({"url": "https://graph.facebook.com/me?fields=id&access_token=abc123&limit=1"})
    assert out["url"] == f"https://graph.facebook.com/me?fields=id&{REDACTED}&limit=1"


def test_secrets_in_nested_dicts_and_lists_are_redacted() -> None:
    event = {
        "event": "webhook rejected",
        "headers": {
            "X-Hub-Signature-256": SIGNATURE,
            "Content-Type": "application/json",
            "nested": {"app_secret": "plain-secret-1", "note": f"Bearer {BEARER_TOKEN}"},
        },
        "attempts": [{"token": "plain-secret-2"}, f"retry with {META_TOKEN}", 3],
        "pair": ("ok", f"sig {SIGNATURE}"),
    }

    out = redact(event)
    rendered = json.dumps(out)

    for secret in (SIGNATURE, BEARER_TOKEN, META_TOKEN, "plain-secret-1", "plain-secret-2"):
        assert secret not in rendered
    assert out["headers"]["Content-Type"] == "application/json"
    assert out["headers"]["X-Hub-Signature-256"] == REDACTED
    assert out["headers"]["nested"]["app_secret"] == REDACTED
    assert out["attempts"][0]["token"] == REDACTED
    assert out["attempts"][2] == 3
    assert out["pair"][0] == "ok"


def test_secrets_in_bytes_values_are_redacted() -> None:
    out = redact({"body": f"sig={SIGNATURE}".encode()})
    assert SIGNATURE not in str(out["body"])


def test_secrets_in_read_only_mappings_are_redacted() -> None:
    headers = MappingProxyType({"x-hub-signature-256": SIGNATURE, "authorization": "Basic dXNlcjpwYXNz"})

    out = redact({"event": "webhook rejected", "headers": headers})

    assert SIGNATURE not in repr(out)
    assert "dXNlcjpwYXNz" not in repr(out)


def test_ordinary_fields_are_left_intact() -> None:
    event = {
        "event": "message recorded",
        "tenant_id": "ten_acme",
        "channel_id": "chn_1",
        "conversation_id": "conv_0f3a",
        "delivery_id": "3f1c0a7e5b" * 6 + "abcd",
        "sequence": 7,
        "ok": True,
        "ratio": 0.5,
        "missing": None,
        "provider": "messenger",
        "text": "Where is my order #12345?",
    }
    assert redact(event) == event


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_name_the_service_and_carry_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "info", "json")

    get_logger("unit.test").info(
        f"webhook with {SIGNATURE}",
        app_secret="plain-secret-3",
        headers={"authorization": f"Bearer {BEARER_TOKEN}"},
        conversation_id="conv_1",
    )

    out = capsys.readouterr().out
    [line] = [entry for entry in json_lines(out) if entry.get("logger") == "unit.test"]
    assert line["service"] == "svc"
    assert line["level"] == "info"
    assert line["conversation_id"] == "conv_1"
    assert line["app_secret"] == REDACTED
    for secret in (SIGNATURE, BEARER_TOKEN, "plain-secret-3"):
        assert secret not in out


@pytest.mark.usefixtures("restore_logging")
def test_standard_library_log_lines_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "info", "json")

    logging.getLogger("thirdparty").warning("token in a url ?access_token=%s&x=1", "plain-secret-4")

    out = capsys.readouterr().out
    [line] = [entry for entry in json_lines(out) if entry.get("logger") == "thirdparty"]
    assert line["service"] == "svc"
    assert "plain-secret-4" not in out


@pytest.mark.usefixtures("restore_logging")
def test_the_configured_level_filters_lower_levels(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "warning", "json")

    log = get_logger("unit.level")
    log.info("not shown")
    log.warning("shown")

    events = [e["event"] for e in json_lines(capsys.readouterr().out) if e.get("logger") == "unit.level"]
    assert events == ["shown"]
