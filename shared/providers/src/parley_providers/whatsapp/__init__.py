"""WhatsApp: the Cloud API on Graph. Its deliveries arrive through Meta's webhook endpoint (parsed
in ``whatsapp.inbound``), its calls go through ``meta.client``; its rules and codes are here."""

from __future__ import annotations

from typing import Any

import httpx

from parley_providers.base import Connector, ProviderPlugin, Sender


def sender(http: httpx.AsyncClient, settings: Any) -> Sender:
    """WhatsApp replies through the Cloud API, with the Graph client the settings describe."""
    from parley_providers.meta.client import graph_client
    from parley_providers.whatsapp.outbound import WhatsAppSender

    return WhatsAppSender(graph_client(http, settings))


def connector(http: httpx.AsyncClient, settings: Any) -> Connector:
    """Verifying and registering a business number, over the Graph client the settings describe."""
    from parley_providers.meta.client import graph_client
    from parley_providers.meta.connect import FACEBOOK_LOGIN_BASE_URL
    from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION
    from parley_providers.whatsapp.connect import WhatsAppConnector

    return WhatsAppConnector(
        graph_client(http, settings),
        app_id=getattr(settings, "meta_app_id", "") or "",
        api_version=getattr(settings, "graph_api_version", "") or DEFAULT_GRAPH_API_VERSION,
        # the signup window's settings are onboarding's only
        login_base_url=getattr(settings, "meta_login_base_url", "") or FACEBOOK_LOGIN_BASE_URL,
        signup_config_id=getattr(settings, "whatsapp_embedded_signup_config_id", None),
    )


def plugin() -> ProviderPlugin:
    """The ``whatsapp`` entry point of ``parley.providers``."""
    from parley_events import Provider

    from parley_providers.meta.errors import reauth_reason  # WhatsApp's errors are Graph errors
    from parley_providers.whatsapp.links import account_url
    from parley_providers.whatsapp.rules import RULES, throughput_per_s

    return ProviderPlugin(
        "whatsapp",
        None,
        RULES,
        (Provider.WHATSAPP,),
        reauth_reason=reauth_reason,
        make_sender=sender,
        make_connector=connector,
        account_send_rate=throughput_per_s,
        account_url=account_url,
    )
