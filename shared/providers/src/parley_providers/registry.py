"""Provider name -> plugin, loaded from the ``parley.providers`` entry-point group.

Like the ``parley`` CLI's plugins: installing a package that declares an entry point in that group
adds a provider; nothing in the services names one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import httpx
from parley_events import Provider

from parley_providers.base import Connector, ProviderPlugin, Sender, WebhookEndpoint
from parley_providers.rules import Counting, ReplyRule

GROUP = "parley.providers"

__all__ = [
    "GROUP",
    "connectors",
    "length_counter",
    "plugin_for",
    "plugins",
    "reauth_reason",
    "reply_rules",
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


def connectors(http: httpx.AsyncClient, settings: Any) -> dict[Provider, Connector]:
    """The connect flow of every conversation provider whose plugin onboarding's settings
    configure (Meta's serves Messenger and Instagram alike)."""
    found: dict[Provider, Connector] = {}
    for plugin in plugins().values():
        made = plugin.make_connector(http, settings) if plugin.make_connector is not None else None
        if made is not None:
            found.update({provider: made for provider in plugin.providers})
    return found
