"""Settings of the routing process."""

from __future__ import annotations

from parley_shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    """``parley-routing``: conversations, queues, ownership and access."""

    http_port: int = 8083
