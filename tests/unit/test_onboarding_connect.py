"""The connect flows onboarding gets from the registry: which provider gives which flow, what the
settings configure, and the provider facts each flow owns (no HTTP: nothing here is called)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from parley_events import Provider
from parley_providers import registry
from parley_providers.base import (
    AccountConnector,
    NumberConnector,
    PageConnector,
    SubscriptionKeeper,
    TokenCheck,
)
from parley_providers.meta.connect import DEFAULT_INSTAGRAM_PERMISSIONS, DEFAULT_PAGE_PERMISSIONS
from parley_providers.whatsapp.connect import NUMBER_RULES, display_name_problem
from pydantic import SecretStr

pytestmark = pytest.mark.unit


def settings(**overrides: Any) -> Any:
    """What onboarding's settings give the plugins (only the fields they read)."""
    values: dict[str, Any] = {
        "graph_base_url": "http://graph.test",
        "graph_api_version": "v25.0",
        "meta_app_id": "app",
        "meta_app_secret": SecretStr("app-secret"),
        "meta_permissions": None,
        "instagram_permissions": None,
        "page_subscribed_fields": None,
        "x_api_base_url": "http://x.test",
        "x_client_id": "x-client",
        "x_client_secret": SecretStr("x-secret"),
        "x_webhook_id": "x-webhook",
    }
    return SimpleNamespace(**{**values, **overrides})


async def test_every_provider_gives_its_connect_flow_and_meta_serves_pages_and_profiles_alike() -> None:
    async with httpx.AsyncClient() as http:
        connectors = registry.connectors(http, settings())
    assert set(connectors) == set(Provider)
    assert connectors[Provider.MESSENGER] is connectors[Provider.INSTAGRAM]
    assert isinstance(connectors[Provider.MESSENGER], PageConnector)
    assert isinstance(connectors[Provider.X], AccountConnector)
    assert isinstance(connectors[Provider.WHATSAPP], NumberConnector)
    # Graph tokens can be checked; X's connector has no such call
    assert isinstance(connectors[Provider.MESSENGER], TokenCheck)
    assert isinstance(connectors[Provider.WHATSAPP], TokenCheck)
    assert not isinstance(connectors[Provider.X], TokenCheck)


@pytest.mark.parametrize(
    "unset",
    [{"x_webhook_id": None}, {"x_webhook_id": ""}, {"x_client_secret": SecretStr("")}, {"x_client_id": None}],
)
async def test_x_is_not_connectable_without_its_client_and_webhook(unset: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        connectors = registry.connectors(http, settings(**unset))
    assert Provider.X not in connectors
    assert Provider.MESSENGER in connectors


async def test_x_offers_the_activity_api_first_once_its_webhook_and_the_apps_bearer_token_are_set() -> None:
    xaa = {"x_activity_webhook_id": "1900000000000000001", "x_bearer_token": SecretStr("app-bearer-value")}
    async with httpx.AsyncClient() as http:
        both = registry.connectors(http, settings(**xaa))[Provider.X]
        no_bearer = registry.connectors(http, settings(**{**xaa, "x_bearer_token": None}))[Provider.X]
        plain = registry.connectors(http, settings())[Provider.X]
        with pytest.raises(ValueError, match="1-19 digits"):
            registry.connectors(http, settings(**{**xaa, "x_activity_webhook_id": "dev-x-webhook"}))
    assert isinstance(both, SubscriptionKeeper) and isinstance(plain, SubscriptionKeeper)
    assert both.delivery_apis == ("activity", "account_activity")
    assert isinstance(no_bearer, SubscriptionKeeper)
    assert no_bearer.delivery_apis == plain.delivery_apis == ("account_activity",)
    assert "app-bearer-value" not in repr(both)


async def test_metas_permissions_default_to_its_own_list_and_settings_may_replace_them() -> None:
    async with httpx.AsyncClient() as http:
        default = registry.connectors(http, settings())[Provider.MESSENGER]
        narrowed = registry.connectors(
            http, settings(meta_permissions=("pages_messaging",), instagram_permissions=())
        )[Provider.MESSENGER]
    assert isinstance(default, PageConnector) and isinstance(narrowed, PageConnector)
    assert default.missing_permissions([], instagram=False) == sorted(DEFAULT_PAGE_PERMISSIONS)
    assert default.missing_permissions([], instagram=True) == sorted(DEFAULT_INSTAGRAM_PERMISSIONS)
    assert default.missing_permissions(DEFAULT_PAGE_PERMISSIONS, instagram=False) == []
    assert narrowed.missing_permissions(["pages_show_list"], instagram=False) == ["pages_messaging"]
    assert narrowed.missing_permissions([], instagram=True) == []  # an empty list asks for nothing


def test_whatsapps_number_rules_are_its_codes_pins_and_display_names() -> None:
    assert (NUMBER_RULES.code_digits, NUMBER_RULES.pin_digits) == (6, 6)
    assert NUMBER_RULES.code_validity.total_seconds() == 600
    assert NUMBER_RULES.display_name_problem is display_name_problem
    assert display_name_problem("Acme Support") is None
    assert display_name_problem("Acme WhatsApp Desk") == "a display name cannot contain 'WhatsApp'"


def test_onboarding_reaches_no_provider_module_and_carries_no_exemption_from_the_rule() -> None:
    """The lint rule (TID251) bans provider modules from services; onboarding needs no noqa."""
    root = Path(__file__).resolve().parents[2] / "services/onboarding/src/parley_onboarding"
    sources = {path: path.read_text() for path in root.rglob("*.py")}
    assert sources
    assert not [path for path, text in sources.items() if "noqa: TID251" in text]
    banned = ("parley_providers.meta", "parley_providers.whatsapp", "parley_providers.x")
    assert not [path for path, text in sources.items() if any(name in text for name in banned)]
