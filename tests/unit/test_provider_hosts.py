"""The services name no provider host: their host settings default to empty, which the provider
packages read as the provider's own host (Meta's Graph, X's API)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from parley_ingest.settings import NormalizerSettings
from parley_onboarding.settings import OnboardingSettings
from parley_policy.settings import PolicySettings
from parley_providers.meta.client import GRAPH_BASE_URL, graph_client
from parley_providers.x.client import X_API_BASE_URL, x_client
from pydantic import SecretStr

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("settings", [NormalizerSettings, OnboardingSettings, PolicySettings])
def test_every_host_setting_defaults_to_the_providers_own(settings: type) -> None:
    for name, field in settings.model_fields.items():
        if name.endswith("base_url"):
            assert field.default == "", (settings.__name__, name, field.default)


def test_an_empty_host_is_the_provider_packages_and_a_set_one_is_kept() -> None:
    http = httpx.AsyncClient()
    meta = SimpleNamespace(
        graph_base_url="", meta_app_id="app", meta_app_secret=SecretStr("s"), graph_api_version=""
    )
    assert graph_client(http, meta)._base == GRAPH_BASE_URL
    meta.graph_base_url = "http://127.0.0.1:9/sandbox"
    assert graph_client(http, meta)._base == "http://127.0.0.1:9/sandbox"
    x = SimpleNamespace(x_api_base_url="", x_client_id="client", x_client_secret=SecretStr("s"))
    client = x_client(http, x)
    assert client is not None
    assert client._base == X_API_BASE_URL
