"""Settings of the policy process."""

from __future__ import annotations

from parley_shared.settings import ServiceSettings


class PolicySettings(ServiceSettings):
    """``parley-policy``: gates and delivers outbound replies."""

    http_port: int = 8082
