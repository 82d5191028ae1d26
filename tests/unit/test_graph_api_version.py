"""The Graph API version: one setting, one table of end-of-life dates, a warning and a gauge at start,
and no version written anywhere else in the code."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from parley_policy.settings import PolicySettings
from parley_providers import registry
from parley_providers.meta.client import GraphClient, graph_client
from parley_providers.meta.versions import (
    DEFAULT_GRAPH_API_VERSION,
    GRAPH_API_VERSIONS,
    WARN_BEFORE,
    graph_version_status,
)
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

V21_END = date(2027, 1, 21)
"""Graph API changelog: v21.0 is available until January 21, 2027."""


# --- the table -------------------------------------------------------------------------------------


def test_the_table_has_the_changelogs_dates() -> None:
    assert GRAPH_API_VERSIONS["v21.0"].available_until == V21_END
    assert GRAPH_API_VERSIONS["v25.0"].released == date(2026, 2, 18)
    assert GRAPH_API_VERSIONS["v25.0"].available_until == date(2028, 7, 29)
    assert GRAPH_API_VERSIONS["v27.0"].released == date(2026, 11, 4)
    for version, row in GRAPH_API_VERSIONS.items():
        assert row.version == version
        assert row.available_until is None or row.available_until > row.released + timedelta(days=365)


def test_the_default_is_v25_or_newer_with_a_published_end() -> None:
    default = GRAPH_API_VERSIONS[DEFAULT_GRAPH_API_VERSION]
    assert default.released >= GRAPH_API_VERSIONS["v25.0"].released
    assert default.available_until is not None


# --- the warning, at its boundaries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "days_left", "warns"),
    [
        (V21_END - WARN_BEFORE - timedelta(days=1), 91, False),
        (V21_END - WARN_BEFORE, 90, True),
        (date(2026, 11, 30), 52, True),
        (V21_END, 0, True),
        (V21_END + timedelta(days=1), -1, True),
    ],
    ids=["91-days", "90-days", "2026-11-30", "last-day", "past"],
)
def test_a_version_warns_from_ninety_days_before_its_end(today: date, days_left: int, warns: bool) -> None:
    status = graph_version_status("v21.0", today)
    assert (status.provider, status.api, status.version) == ("meta", "graph", "v21.0")
    assert status.ends_on == V21_END
    assert status.days_left == days_left
    assert (status.warning is not None) is warns
    if warns:
        assert "2027-01-21" in (status.warning or "")


def test_a_past_version_says_it_ended() -> None:
    status = graph_version_status("v20.0", date(2026, 11, 30))
    assert status.days_left is not None and status.days_left < 0
    assert "ended on 2026-09-24" in (status.warning or "")


def test_a_version_without_a_published_end_does_not_warn() -> None:
    status = graph_version_status("v27.0", date(2026, 11, 30))
    assert (status.ends_on, status.days_left, status.warning) == (None, None, None)


def test_a_version_parley_does_not_know_warns_that_its_end_is_unknown() -> None:
    status = graph_version_status("v99.0", date(2026, 11, 30))
    assert (status.ends_on, status.days_left) == (None, None)
    assert "not in Parley's table" in (status.warning or "")


# --- at start: the gauge and the log line ----------------------------------------------------------


def days_left_sample(version: str) -> float | None:
    return REGISTRY.get_sample_value(
        "parley_provider_api_version_days_left", {"provider": "meta", "api": "graph", "version": version}
    )


def test_a_process_near_the_end_logs_a_warning_and_exports_the_days_left() -> None:
    warnings: list[tuple[str, dict[str, Any]]] = []

    statuses = registry.report_api_versions(
        SimpleNamespace(graph_api_version="v21.0"),
        lambda message, **fields: warnings.append((message, fields)),
        today=date(2026, 11, 30),
    )

    assert [s.version for s in statuses] == ["v21.0"]
    assert days_left_sample("v21.0") == 52
    [(message, fields)] = warnings
    assert "v21.0 ends on 2027-01-21, in 52 days" in message
    assert fields == {
        "provider": "meta",
        "api": "graph",
        "version": "v21.0",
        "ends_on": "2027-01-21",
        "days_left": 52,
    }


def test_a_process_on_the_default_version_exports_the_gauge_and_stays_quiet() -> None:
    warnings: list[str] = []
    today = date(2026, 11, 30)

    registry.report_api_versions(SimpleNamespace(graph_api_version=""), warnings.append, today=today)

    end = GRAPH_API_VERSIONS[DEFAULT_GRAPH_API_VERSION].available_until
    assert end is not None
    assert days_left_sample(DEFAULT_GRAPH_API_VERSION) == (end - today).days
    assert warnings == []


def test_a_service_without_graph_settings_has_no_graph_version() -> None:
    assert (
        registry.api_versions(SimpleNamespace(x_api_base_url="https://api.x.com"), date(2026, 11, 30)) == []
    )


# --- the setting -----------------------------------------------------------------------------------


def policy_settings(**extra: Any) -> PolicySettings:
    return PolicySettings(
        encryption_keys=SecretStr("k1:" + "A" * 44),
        meta_app_id="app",
        meta_app_secret=SecretStr("secret"),
        jwt_hs256_secret=SecretStr("x" * 32),
        **extra,
    )


def test_policys_setting_is_empty_by_default_and_takes_only_a_version() -> None:
    assert policy_settings().graph_api_version == ""
    assert policy_settings(graph_api_version="v27.0").graph_api_version == "v27.0"
    for wrong in ("21.0", "v21", "latest", "v21.0/me"):
        with pytest.raises(ValidationError):
            policy_settings(graph_api_version=wrong)


def test_policy_reads_the_version_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_GRAPH_API_VERSION", "v26.0")
    assert policy_settings().graph_api_version == "v26.0"


@pytest.mark.parametrize(
    ("configured", "path_version"), [("", DEFAULT_GRAPH_API_VERSION), ("v27.0", "v27.0")]
)
async def test_every_graph_path_starts_with_the_configured_version(
    configured: str, path_version: str
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"message_id": "m_1", "id": "1_2", "data": []})

    settings = SimpleNamespace(
        graph_base_url="https://graph.test",
        graph_api_version=configured,
        meta_app_id="app",
        meta_app_secret=SecretStr("secret"),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        graph = graph_client(http, settings)
        assert graph.api_version == path_version
        await graph.send_message("104", "token", {"recipient": {"id": "1"}, "message": {"text": "hi"}})
        await graph.reply_to_comment("104_1", "token", "thanks")
        await graph.permissions("token")
    assert seen and all(path.startswith(f"/{path_version}/") for path in seen), seen


async def test_a_client_built_without_a_version_uses_the_default() -> None:
    async with httpx.AsyncClient() as http:
        assert (
            GraphClient(http, "https://graph.test", "app", "secret").api_version == DEFAULT_GRAPH_API_VERSION
        )


# --- no other place names a version ----------------------------------------------------------------

GRAPH_VERSION = re.compile(r"\bv\d{2,}\.\d+\b")
"""A Graph API version as Meta writes them (v21.0, v25.0); X's v1.1 and v2 are not Graph's."""
SOURCES = ("services", "shared", "deploy", "scripts")
SUFFIXES = {".py", ".yaml", ".yml", ".tpl", ".toml", ".json", ".txt", ".sh"}
TABLE = Path("shared/providers/src/parley_providers/meta/versions.py")
PENDING: dict[Path, str] = {}
"""Files allowed to name a version for now, each with why (none today)."""


def versions_written_in(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return []
    return GRAPH_VERSION.findall(text)


def test_no_code_path_names_a_graph_version_but_the_table() -> None:
    found: dict[Path, list[str]] = {}
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*")):
            relative = path.relative_to(ROOT)
            if not path.is_file() or path.suffix not in SUFFIXES or relative == TABLE:
                continue
            if any(part in {"node_modules", "__pycache__", ".venv"} for part in relative.parts):
                continue
            if versions := versions_written_in(path):
                found[relative] = versions
    assert {p: v for p, v in found.items() if p not in PENDING} == {}
    for path, why in PENDING.items():
        # an entry that no longer names a version must go, so this list cannot hide a new one
        assert path in found, f"{path} no longer names a Graph API version: remove it from PENDING ({why})"
    assert versions_written_in(ROOT / TABLE), "the table itself names the versions"
