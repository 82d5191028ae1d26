"""The provider packages' own Prometheus metrics (the services export them with theirs)."""

from __future__ import annotations

from prometheus_client import Gauge

API_VERSION_DAYS_LEFT = Gauge(
    "parley_provider_api_version_days_left",
    "Days until the provider stops answering the API version this process is configured to call "
    "(negative once past); set at start, for versions whose end the provider has announced.",
    ["provider", "api", "version"],
)
