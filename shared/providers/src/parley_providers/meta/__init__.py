"""Meta: Facebook Pages (Messenger, comments), Instagram and the WhatsApp Cloud API, all on Graph."""

from __future__ import annotations

from typing import Any

import httpx

from parley_providers.base import Connector, ProviderPlugin, Sender


def sender(http: httpx.AsyncClient, settings: Any) -> Sender:
    """Messenger and Instagram replies, with the Graph client the settings describe."""
    from parley_providers.meta.client import graph_client
    from parley_providers.meta.outbound import MetaSender

    return MetaSender(graph_client(http, settings))


def connector(http: httpx.AsyncClient, settings: Any) -> Connector:
    """Connecting Pages and Instagram profiles (Facebook Login), with onboarding's settings."""
    from parley_providers.meta.client import graph_client
    from parley_providers.meta.connect import meta_connector

    return meta_connector(graph_client(http, settings), settings)


def plugin() -> ProviderPlugin:
    """The ``meta`` entry point of ``parley.providers``."""
    from parley_events import Provider

    from parley_providers.meta.errors import reauth_reason
    from parley_providers.meta.rules import RULES
    from parley_providers.meta.webhook import MetaWebhook

    return ProviderPlugin(
        "meta",
        MetaWebhook(),
        RULES,
        (Provider.MESSENGER, Provider.INSTAGRAM),
        reauth_reason=reauth_reason,
        make_sender=sender,
        make_connector=connector,
    )
