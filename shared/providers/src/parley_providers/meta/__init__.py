"""Meta: Facebook Pages (Messenger, comments), Instagram and the WhatsApp Cloud API, all on Graph."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import httpx

from parley_providers.base import ApiVersionStatus, Connector, ContentLookup, ProviderPlugin, Sender


def sender(http: httpx.AsyncClient, settings: Any) -> Sender:
    """Messenger and Instagram replies, with the Graph client the settings describe."""
    from parley_providers.meta.client import graph_client
    from parley_providers.meta.instagram import instagram_sender_client
    from parley_providers.meta.outbound import MetaSender

    # Instagram-login replies go to graph.instagram.com where the settings name it
    instagram = (
        instagram_sender_client(http, settings) if hasattr(settings, "instagram_graph_base_url") else None
    )
    return MetaSender(graph_client(http, settings), instagram)


def content_lookup(http: httpx.AsyncClient, settings: Any) -> ContentLookup | None:
    """Instagram mentions' text and author, with the normalizer's settings (None without them)."""
    from parley_providers.meta.client import GRAPH_BASE_URL, GraphClient
    from parley_providers.meta.instagram import instagram_sender_client
    from parley_providers.meta.lookup import MentionLookup

    if not hasattr(settings, "graph_base_url"):
        return None
    # reads need no app credentials: the channel's token is all a lookup carries
    base = settings.graph_base_url or GRAPH_BASE_URL
    graph = GraphClient(http, base, "", "", settings.graph_api_version or None)
    return MentionLookup(graph, instagram_sender_client(http, settings))


def connector(http: httpx.AsyncClient, settings: Any) -> Connector:
    """Connecting Pages and Instagram profiles (Facebook Login), with onboarding's settings."""
    from parley_providers.meta.client import graph_client
    from parley_providers.meta.connect import meta_connector
    from parley_providers.meta.instagram import instagram_client

    # Instagram Login beside the Page flow when the settings name an Instagram app
    instagram = instagram_client(http, settings) if hasattr(settings, "instagram_app_id") else None
    return meta_connector(graph_client(http, settings), settings, instagram)


def api_versions(settings: Any, today: date) -> Sequence[ApiVersionStatus]:
    """The Graph API version the settings configure (WhatsApp's calls use the same one)."""
    from parley_providers.meta.versions import DEFAULT_GRAPH_API_VERSION, graph_version_status

    if not hasattr(settings, "graph_api_version"):
        return ()
    return (graph_version_status(settings.graph_api_version or DEFAULT_GRAPH_API_VERSION, today),)


def plugin() -> ProviderPlugin:
    """The ``meta`` entry point of ``parley.providers``."""
    from parley_events import Provider

    from parley_providers.meta.errors import reauth_reason
    from parley_providers.meta.links import account_url
    from parley_providers.meta.rules import RULES
    from parley_providers.meta.webhook import MetaWebhook

    return ProviderPlugin(
        "meta",
        MetaWebhook(),
        RULES,
        (Provider.MESSENGER, Provider.INSTAGRAM),
        reauth_reason=reauth_reason,
        make_sender=sender,
        make_content_lookup=content_lookup,
        make_connector=connector,
        api_versions=api_versions,
        account_url=account_url,
    )
