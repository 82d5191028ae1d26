"""Provider name -> plugin, loaded from the ``parley.providers`` entry-point group.

Like the ``parley`` CLI's plugins: installing a package that declares an entry point in that group
adds a provider; nothing in the services names one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import httpx
from parley_events import Provider

from parley_providers.base import (
    ApiVersionStatus,
    Charge,
    Connector,
    ContentLookup,
    DeliveryCharge,
    ProviderPlugin,
    Sender,
    WebhookEndpoint,
)
from parley_providers.rules import Counting, ReplyRule

GROUP = "parley.providers"

__all__ = [
    "GROUP",
    "account_url",
    "api_versions",
    "connectors",
    "content_lookups",
    "length_counter",
    "plugin_for",
    "plugins",
    "reauth_reason",
    "reply_rules",
    "report_api_versions",
    "senders",
    "webhook_endpoint",
    "webhook_endpoints",
]


@cache
def plugins() -> dict[str, ProviderPlugin]:
    """Every installed provider plugin by name."""
    found: dict[str, ProviderPlugin] = {}
    for entry in entry_points(group=GROUP):
        plugin = entry.load()()
        if not isinstance(plugin, ProviderPlugin):
            raise TypeError(f"entry point {entry.name} of {GROUP} did not give a ProviderPlugin")
        if plugin.name in found:
            raise ValueError(f"two provider plugins are named {plugin.name!r}")
        found[plugin.name] = plugin
    if not found:
        # without them ingest would serve no webhook and policy would approve and send nothing:
        # an install without package metadata (or a stale environment) must not start quietly
        raise RuntimeError(f"no provider plugins installed (entry points {GROUP}): run `make setup`")
    return dict(sorted(found.items()))


def webhook_endpoints() -> dict[str, WebhookEndpoint]:
    """The webhook endpoints by path name (``/webhooks/<name>``)."""
    return {p.webhook.name: p.webhook for p in plugins().values() if p.webhook is not None}


def webhook_endpoint(name: str) -> WebhookEndpoint | None:
    return webhook_endpoints().get(name)


def reply_rules() -> dict[tuple[Provider, str], ReplyRule]:
    """Every provider's reply rows in one table; a row two plugins both claim is an error."""
    table: dict[tuple[Provider, str], ReplyRule] = {}
    for plugin in plugins().values():
        for key, rule in plugin.reply_rules.items():
            if key in table:
                raise ValueError(f"two provider plugins give the reply rule {key}")
            table[key] = rule
    return table


def plugin_for(provider: Provider | str) -> ProviderPlugin:
    """The plugin of a conversation provider (``messenger`` is Meta's) or of a plugin name."""
    name = provider.value if isinstance(provider, Provider) else provider
    for plugin in plugins().values():
        if plugin.name == name or any(p.value == name for p in plugin.providers):
            return plugin
    raise LookupError(f"no provider plugin for {name!r}")


def delivery_charge(endpoint: str, payload: Any) -> DeliveryCharge | None:
    """What the provider bills for one delivery to its webhook ``endpoint`` (None: nothing known)."""
    for plugin in plugins().values():
        if plugin.webhook is not None and plugin.webhook.name == endpoint and plugin.delivery_charge:
            return plugin.delivery_charge(payload)
    return None


def reply_charge(provider: Provider, kind: str, text: str) -> Charge | None:
    """What the provider bills for sending one reply (None: not billed per send, or no plugin)."""
    try:
        plugin = plugin_for(provider)
    except LookupError:
        return None
    return plugin.reply_charge(kind, text) if plugin.reply_charge is not None else None


def account_send_rate(provider: Provider, level: str | None, coexistence: bool) -> int | None:
    """One account's sends per second where the provider sets it per account (WhatsApp's number
    throughput); None where the provider has one rate for every account, or has no plugin."""
    try:
        plugin = plugin_for(provider)
    except LookupError:
        return None
    return plugin.account_send_rate(level, coexistence) if plugin.account_send_rate is not None else None


def account_url(provider: Provider, account_id: str, account_name: str | None) -> str | None:
    """Where a person opens the account on its provider's site (None: no address, or no plugin)."""
    try:
        plugin = plugin_for(provider)
    except LookupError:
        return None
    return plugin.account_url(provider, account_id, account_name) if plugin.account_url else None


def reauth_reason(provider: Provider | str, code: int | None, subcode: int | None) -> str:
    """Why a reconnect is needed, in the words of the provider whose call was refused."""
    try:
        plugin = plugin_for(provider)
    except LookupError:
        return "provider_rejected_token"
    return plugin.reauth_reason(code, subcode)


def length_counter(counting: Counting) -> Callable[[str], int]:
    """The provider's own way of counting text, for a counting no generic rule covers."""
    for plugin in plugins().values():
        if counting in plugin.length_counters:
            return plugin.length_counters[counting]
    raise LookupError(f"no provider plugin counts {counting.value}")


def senders(http: httpx.AsyncClient, settings: Any) -> dict[Provider, Sender]:
    """A sender for every conversation provider whose plugin the service's settings configure."""
    found: dict[Provider, Sender] = {}
    for plugin in plugins().values():
        made = plugin.make_sender(http, settings) if plugin.make_sender is not None else None
        if made is not None:
            found.update({provider: made for provider in plugin.providers})
    return found


def content_lookups(http: httpx.AsyncClient, settings: Any) -> dict[Provider, ContentLookup]:
    """The content lookup of every conversation provider whose plugin the normalizer's settings
    configure (Meta's fetches Instagram mentions)."""
    found: dict[Provider, ContentLookup] = {}
    for plugin in plugins().values():
        made = plugin.make_content_lookup(http, settings) if plugin.make_content_lookup is not None else None
        if made is not None:
            found.update({provider: made for provider in plugin.providers})
    return found


def connectors(http: httpx.AsyncClient, settings: Any) -> dict[Provider, Connector]:
    """The connect flow of every conversation provider whose plugin onboarding's settings
    configure (Meta's serves Messenger and Instagram alike)."""
    found: dict[Provider, Connector] = {}
    for plugin in plugins().values():
        made = plugin.make_connector(http, settings) if plugin.make_connector is not None else None
        if made is not None:
            found.update({provider: made for provider in plugin.providers})
    return found


def api_versions(settings: Any, today: date) -> list[ApiVersionStatus]:
    """The provider API versions a service's settings configure, each with its end of life."""
    found: list[ApiVersionStatus] = []
    for plugin in plugins().values():
        if plugin.api_versions is not None:
            found.extend(plugin.api_versions(settings, today))
    return found


def report_api_versions(
    settings: Any, warn: Callable[..., object] | None = None, today: date | None = None
) -> list[ApiVersionStatus]:
    """At a process's start: export the days left of each configured API version (a gauge) and
    warn about a version near or past its end, or one Parley does not know.

    ``warn`` is called as ``warn(message, provider=..., api=..., version=..., ends_on=...,
    days_left=...)`` (a structlog logger's ``warning``); by default the standard library logs it.
    """
    from parley_providers.metrics import API_VERSION_DAYS_LEFT

    statuses = api_versions(settings, today or datetime.now(UTC).date())
    for status in statuses:
        if status.days_left is not None:
            API_VERSION_DAYS_LEFT.labels(status.provider, status.api, status.version).set(status.days_left)
        if status.warning is None:
            continue
        if warn is None:
            logging.getLogger("parley_providers").warning(status.warning)
        else:
            warn(
                status.warning,
                provider=status.provider,
                api=status.api,
                version=status.version,
                ends_on=status.ends_on.isoformat() if status.ends_on else None,
                days_left=status.days_left,
            )
    return statuses
