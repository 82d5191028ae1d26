"""X: direct messages and posts through the X API v2."""

from __future__ import annotations

from typing import Any

import httpx

from parley_providers.base import Connector, ProviderPlugin, Sender


def sender(http: httpx.AsyncClient, settings: Any) -> Sender | None:
    """X replies, when the settings configure X's client."""
    from parley_providers.x.client import x_client
    from parley_providers.x.outbound import XSender

    client = x_client(http, settings)
    return XSender(client) if client is not None else None


def connector(http: httpx.AsyncClient, settings: Any) -> Connector | None:
    """Connecting X accounts, when the settings configure X's client and its webhook."""
    from parley_providers.x.connect import x_connector

    return x_connector(http, settings)


def plugin() -> ProviderPlugin:
    """The ``x`` entry point of ``parley.providers``."""
    from parley_events import Provider

    from parley_providers.rules import Counting
    from parley_providers.x.billing import reply_charge, webhook_charge
    from parley_providers.x.length import x_weighted_length
    from parley_providers.x.links import account_url
    from parley_providers.x.rules import RULES
    from parley_providers.x.webhook import XWebhook

    return ProviderPlugin(
        "x",
        XWebhook(),
        RULES,
        (Provider.X,),
        length_counters={Counting.X_WEIGHTED: x_weighted_length},
        make_sender=sender,
        make_connector=connector,
        delivery_charge=webhook_charge,
        reply_charge=reply_charge,
        account_url=account_url,
    )
