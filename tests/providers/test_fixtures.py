"""Every recorded-shape fixture (tests/fixtures/providers/<provider>/) is its provider's, parses
through the endpoint its deliveries arrive at, and has a field-level test in tests/providers/."""

from __future__ import annotations

from pathlib import Path

import pytest
from parley_providers import registry

from tests.support import fixtures

pytestmark = [pytest.mark.unit, pytest.mark.contract]

HERE = Path(__file__).resolve().parent
PROVIDERS = sorted(p.name for p in fixtures.FIXTURES.iterdir() if p.is_dir())
ALL = [(provider, name) for provider in PROVIDERS for name in fixtures.names(provider)]


def endpoint_name(provider: str) -> str:
    """Where a provider's deliveries arrive: its own endpoint, or Meta's for WhatsApp (whose
    Business Account webhooks Meta sends; the plugin has no endpoint)."""
    plugin = registry.plugins()[provider]
    return plugin.webhook.name if plugin.webhook is not None else "meta"


def test_every_fixture_folder_is_a_provider_plugin_with_a_contract_test_folder() -> None:
    assert sorted(registry.plugins()) == PROVIDERS
    for provider in PROVIDERS:
        assert (HERE / provider / "test_parser.py").is_file(), provider
        assert (HERE / provider / "test_client.py").is_file(), provider
        assert (HERE / provider / "test_sender.py").is_file(), provider


@pytest.mark.parametrize(("provider", "name"), ALL, ids=[f"{p}/{n}" for p, n in ALL])
def test_every_fixture_parses_without_a_refused_item(provider: str, name: str) -> None:
    endpoint = registry.webhook_endpoint(endpoint_name(provider))
    assert endpoint is not None

    result = endpoint.parse(fixtures.load(provider, name))

    assert result.failures == ()
    assert (
        result.messages
        or result.statuses
        or result.templates
        or result.limits
        or result.handovers
        or result.throughputs
        or result.changes
        or result.skipped
    )


@pytest.mark.parametrize(("provider", "name"), ALL, ids=[f"{p}/{n}" for p, n in ALL])
def test_every_fixture_is_named_by_a_test_of_its_provider(provider: str, name: str) -> None:
    sources = "".join(path.read_text() for path in (HERE / provider).glob("test_*.py"))
    assert f'"{name}"' in sources, f"no test in tests/providers/{provider}/ names fixture {name}"
